"""Every record in one tidy table (one row per measured quantity), the mean and std over seeds, and the
DVC metrics file. The report and the claims read this table, never the record files by hand."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dcpclip.atomic import write_text
from dcpclip.data.specs import SPECS
from dcpclip.model.variants import VARIANTS
from dcpclip.records import BENCHMARK_KEYS, EvalRecord, Record, TrainStepRecord, sort_records

COLUMNS = ["kind", "profile", "arch", "variant", "seed", "benchmark", "vocabulary", "metric", "value", "unit"]
EVAL_METRICS = ("mIoU", "fwIoU", "mAcc", "pAcc")
FLOPS_METRICS = {"gmacs_mean": "GMACs", "gmacs_std": "GMACs", "num_images": "images",
                 "params_total": "parameters", "params_trainable": "parameters", "params_head": "parameters"}
TRAIN_STEP_METRICS = {"step_gmacs": "GMACs", "image_gmacs": "GMACs", "text_encoder_gmacs": "GMACs",
                      "batch_size": "images", "iterations": "steps", "seeds": "runs"}
RECALL_AT_K = "pruner_recall@"  # + K: the metric names of the pruner's recall curve


def summary_table(records: Iterable[Record]) -> pd.DataFrame:
    """Columns COLUMNS. `vocabulary` is the number of class names given to the model (59 for PAS-20b);
    `seed` is empty for FLOP and train-step rows, whose `benchmark` is the training set; pruner recall and
    its curve (metrics `pruner_recall@<K>`) are in percent here (fractions in the record)."""
    rows = []
    for record in sort_records(records):
        if isinstance(record, EvalRecord):
            base = [record.kind, record.profile, record.arch, record.variant, record.seed, record.benchmark,
                    record.num_prompts]
            rows += [[*base, name, getattr(record.metrics, name), "%"] for name in EVAL_METRICS]
            if record.pruner_recall is not None:
                rows.append([*base, "pruner_recall", 100.0 * record.pruner_recall, "%"])
            for k, recall in sorted((record.pruner_recall_at_k or {}).items(), key=lambda item: int(item[0])):
                rows.append([*base, f"{RECALL_AT_K}{k}", 100.0 * recall, "%"])
        elif isinstance(record, TrainStepRecord):
            base = [record.kind, record.profile, record.arch, record.variant, None, record.train_dataset,
                    record.num_classes]
            rows += [[*base, name, float(getattr(record, name)), unit]
                     for name, unit in TRAIN_STEP_METRICS.items()]
        else:
            base = [record.kind, record.profile, record.arch, record.variant, None, record.benchmark,
                    record.num_classes]
            rows += [[*base, name, float(getattr(record, name)), unit]
                     for name, unit in FLOPS_METRICS.items()]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["seed"] = table["seed"].astype("Int64")
    table["value"] = table["value"].astype(float)
    return table


def seed_statistics(summary: pd.DataFrame, metric: str, profile: str | None = None) -> pd.DataFrame:
    """Mean, sample std (n - 1; NaN for one seed) and count over seeds of `metric`, per profile, arch,
    variant and benchmark. FLOP rows have no seed: each is one group of n = 1."""
    rows = summary[summary["metric"] == metric]
    if profile is not None:
        rows = rows[rows["profile"] == profile]
    keys = ["profile", "arch", "variant", "benchmark", "vocabulary"]
    stats = rows.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    order = stats.assign(variant_rank=stats["variant"].map(variant_rank),
                         benchmark_rank=stats["benchmark"].map(BENCHMARK_KEYS.index))
    order = order.sort_values(["profile", "arch", "variant_rank", "variant", "benchmark_rank"], kind="stable")
    return stats.loc[order.index].reset_index(drop=True).rename(columns={"count": "n"})


def variant_rank(name: str) -> int:
    """Registry order first (full, the ablations, zero_shot), then combinations."""
    return list(VARIANTS).index(name) if name in VARIANTS else len(VARIANTS)


def single_arch(summary: pd.DataFrame, profile: str, kind: str = "eval") -> str | None:
    """The one backbone architecture of a profile's records (None when it has none). The report covers
    one architecture per profile; records of two (e.g. paper ViT-B/16 and ViT-L/14) are refused."""
    archs = sorted(set(summary.loc[(summary["profile"] == profile) & (summary["kind"] == kind), "arch"]))
    if len(archs) > 1:
        raise ValueError(f"{kind} records of profile {profile!r} name several architectures "
                         f"({', '.join(archs)}); the report covers one architecture per profile: render each "
                         "from its own results folder (results_dir=...)")
    return archs[0] if archs else None


def miou_metrics(summary: pd.DataFrame) -> dict:
    """{profile: {variant: {benchmark title: mIoU % (mean over seeds, 2 decimals)}}} for `dvc metrics`."""
    nested: dict = {}
    stats = seed_statistics(summary, "mIoU")
    for profile in dict.fromkeys(stats["profile"]):
        single_arch(summary, profile)
    for row in stats.itertuples():
        mean = None if math.isnan(row.mean) else round(float(row.mean), 2)  # null: no labelled pixel
        nested.setdefault(row.profile, {}).setdefault(row.variant, {})[SPECS[row.benchmark].title] = mean
    return nested


def write_metrics_dir(metrics: dict, directory: str | os.PathLike) -> None:
    """`<directory>/<profile>/<variant>.json`, each {benchmark title: mIoU %}: one file per variant, so
    `dvc metrics show` prints a variant x benchmark table. The folder is replaced as a whole (a variant
    no longer run leaves no stale file), through a temporary sibling and a rename."""
    directory = Path(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for profile, variants in metrics.items():
            for variant, values in variants.items():
                write_text(staging / profile / f"{variant}.json", json.dumps(values, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_aggregate(records: Iterable[Record], summary_path: str | os.PathLike,
                    metrics_dir: str | os.PathLike) -> pd.DataFrame:
    summary = summary_table(records)
    write_text(summary_path, summary.to_csv(index=False, lineterminator="\n"))
    Path(metrics_dir).parent.mkdir(parents=True, exist_ok=True)
    write_metrics_dir(miou_metrics(summary), metrics_dir)
    return summary
