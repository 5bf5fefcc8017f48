"""Result records: the JSON files every evaluation and FLOP count writes, and the only thing the
aggregation and the report read (results are records, never logs).

Three kinds, each a typed dataclass validated on write and on load (`schema_version` guards the layout):

- `EvalRecord` (`dcpclip.paths.eval_record_path`): one variant, seed and benchmark; metrics in percent
  (null where undefined: a split without a labelled pixel, detectron2's NaN), per-class IoU in percent
  (null for a class absent from the ground truth, which the mean leaves out), pruner recall
  as a fraction and its curve over K (null where the variant has no pruner).
- `FlopsRecord` (`dcpclip.paths.flops_record_path`): GMACs per image (fvcore counts one multiply-add as
  one FLOP) of one variant on one benchmark's vocabulary, mean and std over evaluation images, with the
  conditions that make the number meaningful. The offline profile also counts the paper architectures
  (ViT-B/16 at 384, ...) at the protocol's resolution on its synthetic images: those records carry
  `profile = "paper-arch"` and live at `dcpclip.paths.paper_arch_flops_record_path` (one folder per
  architecture), so they never mix with the tiny model's counts nor with the paper profile's.
- `TrainStepRecord` (`dcpclip.paths.train_step_record_path`): GMACs of one training step of one variant
  (`dcpclip.train_cost`) and the run it prices (iterations, seeds): with the FLOP records and the split
  sizes, the cost of a whole run before it is launched (the report's cost estimate). Written by the flops
  stage next to the FLOP records, for the same profiles.

Every record carries the fingerprint of what it depends on (`config_fingerprint`: config and code) and
the digest of the code that computed it (`code_digest`, `dcpclip.code_digest`): a record whose fingerprint
differs from the current one is stale and is redone. A record of another schema_version is stale too.

A record names its file in every error: a malformed record fails with the file and the dotted key.
Training curves are not records: DVCLive writes them under the run folder (`dcpclip.report.curves`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from dcpclip.atomic import write_text
from dcpclip.config_schema import ConfigError, from_dict, to_dict
from dcpclip.data.specs import SPECS
from dcpclip.errors import ExpectedError
from dcpclip.model.variants import VARIANTS, variant_trains
from dcpclip.profiles import EVAL_PROFILES, FLOPS_PROFILES

# 2: code_digest (the code that computed the record); 3: data_source, clip_weights; 4: pruner_recall_at_k,
# params_head
SCHEMA_VERSION = 4
DATA_SOURCES = ("real", "synthetic")  # = DataConfig.source
BACKWARD_FACTOR = 3  # a training step costs 3 forwards: the backward taken as twice the forward (dcpclip.train_cost)
BENCHMARK_KEYS = tuple(key for key, spec in SPECS.items() if spec.split == "val")


class RecordError(ExpectedError, ValueError):
    """A record file is malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    mode: Literal["sliding", "whole"]
    short_side: int  # the image's shorter side is resized to this before inference
    window: int  # side of each window (the backbone's input size)
    stride: int  # window stride (sliding mode)
    views: int  # forward passes per image: 4 windows + 1 global view for CAT-Seg's sliding mode


