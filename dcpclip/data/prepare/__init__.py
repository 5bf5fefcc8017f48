"""Prepare a dataset into the layout of `dcpclip.data.specs`: fetch and verify its files (the pinned
definition files included), convert every image and label by the protocol's rules into a temporary
folder, check the image counts, write `classes.json` and `manifest.json`, then rename the folder into place.
On any error nothing is left under the prepared root.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dcpclip.data.config import DataConfig
from dcpclip.data.definitions import read_names
from dcpclip.data.errors import DataError
from dcpclip.data.fetch import fetch_dataset, registry_for
from dcpclip.data.prepare import a150, a847, coco_stuff, pascal_voc, pc59, pc459
from dcpclip.data.prepare.common import Inputs, SplitResult, atomic_dir
from dcpclip.data.sources import LOCK_PATH, Registry, names_source
from dcpclip.data.specs import SPECS

PREPARERS: dict[str, Callable[[Inputs, Path], dict[str, SplitResult]]] = {
    "coco_stuff": coco_stuff.prepare,
    "a847": a847.prepare,
    "pc459": pc459.prepare,
    "a150": a150.prepare,
    "pc59": pc59.prepare,
    "pas20": pascal_voc.prepare_pas20,
    "pas20b": pascal_voc.prepare_pas20b,
}


def check_counts(dataset: str, splits: dict[str, SplitResult], expected: dict[str, tuple[int, ...]]) -> None:
    for split, accepted in expected.items():
        found = splits[split].images if split in splits else 0
        if found not in accepted:
            raise DataError(
                f"{dataset}: {split} split has {found} images, expected {' or '.join(map(str, accepted))}"
            )


def histogram_summary(histogram: dict[int, int], ignore_value: int) -> dict:
    pixels = sum(histogram.values())
    labelled = {v: n for v, n in histogram.items() if v != ignore_value}
    return {
        "pixels": pixels,
        "ignored_fraction": round(histogram.get(ignore_value, 0) / pixels, 6) if pixels else 0.0,
        "classes_present": len(labelled),
        "min_label": min(labelled, default=None),
        "max_label": max(labelled, default=None),
        "counts": [[v, n] for v, n in sorted(histogram.items())],  # [label value, pixels]
    }


def manifest(dataset: str, registry: Registry, splits: dict[str, SplitResult], fetched: dict) -> dict:
    spec = SPECS[dataset]
    return {
        "dataset": dataset,
        "title": spec.title,
        "origin": registry.origin,
        "images": {split: result.images for split, result in splits.items()},
        "num_classes": spec.num_classes,
        "num_prompts": spec.num_prompts,
        "ignore_value": spec.ignore_value,
        "label_format": spec.label_format,
        "label_histogram": {
            split: histogram_summary(r.histogram, spec.ignore_value) for split, r in splits.items()
        },
        "sources": {key: {"file": f.source.filename, "hash": f.verified_hash} for key, f in fetched.items()},
    }


def prepare_dataset(
    dataset: str,
    cfg: DataConfig,
    *,
    registry: Registry | None = None,
    lock_path: Path = LOCK_PATH,
    progressbar: bool = True,
) -> dict:
    """Fetch, convert and check `dataset` into `<cfg.root>/<dataset>/`; returns its manifest."""
    if dataset not in PREPARERS:
        raise DataError(f"unknown dataset {dataset!r} (known: {', '.join(PREPARERS)})")
    registry = registry or registry_for(cfg)
    fetched = fetch_dataset(dataset, cfg, registry=registry, lock_path=lock_path, progressbar=progressbar)
    spec = SPECS[dataset]
    names = read_names(fetched[names_source(dataset)].path, spec.num_prompts)
    extract_root = Path(cfg.extract_root or Path(cfg.raw_root).parent / "extracted")
    inputs = Inputs(fetched, extract_root=extract_root, workers=cfg.num_workers)
    with atomic_dir(Path(cfg.root) / dataset) as tmp:
        splits = PREPARERS[dataset](inputs, tmp)
        check_counts(dataset, splits, dict(registry.expected_images[dataset]))
        record = manifest(dataset, registry, splits, fetched)
        (tmp / "classes.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
