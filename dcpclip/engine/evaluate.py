"""Evaluating one run on benchmarks: `evaluate_benchmark` runs the protocol's inference over a split and
returns its `EvalRecord` (mIoU and the rest with detectron2's semantics, pruner recall and its curve over
K, provenance) and the predictions of the split's first images (`dcpclip.prediction_samples`);
`evaluate_run` writes one record per benchmark whose record is missing or stale
(`dcpclip.paths.eval_record_path`), its samples beside it, so a rerun evaluates only what changed."""

from __future__ import annotations

import datetime
import logging
import math
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dcpclip import paths
from dcpclip.code_digest import code_digest
from dcpclip.config import ExperimentConfig
from dcpclip.data.datasets import evaluation_dataset, read_class_names, read_image
from dcpclip.data.specs import SPECS, DatasetSpec
from dcpclip.engine.checkpoint import load_trained_weights, run_status
from dcpclip.engine.evaluator import SemSegEvaluator
from dcpclip.engine.inference import InferenceSettings, predict_batch, pruner_recall, recall_at_k
from dcpclip.environment import environment_stamp
from dcpclip.errors import ExpectedError
from dcpclip.model.build import run_model
from dcpclip.model.config import has_pruner
from dcpclip.model.text_bank import TextBankCache
from dcpclip.prediction_samples import Sample, SampleSet, samples_path, shrink, write_samples
from dcpclip.records import EvalRecord, RecordError, SegmentationMetrics, load_record, write_record
from dcpclip.records import InferenceSettings as RecordedInference

log = logging.getLogger(__name__)
LOG_PARTS = 4  # without a bar, a progress line after each quarter of a split


class RunNotTrained(ExpectedError, RuntimeError):
    """The run to evaluate is not trained with this config and code; the message says how to train it."""


def load_run_model(cfg: ExperimentConfig, device: torch.device, train_command: str) -> torch.nn.Module:
    """The model of `cfg` with its trained weights, in eval mode on `device` (a training-free variant
    needs none). A run not finished with this config and code raises `RunNotTrained`, whose message tells
    to run `train_command` (the same overrides)."""
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    if cfg.trains:
        folder = paths.run_dir(cfg)
        status = run_status(folder, paths.training_fingerprint(cfg))
        if status != "done":
            raise RunNotTrained(f"{folder}: run is {status}, not trained with this config and code; train it: "
                                f"{train_command}")
        load_trained_weights(model, folder)
    return model.eval().to(device)


def label_names(prompt_names: list[str], spec: DatasetSpec) -> list[str]:
    """One unique name per label class: the prompts' names (PAS-20b: its 20 object names + "background"),
    with repeated names numbered ("name (2)") so per-class results never collapse."""
    names = list(prompt_names[: spec.num_classes])
    if spec.background_from_prompt is not None:
        names[spec.background_from_prompt] = "background"
    seen: Counter = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


class EmptySplitWarning(UserWarning):
    """A benchmark split had no labelled pixel: its record holds null metrics."""


def up_to_date(cfg: ExperimentConfig, benchmark: str) -> bool:
    path = paths.eval_record_path(cfg, benchmark)
    try:
        return load_record(path).config_fingerprint == paths.evaluation_fingerprint(cfg)
    except (FileNotFoundError, RecordError):
        return False


