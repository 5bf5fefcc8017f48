"""Prepare a dataset into the layout of `dcpclip.data.specs`: fetch and verify its files (the pinned
definition files included), convert every image and label by the protocol's rules into a temporary
folder, check the image counts, write `classes.json` and `manifest.json`, then rename the folder into place.
On any error nothing is left under the prepared root.

A prepared dataset whose manifest carries this preparation's fingerprint (the verified source hashes, the
expected counts and the code of the prepare stage, `dcpclip.code_digest`) and whose files are all there at
the sizes its manifest lists is up to date and left as it is, so a change of a training or evaluation
setting never prepares the data again; one with a file missing or cut short is named and prepared again.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path

from dcpclip import paths
from dcpclip.code_digest import code_identity
from dcpclip.data.config import DataConfig
from dcpclip.data.definitions import read_names
from dcpclip.data.errors import DataError
from dcpclip.data.fetch import fetch_dataset, registry_for
from dcpclip.data.inventory import inventory, inventory_problem
from dcpclip.data.prepare import a150, a847, coco_stuff, pascal_voc, pc59, pc459
from dcpclip.data.prepare.common import Inputs, SplitResult, atomic_dir
from dcpclip.data.sources import LOCK_PATH, Registry, names_source
from dcpclip.data.specs import SPECS
from dcpclip.errors import CorruptCacheWarning

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


@dataclasses.dataclass(frozen=True)
class Prepared:
    manifest: dict  # the dataset's manifest.json
    redone: bool  # False: the folder was up to date and left untouched


def preparation_fingerprint(dataset: str, registry: Registry, fetched: dict) -> str:
    """What the prepared files are a function of: the sources by verified hash, the accepted counts and
    the prepare stage's code."""
    return paths.fingerprint({
        "dataset": dataset,
        "origin": registry.origin,
        "expected_images": {split: list(n) for split, n in registry.expected_images[dataset].items()},
        "sources": {key: f.verified_hash for key, f in sorted(fetched.items())},
        "code": code_identity(paths.PREPARE_CODE),
    })


def up_to_date_manifest(folder: Path, fingerprint: str) -> dict | None:
    """The manifest of a preparation of `fingerprint` in `folder`, or None (prepare again): none there, of
    another fingerprint, or unreadable (named in a warning)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        warnings.warn(CorruptCacheWarning(f"prepared manifest {path}: unreadable ({err}); preparing again"),
                      stacklevel=2)
        return None
    if not isinstance(record, dict) or record.get("preparation_fingerprint") != fingerprint:
        return None
    problem = "no file inventory (an older layout)" if not isinstance(record.get("files"), dict) else \
        inventory_problem(folder, record["files"])
    if problem:
        warnings.warn(CorruptCacheWarning(f"prepared dataset {folder}: {problem}; preparing again"), stacklevel=2)
        return None
    return record


def manifest(dataset: str, registry: Registry, splits: dict[str, SplitResult], fetched: dict) -> dict:
    spec = SPECS[dataset]
    return {
        "preparation_fingerprint": preparation_fingerprint(dataset, registry, fetched),
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
) -> Prepared:
    """Fetch, convert and check `dataset` into `<cfg.root>/<dataset>/` unless it is up to date there."""
    if dataset not in PREPARERS:
        raise DataError(f"unknown dataset {dataset!r} (known: {', '.join(PREPARERS)})")
    registry = registry or registry_for(cfg)
    fetched = fetch_dataset(dataset, cfg, registry=registry, lock_path=lock_path, progressbar=progressbar)
    spec = SPECS[dataset]
    folder = Path(cfg.root) / dataset
    current = up_to_date_manifest(folder, preparation_fingerprint(dataset, registry, fetched))
    if current is not None:
        return Prepared(current, redone=False)
    names = read_names(fetched[names_source(dataset)].path, spec.num_prompts)
    inputs = Inputs(fetched, extract_root=Path(cfg.extract_folder), workers=cfg.num_workers)
    with atomic_dir(folder) as tmp:
        splits = PREPARERS[dataset](inputs, tmp)
        check_counts(dataset, splits, dict(registry.expected_images[dataset]))
        record = manifest(dataset, registry, splits, fetched)
        (tmp / "classes.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
        record["files"] = inventory(tmp)  # every file but the manifest, checked before the folder is reused
        (tmp / "manifest.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return Prepared(record, redone=True)
