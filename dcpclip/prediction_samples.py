"""Prediction samples: the first images of a benchmark split with their ground truth and one run's
predicted labels, kept by the evaluation pass (`eval.sample_images` per split) so the report can draw a
qualitative grid without loading a model.

One file per evaluation record, beside it: `<benchmark>.samples.npz` (an ordinary `numpy.load`-able
archive, written with fixed zip timestamps so the same samples give the same bytes). It carries the
record's `config_fingerprint`, and the report uses a sample file only when that equals its record's: a
stale file never shows a prediction the numbers did not come from. Pictures are shrunk to a short side of
at most `SAMPLE_SIDE` pixels (labels by nearest neighbour), which is what a grid cell shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from dcpclip.atomic import atomic_path

SAMPLE_SIDE = 160  # short side of the stored pictures, in pixels
SUFFIX = ".samples.npz"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip's entry timestamps: byte-identical files for identical samples


class SamplesError(ValueError):
    """A sample file is malformed; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Sample:
    id: str
    image: np.ndarray  # [h, w, 3] uint8
    label: np.ndarray  # [h, w] int64 ground truth (the benchmark's ignore value where unlabelled)
    prediction: np.ndarray  # [h, w] int64 predicted labels


@dataclasses.dataclass(frozen=True)
class SampleSet:
    profile: str
    arch: str
    variant: str
    seed: int
    benchmark: str
    config_fingerprint: str  # that of the evaluation record the predictions belong to
    class_names: list[str]  # one per label index
    ignore_value: int
    samples: list[Sample]


def samples_path(record_path: str | os.PathLike) -> Path:
    """`<folder>/<benchmark>.json` -> `<folder>/<benchmark>.samples.npz`."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.stem + SUFFIX)


def shrink(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, ...]:
    """Shrink the three [H, W(, 3)] arrays to a short side of at most SAMPLE_SIDE: the image with
    antialiasing, the two label maps by nearest neighbour (labels are never blended)."""
    height, width = label.shape
    scale = min(1.0, SAMPLE_SIDE / min(height, width))
    if scale == 1.0:
        return image, label, prediction
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (width, height)
    small_image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    rows = (np.arange(size[1]) * height // size[1])[:, None]
    columns = (np.arange(size[0]) * width // size[0])[None, :]
    return small_image, label[rows, columns], prediction[rows, columns]


def write_samples(path: str | os.PathLike, samples: SampleSet) -> None:
    meta = {k: v for k, v in dataclasses.asdict(samples).items() if k != "samples"}
    meta["ids"] = [s.id for s in samples.samples]
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    for i, sample in enumerate(samples.samples):
        arrays[f"image_{i}"] = np.ascontiguousarray(sample.image, dtype=np.uint8)
        arrays[f"label_{i}"] = np.ascontiguousarray(sample.label, dtype=np.int64)
        arrays[f"prediction_{i}"] = np.ascontiguousarray(sample.prediction, dtype=np.int64)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w") as file:
                np.lib.format.write_array(file, array, allow_pickle=False)


def load_samples(path: str | os.PathLike) -> SampleSet:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            ids = meta.pop("ids")
            samples = [Sample(id_, archive[f"image_{i}"], archive[f"label_{i}"], archive[f"prediction_{i}"])
                       for i, id_ in enumerate(ids)]
        return SampleSet(**meta, samples=samples)
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
        raise SamplesError(f"{path}: not a readable prediction-samples file ({type(err).__name__}: {err})") from None


def load_sample_sets(results_dir: str | os.PathLike, profile: str) -> list[SampleSet]:
    """Every sample file under `<results_dir>/eval/<profile>`, in path order."""
    return [load_samples(p) for p in sorted(Path(results_dir, "eval", profile).rglob(f"*{SUFFIX}"))]