@dataclasses.dataclass(frozen=True)
class SegmentationMetrics:
    """detectron2's SemSegEvaluator quantities over the whole split, in percent; null where detectron2
    gives NaN (a split without a labelled pixel)."""

    mIoU: float | None
    fwIoU: float | None
    mAcc: float | None
    pAcc: float | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalRecord:
    kind: Literal["eval"] = "eval"
    schema_version: int = SCHEMA_VERSION
    profile: str  # one of EVAL_PROFILES
    variant: str  # a registry name, or names joined by "+"
    seed: int
    arch: str  # open_clip architecture of the backbone (selects the published numbers to compare with)
    benchmark: str  # a key of dcpclip.data.specs.SPECS with split "val"
    split: str
    num_classes: int  # label classes the mIoU is over
    num_prompts: int  # class names given to the model (59 for PAS-20b's 21 classes)
    num_images: int
    data_source: str  # one of DATA_SOURCES: the real split or synthetic images in its format
    clip_weights: str | None  # backbone.pretrained: an open_clip tag, a checkpoint path; null = random init
    inference: InferenceSettings
    metrics: SegmentationMetrics
    per_class_iou: dict[str, float | None]  # label class name -> IoU %, null if absent from the ground truth
    pruner_recall: float | None  # share of ground-truth classes the pruner kept, in [0, 1]; null: no pruner
    # {K: the same share had the pruner kept K classes per view} for K in eval.recall_ks; null: no pruner
    pruner_recall_at_k: dict[str, float] | None
    config_fingerprint: str  # dcpclip.paths.evaluation_fingerprint: the config and code it depends on
    train_fingerprint: str | None  # dcpclip.paths.training_fingerprint; null for a training-free variant
    code_digest: str  # dcpclip.code_digest.code_digest of the evaluate stage's code
    command: str  # the exact command that reproduces this record
    environment: dict[str, Any]  # dcpclip.environment.environment_stamp()


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlopsRecord:
    kind: Literal["flops"] = "flops"
    schema_version: int = SCHEMA_VERSION
    profile: str  # one of FLOPS_PROFILES
    variant: str
    benchmark: str
    arch: str  # open_clip architecture of the backbone
    resolution: tuple[int, ...]  # [H, W] of each view given to the model
    views: int  # forward passes per image, all counted
    num_classes: int  # vocabulary size given to the model (the benchmark's prompts: 59 for PAS-20b)
    text_encoder_included: bool  # false: the text bank is cached per vocabulary, not counted per image
    gmacs_mean: float  # per image, all views, fvcore multiply-adds / 1e9
    gmacs_std: float  # over the counted images (pruning makes the cost image dependent)
    num_images: int
    params_total: int
    params_trainable: int
    params_head: int  # parameters outside the CLIP backbone: what the variant's head adds (0: zero_shot)
    skipped_ops: list[str]  # operators fvcore could not count (elementwise ones are expected)
    config_fingerprint: str  # dcpclip.flop_records.counting_fingerprint: the config and code it depends on
    code_digest: str  # dcpclip.code_digest.code_digest of the flops stage's code
    command: str
    environment: dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainStepRecord:
    kind: Literal["train_step"] = "train_step"
    schema_version: int = SCHEMA_VERSION
    profile: str  # one of FLOPS_PROFILES
    variant: str
    arch: str  # open_clip architecture of the backbone
    trains: bool  # false for a training-free variant: every count is 0
    train_dataset: str  # the training set, whose prompts are the training vocabulary
    crop_size: int
    batch_size: int
    num_classes: int  # the training vocabulary's size
    text_encoder_trains: bool  # the text tower runs every step (else its bank is cached)
    image_gmacs: float  # forward of one training crop, fvcore multiply-adds / 1e9
    text_encoder_gmacs: float  # forward of the text tower on the vocabulary; 0 when it does not train
    step_gmacs: float  # 3 x (batch_size x image_gmacs + text_encoder_gmacs): forward and backward
    iterations: int  # the run this record prices: steps per trained run ...
    seeds: int  # ... and runs (and evaluations) per variant
    params_trainable: int
    config_fingerprint: str  # dcpclip.flop_records.train_step_fingerprint: the config and code it depends on
    code_digest: str  # dcpclip.code_digest.code_digest of the flops stage's code
    command: str
    environment: dict[str, Any]


Record = EvalRecord | FlopsRecord | TrainStepRecord
RECORD_TYPES: dict[str, type] = {"eval": EvalRecord, "flops": FlopsRecord, "train_step": TrainStepRecord}


def record_problems(record: Record) -> list[str]:
    """Semantic checks beyond the types: '<key>: <problem>' for each violation (empty when valid)."""
    problems = []
    if record.schema_version != SCHEMA_VERSION:
        problems.append(f"schema_version: {record.schema_version} is not the supported {SCHEMA_VERSION}")
    profiles = EVAL_PROFILES if isinstance(record, EvalRecord) else FLOPS_PROFILES
    if record.profile not in profiles:
        problems.append(f"profile: {record.profile!r} is not one of {', '.join(profiles)}")
    try:
        trains = variant_trains(record.variant)
    except ValueError as err:
        problems.append(f"variant: {err}")
        trains = None
    if isinstance(record, TrainStepRecord):
        return problems + _train_step_problems(record, trains)
    if record.benchmark not in BENCHMARK_KEYS:
        problems.append(f"benchmark: {record.benchmark!r} is not one of {', '.join(BENCHMARK_KEYS)}")
        return problems
    spec = SPECS[record.benchmark]
    if isinstance(record, EvalRecord):
        problems += _eval_problems(record, spec, trains)
    else:
        problems += _flops_problems(record, spec)
    return problems


