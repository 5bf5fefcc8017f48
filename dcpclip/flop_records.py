"""The FLOP records of one config: GMACs per image (fvcore multiply-adds, attention included, counted by
`dcpclip.flops`) of its model on each benchmark's vocabulary, over real evaluation images at the evaluation
resolution and views (`dcpclip.paths.flops_record_path`), and the GMACs of one training step with the run
it prices (`dcpclip.train_cost`, `dcpclip.paths.train_step_record_path`). `count_records` writes the ones
that are missing or were counted for another config or code.

Weights do not change the count (pruning keeps a fixed K = min(top_k, C) classes), so the model is the
run's layout with random initialisation and no checkpoint is needed. Views of the same shape cost the
same, so each distinct view shape is traced once per vocabulary size (PC-59 and PAS-20b share their 59
prompts, and so their count); the mean and std are over the `eval.flops_images`
images (std is 0 in sliding mode, where every image becomes the same five views). The text encoder is
excluded: the text bank is computed once per vocabulary and cached.
"""

from __future__ import annotations

import dataclasses
import statistics

from dcpclip import paths
from dcpclip.code_digest import code_digest, code_identity
from dcpclip.config import ExperimentConfig
from dcpclip.data.datasets import evaluation_dataset
from dcpclip.data.specs import SPECS, DatasetSpec
from dcpclip.engine.inference import InferenceSettings, model_views
from dcpclip.environment import environment_stamp
from dcpclip.flops import FlopCount, count_gmacs, random_text_bank
from dcpclip.model.build import run_model
from dcpclip.model.trainable import trainable_count
from dcpclip.records import FlopsRecord, RecordError, TrainStepRecord, load_record, write_record
from dcpclip.train_cost import count_train_step

TRAIN_STEP = "train step"  # the outcome key of the train-step record


def count_benchmark(model, cfg: ExperimentConfig, spec: DatasetSpec,
                    counted: dict[tuple, FlopCount]) -> tuple[list[float], FlopCount]:
    """GMACs of each of the first `eval.flops_images` evaluation images; the last count's details.
    `counted` holds the counts of this model by (views shape, vocabulary size), shared between benchmarks."""
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss,
                                             model.backbone.patch_size)
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    bank = random_text_bank(spec.num_prompts, model.backbone.embed_dim)  # [C, D]
    per_image = []
    for index in range(min(len(dataset), cfg.eval.flops_images)):
        image = dataset[index].image  # [3, h, w] at the evaluation resolution
        views = model_views(image, settings)  # [V, 3, h', w'], all of one shape
        key = (tuple(views.shape), spec.num_prompts)
        if key not in counted:
            # the model's cost is linear in the batch (no op mixes views), so one view is traced and
            # multiplied by V: the same number as tracing all V at a V-th of the time
            one = count_gmacs(model, views[:1], bank, cross_check=False)
            counted[key] = dataclasses.replace(one, gmacs=one.gmacs * len(views), views=len(views))
        per_image.append(counted[key].gmacs)
    return per_image, counted[key]


def flops_record(cfg: ExperimentConfig, profile: str, spec: DatasetSpec, per_image: list[float],
                 count: FlopCount, command: str) -> FlopsRecord:
    return FlopsRecord(
        profile=profile,
        variant=cfg.variant,
        benchmark=spec.key,
        arch=cfg.backbone.arch,
        resolution=count.resolution,
        views=count.views,
        num_classes=count.num_classes,
        text_encoder_included=count.text_encoder_included,
        gmacs_mean=statistics.fmean(per_image),
        gmacs_std=statistics.pstdev(per_image),
        num_images=len(per_image),
        params_total=count.params_total,
        params_trainable=count.params_trainable,
        params_head=count.params_head,
        skipped_ops=count.skipped_ops,
        config_fingerprint=counting_fingerprint(cfg),
        code_digest=code_digest(paths.FLOPS_CODE),
        command=command,
        environment=environment_stamp(),
    )


