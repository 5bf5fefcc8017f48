"""PAS-20 and PAS-20b: the 1449 ids of VOC 2012's `ImageSets/Segmentation/val.txt`, labelled by the
SBD-augmented `SegmentationClassAug` PNGs (0 background, 1..20 classes, 255 void). Classes 1..20 become
0..19 and 255 stays; background becomes 255 for PAS-20 and 20 for PAS-20b (docs/protocol.md).
CAT-Seg skips writing labels that come out all-ignored; keeping them changes no metric (all their pixels
are ignored) and keeps the image count at 1449. Images are kept as published.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from dcpclip.data.definitions import read_ids
from dcpclip.data.prepare.common import (
    Histogram,
    Inputs,
    SplitResult,
    check_same_size,
    check_values,
    convert_all,
    image_size,
    link_or_copy,
    read_array,
    require_dir,
    require_file,
    split_dirs,
    write_label,
)

NUM_CLASSES = 20
RAW_ALLOWED = (np.arange(256) <= NUM_CLASSES) | (np.arange(256) == 255)


def train_id_table(background: int) -> np.ndarray:
    """[256] uint8: VOC class id -> label (1..20 -> 0..19, 0 -> `background`, 255 and unused -> 255)."""
    table = np.full(256, 255, dtype=np.uint8)
    table[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES)
    table[0] = background
    return table


def _convert(item: tuple[Path, Path, Path, Path], table: np.ndarray) -> Histogram:
    image, label, out_image, out_label = item
    raw = read_array(label)
    check_same_size(raw.shape, image_size(image), label, image)
    check_values(raw, RAW_ALLOWED, label, f"0..{NUM_CLASSES} or 255")
    link_or_copy(image, out_image)
    return write_label(out_label, table[raw])


def _prepare(inputs: Inputs, out: Path, background: int, name: str) -> dict[str, SplitResult]:
    voc = require_dir(inputs.folder("voc2012"), "VOCdevkit/VOC2012", inputs.file("voc2012").name)
    val_list = require_file(voc / "ImageSets/Segmentation/val.txt", "id list", inputs.file("voc2012").name)
    labels = require_dir(inputs.folder("voc_aug"), "SegmentationClassAug", inputs.file("voc_aug").name)
    image_out, label_out = split_dirs(out, "val")
    items = [
        (
            require_file(voc / "JPEGImages" / f"{i}.jpg", "image", f"validation id {i}"),
            require_file(labels / f"{i}.png", "SegmentationClassAug label", f"validation id {i}"),
            image_out / f"{i}.jpg",
            label_out / f"{i}.png",
        )
        for i in read_ids(val_list)
    ]
    convert = functools.partial(_convert, table=train_id_table(background))
    return {"val": convert_all(convert, items, inputs.workers, f"{name} val")}


def prepare_pas20(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    return _prepare(inputs, out, background=255, name="pas20")


def prepare_pas20b(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    return _prepare(inputs, out, background=NUM_CLASSES, name="pas20b")
