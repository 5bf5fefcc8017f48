"""Count GMACs per image (fvcore multiply-adds, attention included) of one variant on each benchmark's
vocabulary, over real evaluation images at the evaluation resolution and views, and write one FLOP record
per benchmark (`dcpclip.paths.flops_record_path`); and the GMACs of one training step with the run it
prices (`dcpclip.train_cost`, one train-step record, `dcpclip.paths.train_step_record_path`).

    python -m experiments.flops variant=full            # the profile's own model
    python -m experiments.flops variant=full --paper-arch vitb16   # + the paper architecture, random init

Weights do not change the count (pruning keeps a fixed K = min(top_k, C) classes), so the model is
built from the config with random initialisation and no checkpoint is needed. Views of the same shape
cost the same, so each distinct view shape is traced once; the mean and std are over the
`eval.flops_images` images (std is 0 in sliding mode, where every image becomes the same five views).
The text encoder is excluded: the text bank is computed once per vocabulary and cached.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys

import torch

from dcpclip import paths
from dcpclip.code_digest import code_digest, code_identity
from dcpclip.config import ExperimentConfig
from dcpclip.data.datasets import evaluation_dataset
from dcpclip.data.specs import SPECS, DatasetSpec
from dcpclip.engine.inference import InferenceSettings, model_views
from dcpclip.environment import environment_stamp
from dcpclip.flops import FlopCount, count_gmacs, random_text_bank
from dcpclip.model.build import build_model
from dcpclip.model.trainable import set_trainable, trainable_count
from dcpclip.model.variants import variant_override
from dcpclip.profiles import PAPER_ARCH_PROFILE
from dcpclip.records import FlopsRecord, RecordError, TrainStepRecord, load_record, write_record
from dcpclip.train_cost import count_train_step
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed

TRAIN_STEP = "train step"  # the outcome key of the train-step record


def paper_arch_config(cfg: ExperimentConfig, model_option: str) -> ExperimentConfig:
    """`cfg` with the paper profile's architecture and evaluation geometry, random init (no download)."""
    paper = compose_config(["profile=paper", f"model={model_option}", "backbone.pretrained=null",
                            variant_override(cfg.variant)])
    return dataclasses.replace(paper, data=cfg.data, results_dir=cfg.results_dir, cache_dir=cfg.cache_dir)


def count_benchmark(model, cfg: ExperimentConfig, spec: DatasetSpec) -> tuple[list[float], FlopCount]:
    """GMACs of each of the first `eval.flops_images` evaluation images; the last count's details."""
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss,
                                             model.backbone.patch_size)
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    bank = random_text_bank(spec.num_prompts, model.backbone.embed_dim)  # [C, D]
    by_shape: dict[tuple, FlopCount] = {}
    per_image = []
    for index in range(min(len(dataset), cfg.eval.flops_images)):
        image = dataset[index].image  # [3, h, w] at the evaluation resolution
        views = model_views(image, settings)  # [V, 3, h', w'], all of one shape
        if tuple(views.shape) not in by_shape:
            # the model's cost is linear in the batch (no op mixes views), so one view is traced and
            # multiplied by V: the same number as tracing all V at a V-th of the time
            one = count_gmacs(model, views[:1], bank, cross_check=False)
            by_shape[tuple(views.shape)] = dataclasses.replace(one, gmacs=one.gmacs * len(views),
                                                               views=len(views))
        per_image.append(by_shape[tuple(views.shape)].gmacs)
    return per_image, by_shape[tuple(views.shape)]


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
    return paths.fingerprint({"backbone": cfg.backbone, "head": cfg.head,
                              "eval": geometry, "code": code_identity(paths.FLOPS_CODE)})


def train_step_fingerprint(cfg: ExperimentConfig) -> str:
    """What a training step's count and the run it prices depend on."""
    train = {key: getattr(cfg.train, key) for key in ("crop_size", "batch_size", "iterations")}
    return paths.fingerprint({"backbone": cfg.backbone, "head": cfg.head,
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


def count_config(cfg: ExperimentConfig, profile: str, record_path, command: str) -> dict:
    """Count every benchmark of `cfg` (and the training step) whose record is missing or stale; returns
    {benchmark or "train step": GMACs}."""
    stale = stale_counts(cfg, profile, record_path)
    outcome: dict = {key: "up to date" for key in [*cfg.data.benchmarks, TRAIN_STEP] if key not in stale}
    if not stale:
        return outcome
    torch.manual_seed(0)
    model = build_model(cfg.backbone, cfg.head)
    set_trainable(model, cfg.head)
    for key in stale:
        if key == TRAIN_STEP:
            step = train_step_record(model, cfg, profile, command)
            write_record(step, paths.train_step_record_path(cfg, profile))
            outcome[key] = round(step.step_gmacs, 3)
            continue
        per_image, count = count_benchmark(model, cfg, SPECS[key])
        write_record(flops_record(cfg, profile, SPECS[key], per_image, count, command), record_path(cfg, key))
        outcome[key] = round(statistics.fmean(per_image), 3)
    return outcome


def count(cfg: ExperimentConfig, paper_arch: str | None, command: str) -> dict:
    outcome = {cfg.backbone.arch: count_config(cfg, cfg.profile, paths.flops_record_path, command)}
    if paper_arch:
        paper = paper_arch_config(cfg, paper_arch)
        outcome[f"{PAPER_ARCH_PROFILE} {paper.backbone.arch}"] = count_config(
            paper, PAPER_ARCH_PROFILE, paths.paper_arch_flops_record_path, command)
    return outcome


def flops_job(overrides: list[str]) -> dict:
    """Fan-out job: overrides may end with "--paper-arch=<model option>"."""
    paper_arch = next((o.split("=", 1)[1] for o in overrides if o.startswith("--paper-arch=")), None)
    overrides = [o for o in overrides if not o.startswith("--paper-arch=")]
    command = shlex.join(["python", "-m", "experiments.flops", *overrides,
                          *(["--paper-arch", paper_arch] if paper_arch else [])])
    return count(compose_config(overrides), paper_arch, command)


@entry_point("experiments.flops")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_override_arguments(parser)
    parser.add_argument("--paper-arch", metavar="MODEL",
                        help="also count this experiments/conf/model option at the paper geometry (e.g. vitb16)")
    args = parser.parse_args(argv)
    overrides = overrides_from_args(args)
    command = shlex.join(["python", "-m", "experiments.flops", *overrides,
                          *(["--paper-arch", args.paper_arch] if args.paper_arch else [])])
    try:
        cfg = compose_config(overrides)
        outcome = count(cfg, args.paper_arch, command)
    except Exception as err:
        return failed(err, command)
    for arch, counts in outcome.items():
        shown = ", ".join(f"{SPECS[k].title if k in SPECS else k} {v}" for k, v in counts.items())
        print(f"flops {cfg.variant} {arch} (GMACs per image; per training step): {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
