"""A-150: the ADE20K scene-parsing validation split (`ADEChallengeData2016.zip`). Label PNG values are
0 ("other") and 1..150; the prepared label is value - 1 with uint8 wrap-around, so 0 -> 255 (ignored) and
1..150 -> 0..149 (docs/protocol.md). Images are kept as published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

NUM_CLASSES = 150
RAW_ALLOWED = np.arange(256) <= NUM_CLASSES


def _convert(item: tuple[Path, Path, Path, Path]) -> Histogram:
    image, label, out_image, out_label = item
    raw = read_array(label)
    check_same_size(raw.shape, image_size(image), label, image)
    check_values(raw, RAW_ALLOWED, label, f"0..{NUM_CLASSES}")
    link_or_copy(image, out_image)
    return write_label(out_label, (raw.astype(np.uint8) - np.uint8(1)))  # uint8 wrap: 0 -> 255


def prepare(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    root = inputs.folder("ade20k_challenge")
    archive = inputs.file("ade20k_challenge").name
    images = require_dir(root, "ADEChallengeData2016/images/validation", archive)
    labels = require_dir(root, "ADEChallengeData2016/annotations/validation", archive)
    image_out, label_out = split_dirs(out, "val")
    items = [
        (
            require_file(images / f"{label.stem}.jpg", "image", f"label {label}"),
            label,
            image_out / f"{label.stem}.jpg",
            label_out / label.name,
        )
        for label in sorted(labels.glob("*.png"))
    ]
    return {"val": convert_all(_convert, items, inputs.workers, "a150 val")}