def _eval_problems(record: EvalRecord, spec, trains: bool | None) -> list[str]:
    problems = []
    if record.data_source not in DATA_SOURCES:
        problems.append(f"data_source: {record.data_source!r} is not one of {', '.join(DATA_SOURCES)}")
    expected = {"split": spec.split, "num_classes": spec.num_classes, "num_prompts": spec.num_prompts}
    for key, value in expected.items():
        if getattr(record, key) != value:
            problems.append(f"{key}: {getattr(record, key)!r} but {spec.title} has {value!r}")
    for key, value in to_dict(record.metrics).items():
        if value is not None and not _is_percent(value):
            problems.append(f"metrics.{key}: {value!r} is not a percentage in [0, 100] or null")
    if len(record.per_class_iou) != spec.num_classes:
        problems.append(
            f"per_class_iou: {len(record.per_class_iou)} classes, {spec.title} has {spec.num_classes}")
    for name, value in record.per_class_iou.items():
        if value is not None and not _is_percent(value):
            problems.append(f"per_class_iou.{name}: {value!r} is not a percentage in [0, 100] or null")
    if record.pruner_recall is not None and not 0.0 <= record.pruner_recall <= 1.0:
        problems.append(f"pruner_recall: {record.pruner_recall!r} is not a fraction in [0, 1] or null")
    for k, value in (record.pruner_recall_at_k or {}).items():
        if not k.isdigit() or int(k) < 1:
            problems.append(f"pruner_recall_at_k.{k}: the key is not a K >= 1")
        if not 0.0 <= value <= 1.0:
            problems.append(f"pruner_recall_at_k.{k}: {value!r} is not a fraction in [0, 1]")
    if (record.pruner_recall is None) != (record.pruner_recall_at_k is None):
        problems.append("pruner_recall_at_k: null exactly when pruner_recall is (both come from the pruner)")
    if record.num_images < 1:
        problems.append(f"num_images: {record.num_images} < 1")
    if trains and record.train_fingerprint is None:
        problems.append(f"train_fingerprint: null, but variant {record.variant!r} is trained")
    if trains is False and record.train_fingerprint is not None:
        problems.append(f"train_fingerprint: set, but variant {record.variant!r} is training-free")
    return problems


def _flops_problems(record: FlopsRecord, spec) -> list[str]:
    problems = []
    if record.num_classes != spec.num_prompts:
        problems.append(f"num_classes: {record.num_classes} but {spec.title} gives the model "
                        f"{spec.num_prompts} class names (the vocabulary size)")
    if len(record.resolution) != 2 or min(record.resolution) < 1:
        problems.append(f"resolution: {list(record.resolution)} is not [H, W]")
    for key in ("gmacs_mean", "gmacs_std"):
        value = getattr(record, key)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{key}: {value!r} is not a finite non-negative number")
    for key in ("views", "num_images"):
        if getattr(record, key) < 1:
            problems.append(f"{key}: {getattr(record, key)} < 1")
    if not 0 <= record.params_trainable <= record.params_total:
        problems.append(
            f"params_trainable: {record.params_trainable} not in 0..params_total ({record.params_total})")
    if not 0 <= record.params_head <= record.params_total:
        problems.append(f"params_head: {record.params_head} not in 0..params_total ({record.params_total})")
    return problems


