"""PC-459: Pascal Context with all 459 labels, on the VOC 2010 images. For each id of the pinned
5104-id validation list, the label is `LabelMap - 1` (0..458) of `trainval/<id>.mat`, saved as uint16 TIFF;
every pixel is labelled ("unknown" is a class), so the ignore value 459 never occurs
(docs/protocol.md). `labels.txt` must list the 459 classes. Images are kept as published.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import scipy.io

from dcpclip.data.definitions import read_ids, read_pascal_context_labels
from dcpclip.data.errors import DataError
from dcpclip.data.prepare.common import (
    Histogram,
    Inputs,
    SplitResult,
    check_same_size,
    convert_all,
    image_size,
    link_or_copy,
    require_dir,
    require_file,
    split_dirs,
    write_label,
)

NUM_CLASSES = 459
VOC2010_IMAGES = "VOCdevkit/VOC2010/JPEGImages"


def read_label_map(path: Path) -> np.ndarray:
    """The `LabelMap` field of a Pascal Context .mat file, [H, W]."""
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as err:
        raise DataError(f"{path}: unreadable .mat file ({err})") from None
    if "LabelMap" not in mat:
        raise DataError(
            f"{path}: no 'LabelMap' field (fields: {', '.join(k for k in mat if not k.startswith('__'))})"
        )
    label_map = np.asarray(mat["LabelMap"])
    if label_map.ndim != 2:
        raise DataError(f"{path}: LabelMap has shape {label_map.shape}, expected [H, W]")
    return label_map


def _convert(item: tuple[Path, Path, Path, Path], num_classes: int) -> Histogram:
    image, mat, out_image, out_label = item
    label_map = read_label_map(mat)
    check_same_size(label_map.shape, image_size(image), mat, image)
    low, high = int(label_map.min()), int(label_map.max())
    if low < 1 or high > num_classes:
        raise DataError(f"{mat}: LabelMap values {low}..{high} out of range (allowed: 1..{num_classes})")
    link_or_copy(image, out_image)
    return write_label(out_label, (label_map.astype(np.int64) - 1).astype(np.uint16))


def prepare(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    context = inputs.folder("pascal_context")
    archive = inputs.file("pascal_context").name
    labels_txt = require_file(context / "labels.txt", "class list labels.txt", archive)
    labels = read_pascal_context_labels(labels_txt)
    if sorted(labels) != list(range(1, NUM_CLASSES + 1)):
        raise DataError(f"{labels_txt}: {len(labels)} classes, expected indices 1..{NUM_CLASSES}")
    mats = require_dir(context, "trainval", archive)
    images = require_dir(inputs.folder("voc2010"), VOC2010_IMAGES, inputs.file("voc2010").name)
    image_out, label_out = split_dirs(out, "val")
    items = [
        (
            require_file(images / f"{i}.jpg", "image", f"validation id {i}"),
            require_file(mats / f"{i}.mat", "LabelMap .mat", f"validation id {i}"),
            image_out / f"{i}.jpg",
            label_out / f"{i}.tif",
        )
        for i in read_ids(inputs.file("catseg_pascalcontext_val"))
    ]
    convert = functools.partial(_convert, num_classes=NUM_CLASSES)
    return {"val": convert_all(convert, items, inputs.workers, "pc459 val")}
