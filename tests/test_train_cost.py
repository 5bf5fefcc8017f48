"""The cost of one training step (dcpclip.train_cost) and its record: the parts add up to the counted
forwards, and the flops stage recounts the record exactly when what it prices changes."""

import dataclasses

import pytest
import torch

from dcpclip import flop_records as flops
from dcpclip import paths
from dcpclip.data.specs import SPECS
from dcpclip.flops import count_gmacs, random_text_bank
from dcpclip.model.build import run_model
from dcpclip.records import load_record, write_record
from dcpclip.train_cost import count_train_step, stand_in_tokens
from experiments.compose import compose_config

TINY = ["model=tiny", "pretrain=none"]


@pytest.mark.parametrize("clip_trainable, text_trains", [("attn_qv", True), ("none", False)])
def test_a_step_is_three_forwards_of_the_batch_plus_the_text_tower_when_it_trains(clip_trainable, text_trains):
    cfg = compose_config([*TINY, "variant=full", f"head.clip_trainable={clip_trainable}"])
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    step = count_train_step(model, cfg)
    vocabulary = SPECS[cfg.data.train_dataset].num_prompts
    crop = cfg.train.crop_size
    image = count_gmacs(model, torch.zeros(1, 3, crop, crop), random_text_bank(vocabulary, model.backbone.embed_dim),
                        cross_check=False).gmacs
    assert step.text_encoder_trains is text_trains and step.num_classes == vocabulary == 171
    assert step.image_gmacs == pytest.approx(image)
    if text_trains:
        tokens = stand_in_tokens(cfg, vocabulary)  # [171, L]
        assert tokens.shape[0] == vocabulary
        assert step.text_encoder_gmacs > 0
    else:
        assert step.text_encoder_gmacs == 0
    assert step.step_gmacs == pytest.approx(3 * (cfg.train.batch_size * image + step.text_encoder_gmacs))


def test_the_record_is_recounted_when_what_it_prices_changes_and_only_then(tmp_path):
    cfg = compose_config([*TINY, "variant=full", f"results_dir={tmp_path}"])
    path = paths.train_step_record_path(cfg, cfg.profile)
    assert flops.TRAIN_STEP in flops.stale_counts(cfg, cfg.profile, paths.flops_record_path)
    record = flops.train_step_record(run_model(cfg.backbone, cfg.head, cfg.seed), cfg, cfg.profile, "test")
    write_record(record, path)
    assert load_record(path) == record and record.iterations == cfg.train.iterations and record.seeds == 1
    assert flops.TRAIN_STEP not in flops.stale_counts(cfg, cfg.profile, paths.flops_record_path)
    evaluation = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, short_side=cfg.eval.short_side + 32))
    assert flops.TRAIN_STEP not in flops.stale_counts(evaluation, cfg.profile, paths.flops_record_path)
    for changed in (compose_config([*TINY, "variant=full", f"results_dir={tmp_path}", "train.iterations=7"]),
                    compose_config([*TINY, "variant=full", f"results_dir={tmp_path}", "grid.seeds=[0,1]"]),
                    compose_config([*TINY, "variant=full", f"results_dir={tmp_path}", "train.batch_size=2"])):
        assert flops.TRAIN_STEP in flops.stale_counts(changed, cfg.profile, paths.flops_record_path)


def test_a_training_free_variant_is_priced_at_zero_steps(tmp_path):
    cfg = compose_config([*TINY, "variant=zero_shot", f"results_dir={tmp_path}"])
    record = flops.train_step_record(run_model(cfg.backbone, cfg.head, cfg.seed), cfg, cfg.profile, "test")
    assert (record.trains, record.step_gmacs, record.seeds) == (False, 0.0, 1)
    write_record(record, paths.train_step_record_path(cfg, cfg.profile))  # valid
