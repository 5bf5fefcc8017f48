"""A run's, an evaluation's and a count's identity holds the head settings the model reads, and no other:
without a pruner (`no_prune`, `zero_shot`) the pruner's settings are not read, so changing K (`dvc exp run
-S head.top_k=16`) redoes the pruning variants and keeps those. "Not read" is checked on the model: the
same seed gives the same weights, outputs and losses whatever those settings are."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dcpclip import paths
from dcpclip.flop_records import counting_fingerprint, train_step_fingerprint
from dcpclip.model.build import run_model
from dcpclip.model.config import PRUNER_SETTINGS
from dcpclip.model.losses import segmentation_losses
from dcpclip.model.variants import variant_override
from experiments.compose import compose_config

OTHER_PRUNER_SETTINGS = {"top_k": 3, "presence_scale_init": 2.0, "presence_prior": 0.2, "prune_loss_weight": 0.5}
FINGERPRINTS = {"training": paths.training_fingerprint, "evaluation": paths.evaluation_fingerprint,
                "counting": counting_fingerprint, "train step": train_step_fingerprint}


def test_the_changed_settings_are_every_pruner_setting():
    assert set(OTHER_PRUNER_SETTINGS) == set(PRUNER_SETTINGS)


@pytest.mark.parametrize("variant, reads_pruner", [("full", True), ("no_dual", True), ("static_text", True),
                                                    ("no_prune", False), ("zero_shot", False)])
def test_fingerprints_follow_the_pruner_settings_only_where_a_pruner_reads_them(variant, reads_pruner):
    base = compose_config([variant_override(variant)])
    for key, value in OTHER_PRUNER_SETTINGS.items():
        changed = compose_config([variant_override(variant), f"head.{key}={value}"])
        for name, fingerprint in FINGERPRINTS.items():
            assert (fingerprint(changed) != fingerprint(base)) == reads_pruner, (variant, key, name)


@pytest.mark.parametrize("variant", ["no_prune", "zero_shot"])
def test_a_model_without_a_pruner_computes_the_same_whatever_its_pruner_settings(variant):
    cfg = compose_config(["model=tiny", "pretrain=none", variant_override(variant)])
    changed = dataclasses.replace(cfg.head, **OTHER_PRUNER_SETTINGS)
    models = [run_model(cfg.backbone, head, seed=0).eval() for head in (cfg.head, changed)]
    states = [model.state_dict() for model in models]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=generator)  # [B, 3, H, W]
    bank = F.normalize(torch.randn(20, 64, generator=generator), dim=-1)  # [C, D], tiny embed_dim 64
    targets = torch.randint(0, 20, (2, 64, 64), generator=generator)  # [B, H, W]
    with torch.no_grad():
        outputs = [model(images, bank) for model in models]
    assert torch.equal(outputs[0].kept, outputs[1].kept)
    assert torch.equal(outputs[0].kept_logits, outputs[1].kept_logits)
    if variant == "no_prune":
        losses = [segmentation_losses(out, targets, head)
                  for out, head in zip(outputs, (cfg.head, changed), strict=True)]
        assert losses[0].keys() == losses[1].keys()
        assert all(torch.equal(losses[0][key], losses[1][key]) for key in losses[0])
