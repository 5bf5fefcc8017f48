"""Torch datasets over the prepared layout (`dcpclip.data.specs`):

    <root>/<key>/classes.json                  prompt names
    <root>/<key>/images/<split>/<id>.jpg
    <root>/<key>/labels/<split>/<id>.png       uint8 (label_format "png8") or .tif uint16 ("tif16")

`prepared_samples` lists a split (the only I/O before loading); the dataset classes take that list and
read one sample per item.

Training randomness: the sample `index` drawn in pass `epoch` is augmented with the generator
`numpy.random.default_rng((AUGMENTATION_STREAM, seed, epoch, index))`, a pure function of those numbers,
independent of worker processes, global RNG state and load order. A resumed run that replays the same
(index, epoch) keys (`dcpclip.engine.sampler.SampleKey`) therefore gets bit-identical batches. The leading
constant keeps these streams apart from other `default_rng((seed, ...))` streams: numpy's SeedSequence
treats trailing zeros as padding, so `(seed, epoch)` and `(seed, epoch, 0)` would give the same stream.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile
import torch
from PIL import Image
from torch.utils.data import Dataset

from dcpclip.data.errors import DataError
from dcpclip.data.specs import DatasetSpec
from dcpclip.data.transforms import EvalResize, TrainAugmentation

TRAIN_IGNORE_VALUE = 255  # the ignore index of the training losses
AUGMENTATION_STREAM = 0x41554701  # tags augmentation generators (see the module docstring)
LABEL_SUFFIX = {"png8": ".png", "tif16": ".tif"}
_LABEL_DTYPE = {"png8": np.uint8, "tif16": np.uint16}


@dataclasses.dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    label: Path


class DrawKey(Protocol):
    """What the training dataset is indexed by (`dcpclip.engine.sampler.SampleKey`)."""

    index: int
    epoch: int


def prepared_samples(root: str | os.PathLike, spec: DatasetSpec) -> list[Sample]:
    """The (image, label) files of `spec`'s split under `root`, sorted by id."""
    base = Path(root) / spec.key
    images_dir, labels_dir = base / "images" / spec.split, base / "labels" / spec.split
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no prepared {spec.title} images; run the preparation step first")
    ids = sorted(path.stem for path in images_dir.glob("*.jpg"))
    if not ids:
        raise DataError(f"{images_dir}: no .jpg images")
    suffix = LABEL_SUFFIX[spec.label_format]
    samples = [Sample(i, images_dir / f"{i}.jpg", labels_dir / f"{i}{suffix}") for i in ids]
    missing = [s.label for s in samples if not s.label.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise DataError(f"{len(missing)} of {len(samples)} {spec.title} label files are missing: {shown}")
    return samples


def read_class_names(root: str | os.PathLike, spec: DatasetSpec) -> list[str]:
    """The prompt names of a prepared dataset (`classes.json`), one per prompt."""
    path = Path(root) / spec.key / "classes.json"
    try:
        names = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: class-name file not found; run the preparation step first") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable class-name file ({err})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise DataError(f"{path}: expected a JSON list of class names")
    if len(names) != spec.num_prompts:
        raise DataError(f"{path}: {len(names)} class names, but {spec.title} has {spec.num_prompts} prompts")
    return names


def read_image(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None


def read_label(path: Path, label_format: str) -> np.ndarray:
    """[H, W] uint8 ("png8") or uint16 ("tif16") label map."""
    try:
        if label_format == "tif16":
            label = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                mode, label = image.mode, np.array(image)
            if mode not in ("L", "P"):  # grey or palette-indexed: the array holds the label values
                raise DataError(f"{path}: expected an 8-bit single-channel PNG, got PIL mode {mode}")
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable label map ({err})") from None
    expected = _LABEL_DTYPE[label_format]
    if label.ndim != 2 or label.dtype != expected:
        raise DataError(
            f"{path}: expected a [H, W] {np.dtype(expected).name} label map, got {label.dtype} {label.shape}"
        )
    return label


def read_pair(sample: Sample, label_format: str) -> tuple[np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8, label [H, W]) of one sample, of the same size."""
    image, label = read_image(sample.image), read_label(sample.label, label_format)
    if image.shape[:2] != label.shape:
        raise DataError(
            f"{sample.label}: label size {label.shape[0]}x{label.shape[1]} (HxW) differs from image "
            f"{sample.image} size {image.shape[0]}x{image.shape[1]}"
        )
    return image, label


def augmentation_rng(seed: int, index: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng((AUGMENTATION_STREAM, seed, epoch, index))


class TrainingDataset(Dataset):
    """Items keyed by (index, epoch) -> (image [3, S, S] float32, label [S, S] int64, ignore 255)."""

    def __init__(self, samples: list[Sample], label_format: str, augmentation: TrainAugmentation, seed: int):
        self.samples = samples
        self.label_format = label_format
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: DrawKey) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = read_pair(self.samples[key.index], self.label_format)
        return self.augmentation(image, label, augmentation_rng(self.seed, key.index, key.epoch))


@dataclasses.dataclass
class EvalItem:
    id: str
    image: torch.Tensor  # [3, h, w] float32, resized to the evaluation size, CLIP-normalised
    label: torch.Tensor  # [H, W] int64 at the original size (metrics are computed there)


class EvaluationDataset(Dataset):
    def __init__(self, samples: list[Sample], label_format: str, transform: EvalResize):
        self.samples = samples
        self.label_format = label_format
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> EvalItem:
        sample = self.samples[index]
        image, label = read_pair(sample, self.label_format)
        return EvalItem(sample.id, self.transform(image), torch.from_numpy(label.astype(np.int64)))


def training_dataset(
    root: str | os.PathLike, spec: DatasetSpec, crop_size: int, seed: int
) -> TrainingDataset:
    """The training split of `spec` with the recipe's augmentation (lists the files)."""
    if spec.ignore_value != TRAIN_IGNORE_VALUE:
        raise DataError(
            f"{spec.key}: training labels must use {TRAIN_IGNORE_VALUE} as the ignore value "
            f"(the losses' ignore index), this dataset uses {spec.ignore_value}"
        )
    samples = prepared_samples(root, spec)
    return TrainingDataset(samples, spec.label_format, TrainAugmentation(crop_size), seed)


def evaluation_dataset(
    root: str | os.PathLike, spec: DatasetSpec, short_side: int, max_long_side: int
) -> EvaluationDataset:
    """The evaluation split of `spec` with the protocol's resize (lists the files)."""
    samples = prepared_samples(root, spec)
    return EvaluationDataset(samples, spec.label_format, EvalResize(short_side, max_long_side))