def _batches(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last may be shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _recalls(cfg: ExperimentConfig, spec: DatasetSpec, item, prediction) -> tuple:
    """(the pruner's recall on the image, its recall curve {K: recall}); (None, None) without a pruner."""
    if not has_pruner(cfg.head) or prediction.kept is None:
        return None, None
    recall = pruner_recall(prediction.kept, item.label, spec.ignore_value, spec.prompt_to_label)
    curve = None if prediction.presence is None else recall_at_k(
        prediction.presence, cfg.eval.recall_ks, item.label, spec.ignore_value, spec.prompt_to_label)
    return recall, curve


def _sample(dataset, index: int, item, prediction) -> Sample:
    """The image `index` as the report's grid shows it: the original picture (not the model's input), its
    ground truth and the predicted labels, shrunk."""
    image = read_image(dataset.samples[index].image)
    return Sample(item.id, *shrink(image, item.label.numpy(), prediction.labels.cpu().numpy()))


def evaluate_benchmark(model, cfg: ExperimentConfig, spec: DatasetSpec, cache: TextBankCache,
                       device: torch.device, command: str, progress: bool) -> tuple[EvalRecord, SampleSet]:
    prompts = read_class_names(cfg.data.root, spec)
    text_bank = cache.get(model.backbone, prompts, cfg.text).to(device)  # [C, D]
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss,
                                             model.backbone.patch_size)
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    count = len(dataset) if cfg.eval.max_images is None else min(len(dataset), cfg.eval.max_images)
    evaluator = SemSegEvaluator(spec.num_classes, spec.ignore_value, label_names(prompts, spec))
    # data.num_workers processes decode and resize the next images while the model runs (0: in this process)
    loader = DataLoader(Subset(dataset, range(count)), batch_size=None, num_workers=cfg.data.num_workers,
                        pin_memory=device.type == "cuda")
    views, began, samples, done = 0, time.perf_counter(), [], 0
    name = f"{cfg.variant} seed{cfg.seed} {spec.title}"
    items = tqdm(loader, total=count, desc=name, disable=not progress, leave=False)
    for batch in _batches(items, cfg.eval.batch_images):  # the batch's views share one forward
        predictions = predict_batch(model, [item.image.to(device) for item in batch], text_bank, settings,
                                    [tuple(item.label.shape) for item in batch], spec.prompt_to_label)
        for item, prediction in zip(batch, predictions, strict=True):
            done += 1
            views = prediction.views
            if len(samples) < cfg.eval.sample_images:
                samples.append(_sample(dataset, done - 1, item, prediction))
            evaluator.process(prediction.labels.cpu(), item.label, *_recalls(cfg, spec, item, prediction))
        if not progress and (done % max(1, count // LOG_PARTS) < len(batch) or done == count):
            rate = done / (time.perf_counter() - began)
            log.info(f"evaluate {name}: {done}/{count} images, {rate:.2f} images/s, "
                     f"ETA {datetime.timedelta(seconds=round((count - done) / rate))}")
    metrics = evaluator.evaluate()
    if metrics["num_pixels"] == 0:
        warnings.warn(f"{spec.title} ({spec.key}): no labelled pixel in the {count} evaluated images of "
                      f"{cfg.data.root}/{spec.key}; its metrics are undefined (null in the record, NaN in "
                      "detectron2)", EmptySplitWarning, stacklevel=2)
    record = EvalRecord(
        profile=cfg.profile,
        variant=cfg.variant,
        seed=cfg.seed,
        arch=cfg.backbone.arch,
        benchmark=spec.key,
        split=spec.split,
        num_classes=spec.num_classes,
        num_prompts=spec.num_prompts,
        num_images=count,
        data_source=cfg.data.source,
        clip_weights=cfg.backbone.pretrained,
        inference=RecordedInference(cfg.eval.mode, cfg.eval.short_side, cfg.backbone.image_size,
                                    cfg.eval.window_stride, views),
        metrics=SegmentationMetrics(*(None if math.isnan(metrics[key]) else metrics[key]
                                      for key in ("mIoU", "fwIoU", "mAcc", "pAcc"))),
        per_class_iou=dict(zip(metrics["class_names"], metrics["per_class_iou"], strict=True)),
        pruner_recall=metrics["pruner_recall"],  # a fraction
        pruner_recall_at_k=None if metrics["pruner_recall_at_k"] is None else
        {str(k): v for k, v in metrics["pruner_recall_at_k"].items()},
        config_fingerprint=paths.evaluation_fingerprint(cfg),
        train_fingerprint=paths.training_fingerprint(cfg) if cfg.trains else None,
        code_digest=code_digest(paths.EVAL_CODE),
        command=command,
        environment=environment_stamp(device),
    )
    return record, SampleSet(cfg.profile, cfg.backbone.arch, cfg.variant, cfg.seed, spec.key,
                             record.config_fingerprint, evaluator.class_names, spec.ignore_value, samples)


def evaluate_run(cfg: ExperimentConfig, command: str, train_command: str, progress: bool = False) -> dict:
    """Evaluate `cfg`'s run on `cfg.data.benchmarks`, writing each missing or stale record; returns
    {benchmark: mIoU, "up to date" or why there is none}. `command` is recorded in each record;
    `train_command` is what an unfinished run's error tells to run."""
    pending = [key for key in cfg.data.benchmarks if not up_to_date(cfg, key)]
    outcome: dict = {key: "up to date" for key in cfg.data.benchmarks if key not in pending}
    if not pending:
        return outcome
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_run_model(cfg, device, train_command)
    cache = TextBankCache(paths.text_cache_dir(cfg), cfg.backbone.arch)
    for key in pending:
        record, samples = evaluate_benchmark(model, cfg, SPECS[key], cache, device, command, progress)
        path = paths.eval_record_path(cfg, key)
        write_samples(samples_path(path), samples)  # before the record: a record always has its samples
        write_record(record, path)
        miou = record.metrics.mIoU
        outcome[key] = "mIoU undefined (no labelled pixel)" if miou is None else round(miou, 2)
    return outcome