def counting_fingerprint(cfg: ExperimentConfig) -> str:
    """What a count depends on: the architecture, the variant's head, the evaluation geometry and the code
    the flops stage runs."""
    geometry = dataclasses.replace(cfg.eval, amp=False)  # the precision does not change the count
    return paths.fingerprint({"backbone": cfg.backbone, "head": paths.head_identity(cfg.head),
                              "eval": geometry, "code": code_identity(paths.FLOPS_CODE)})


def train_step_fingerprint(cfg: ExperimentConfig) -> str:
    """What a training step's count and the run it prices depend on."""
    train = {key: getattr(cfg.train, key) for key in ("crop_size", "batch_size", "iterations")}
    return paths.fingerprint({"backbone": cfg.backbone, "head": paths.head_identity(cfg.head),
                              "text": cfg.text, "train_dataset": cfg.data.train_dataset, "train": train,
                              "seeds": len(cfg.grid.seeds), "code": code_identity(paths.FLOPS_CODE)})


def is_current(path, fingerprint: str) -> bool:
    try:
        return load_record(path).config_fingerprint == fingerprint
    except (FileNotFoundError, RecordError):
        return False


def stale_counts(cfg: ExperimentConfig, profile: str, record_path) -> list[str]:
    """Benchmarks of `cfg` whose FLOP record is missing or was counted for another config, and "train step"
    when the train-step record is."""
    stale = [key for key in cfg.data.benchmarks if not is_current(record_path(cfg, key), counting_fingerprint(cfg))]
    if not is_current(paths.train_step_record_path(cfg, profile), train_step_fingerprint(cfg)):
        stale.append(TRAIN_STEP)
    return stale


def train_step_record(model, cfg: ExperimentConfig, profile: str, command: str) -> TrainStepRecord:
    trains = cfg.trains
    count = count_train_step(model, cfg) if trains else None
    return TrainStepRecord(
        profile=profile,
        variant=cfg.variant,
        arch=cfg.backbone.arch,
        trains=trains,
        train_dataset=cfg.data.train_dataset,
        crop_size=cfg.train.crop_size,
        batch_size=cfg.train.batch_size,
        num_classes=SPECS[cfg.data.train_dataset].num_prompts,
        text_encoder_trains=bool(count and count.text_encoder_trains),
        image_gmacs=count.image_gmacs if count else 0.0,
        text_encoder_gmacs=count.text_encoder_gmacs if count else 0.0,
        step_gmacs=count.step_gmacs if count else 0.0,
        iterations=cfg.train.iterations,
        seeds=len(cfg.grid.seeds),
        params_trainable=trainable_count(model),
        config_fingerprint=train_step_fingerprint(cfg),
        code_digest=code_digest(paths.FLOPS_CODE),
        command=command,
        environment=environment_stamp(),
    )


def count_records(cfg: ExperimentConfig, profile: str, record_path, command: str) -> dict:
    """Count every benchmark of `cfg` (and the training step) whose record is missing or stale; returns
    {benchmark or "train step": GMACs}."""
    stale = stale_counts(cfg, profile, record_path)
    outcome: dict = {key: "up to date" for key in [*cfg.data.benchmarks, TRAIN_STEP] if key not in stale}
    if not stale:
        return outcome
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    counted: dict[tuple, FlopCount] = {}
    for key in stale:
        if key == TRAIN_STEP:
            step = train_step_record(model, cfg, profile, command)
            write_record(step, paths.train_step_record_path(cfg, profile))
            outcome[key] = round(step.step_gmacs, 3)
            continue
        per_image, count = count_benchmark(model, cfg, SPECS[key], counted)
        write_record(flops_record(cfg, profile, SPECS[key], per_image, count, command), record_path(cfg, key))
        outcome[key] = round(statistics.fmean(per_image), 3)
    return outcome
