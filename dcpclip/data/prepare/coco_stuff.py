"""COCO-Stuff-164k, the training set: COCO 2017 images with the `stuffthingmaps_trainval2017` label PNGs
(0-based COCO-Stuff ids 0..181, 255 unlabeled). The 171 ids that carry masks become train ids 0..170 in id
order; the 11 thing ids that never carry masks, and 255, become 255 (docs/protocol.md). Images
are kept as published. Both splits are prepared: `train` (trained on) and `val` (in-domain checks).
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
from dcpclip.data.specs import NUM_RAW_IDS, UNUSED_THING_IDS


def train_id_table() -> np.ndarray:
    """[256] uint8: raw COCO-Stuff id -> train id (255 for unused ids and unlabeled)."""
    used = [i for i in range(NUM_RAW_IDS) if i not in UNUSED_THING_IDS]
    table = np.full(256, 255, dtype=np.uint8)
    table[used] = np.arange(len(used))
    return table


TRAIN_IDS = train_id_table()
RAW_ALLOWED = np.zeros(256, dtype=bool)
RAW_ALLOWED[:NUM_RAW_IDS] = RAW_ALLOWED[255] = True


def _convert(item: tuple[Path, Path, Path, Path]) -> Histogram:
    image, label, out_image, out_label = item
    raw = read_array(label)
    check_same_size(raw.shape, image_size(image), label, image)
    check_values(raw, RAW_ALLOWED, label, f"0..{NUM_RAW_IDS - 1} or 255")
    link_or_copy(image, out_image)
    return write_label(out_label, TRAIN_IDS[raw])


def prepare(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    maps = inputs.folder("cocostuff_stuffthingmaps")
    results = {}
    for split, key, folder in (("train", "coco_train2017", "train2017"), ("val", "coco_val2017", "val2017")):
        images = require_dir(inputs.folder(key), folder, inputs.file(key).name)
        labels = require_dir(maps, folder, inputs.file("cocostuff_stuffthingmaps").name)
        image_out, label_out = split_dirs(out, split)
        items = [
            (
                require_file(images / f"{label.stem}.jpg", "image", f"label {label}"),
                label,
                image_out / f"{label.stem}.jpg",
                label_out / label.name,
            )
            for label in sorted(labels.glob("*.png"))
        ]
        results[split] = convert_all(_convert, items, inputs.workers, f"coco_stuff {split}")
    return results