def _train_step_problems(record: TrainStepRecord, trains: bool | None) -> list[str]:
    problems = []
    spec = SPECS.get(record.train_dataset)
    if spec is None or spec.split != "train":
        training_sets = [key for key, s in SPECS.items() if s.split == "train"]
        problems.append(f"train_dataset: {record.train_dataset!r} is not one of {', '.join(training_sets)}")
    elif record.num_classes != spec.num_prompts:
        problems.append(f"num_classes: {record.num_classes} but {spec.title} has {spec.num_prompts} class names")
    if trains is not None and record.trains != trains:
        problems.append(f"trains: {record.trains} but variant {record.variant!r} is "
                        f"{'trained' if trains else 'training-free'}")
    for key in ("crop_size", "batch_size", "iterations", "seeds"):
        if getattr(record, key) < 1:
            problems.append(f"{key}: {getattr(record, key)} < 1")
    for key in ("image_gmacs", "text_encoder_gmacs", "step_gmacs"):
        value = getattr(record, key)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{key}: {value!r} is not a finite non-negative number")
    if problems:
        return problems
    per_step = record.batch_size * record.image_gmacs + record.text_encoder_gmacs
    expected = BACKWARD_FACTOR * per_step if record.trains else 0.0
    if not math.isclose(record.step_gmacs, expected, rel_tol=1e-9, abs_tol=1e-9):
        problems.append(f"step_gmacs: {record.step_gmacs!r} is not {BACKWARD_FACTOR} x (batch_size x image_gmacs + "
                        f"text_encoder_gmacs) = {expected!r}")
    if not record.text_encoder_trains and record.text_encoder_gmacs != 0:
        problems.append(f"text_encoder_gmacs: {record.text_encoder_gmacs!r}, but the text encoder does not train")
    return problems


def _is_percent(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 100.0


def record_from_dict(data: Any, source: str | os.PathLike = "<record>") -> Record:
    """Type and validate a parsed record; errors name `source` and the dotted key."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in RECORD_TYPES:
        raise RecordError(f"{source}: kind: {kind!r} is not one of {', '.join(map(repr, RECORD_TYPES))}")
    try:
        record = from_dict(RECORD_TYPES[kind], data)
    except ConfigError as err:
        raise RecordError(f"{source}: {err}") from None
    problems = record_problems(record)
    if problems:
        raise RecordError(f"{source}: " + "; ".join(problems))
    return record


def record_to_json(record: Record) -> str:
    problems = record_problems(record)
    if problems:
        raise RecordError(f"refusing to write an invalid {record.kind} record: " + "; ".join(problems))
    return json.dumps(to_dict(record), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(record: Record, path: str | os.PathLike) -> Path:
    """Validate and write atomically (a crash never leaves half a record). Returns the path."""
    write_text(path, record_to_json(record))
    return Path(path)


def load_record(path: str | os.PathLike) -> Record:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    return record_from_dict(data, path)


def record_identity(record: Record) -> tuple:
    """What makes two records the same measurement (a second file with it is a duplicate)."""
    if isinstance(record, EvalRecord):
        return ("eval", record.profile, record.arch, record.variant, record.seed, record.benchmark)
    if isinstance(record, TrainStepRecord):
        return ("train_step", record.profile, record.arch, record.variant)
    return ("flops", record.profile, record.arch, record.variant, record.benchmark)


def load_records(results_dir: str | os.PathLike) -> list[Record]:
    """Every record under `<results_dir>/<kind>` for each kind (eval, flops, train_step), in a stable order.

    A record in the wrong folder for its kind, or two files with the same identity, is an error.
    """
    results_dir = Path(results_dir)
    loaded: dict[tuple, tuple[Path, Record]] = {}
    for kind in RECORD_TYPES:
        for path in sorted((results_dir / kind).rglob("*.json")):
            record = load_record(path)
            if record.kind != kind:
                raise RecordError(f"{path}: a {record.kind!r} record under {results_dir / kind}")
            identity = record_identity(record)
            if identity in loaded:
                raise RecordError(f"{path}: duplicates {loaded[identity][0]} (same {identity})")
            loaded[identity] = (path, record)
    return sort_records(record for _, record in loaded.values())


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Kind, profile, arch, variant (registry order), seed, benchmark (the field's order; train steps first)."""
    variant_rank = {name: i for i, name in enumerate(VARIANTS)}

    def key(record: Record):
        seed = record.seed if isinstance(record, EvalRecord) else -1
        benchmark = -1 if isinstance(record, TrainStepRecord) else BENCHMARK_KEYS.index(record.benchmark)
        return (record.kind, record.profile, record.arch, variant_rank.get(record.variant, len(variant_rank)),
                record.variant, seed, benchmark)

    return sorted(records, key=key)
