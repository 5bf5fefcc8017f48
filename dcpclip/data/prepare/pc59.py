"""PC-59: the val-phase images of `trainval_merged.json` (PASCAL in Detail format: `images` with
`image_id`, `file_name`, `height`, `width`, `phase`; `annos_segmentation` with `image_id`, `category_id`
in the 1-based 459-label space, and an RLE `segmentation`). Each image's annotations are decoded and
painted in file order (a later one overwrites an earlier one, as the Detail API's `getMask` does); the 59
standard classes map to 0..58 in sorted-id order, every other id and unlabeled pixels to 255.

The 59 ids come from the pinned name lists: each `pc59.json` name's 1-based position in `pc459.json`, with
PC-59's "diningtable" being "table" in the 459 list (docs/protocol.md). RLE decoding uses
pycocotools (compressed string counts, and uncompressed count lists via `frPyObjects`).
The known val-phase count is 5104 or 5105 depending on the copy: the manifest reports it.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from dcpclip.data.definitions import read_names
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

NUM_CLASSES = 59
NUM_FULL_CLASSES = 459
ALIASES = {"diningtable": "table"}  # PC-59 name -> PC-459 name
VOC2010_IMAGES = "VOCdevkit/VOC2010/JPEGImages"


def context59_ids(pc59_names: list[str], pc459_names: list[str], where: str = "pc59.json") -> list[int]:
    """The 1-based 459-space ids of the 59 classes, sorted (= label 0..58)."""
    ids = []
    for name in pc59_names:
        full_name = ALIASES.get(name, name)
        if full_name not in pc459_names:
            raise DataError(f"{where}: PC-59 class {name!r} ({full_name!r}) is not in the PC-459 name list")
        ids.append(pc459_names.index(full_name) + 1)
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise DataError(f"{where}: the PC-59 names are not in increasing PC-459 id order: {ids}")
    return ids


def train_id_table(ids: list[int]) -> np.ndarray:
    """[460] uint8: 459-space id (0 = unlabeled) -> 0..58, or 255."""
    table = np.full(NUM_FULL_CLASSES + 1, 255, dtype=np.uint8)
    table[ids] = np.arange(len(ids))
    return table


def decode_rle(rle: dict) -> np.ndarray:
    """A COCO RLE (compressed string counts or an uncompressed count list) -> [H, W] uint8 mask."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    with warnings.catch_warnings():  # pycocotools 2.0.11 warns about numpy 2's copy keyword on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def _convert(item: tuple, table: np.ndarray, json_path: Path) -> Histogram:
    image, (height, width), annotations, out_image, out_label = item
    check_same_size((height, width), image_size(image), json_path, image)
    painted = np.zeros((height, width), dtype=np.int32)  # 0: unlabeled
    for annotation_id, category_id, rle in annotations:
        if not isinstance(category_id, int) or not 1 <= category_id <= NUM_FULL_CLASSES:
            raise DataError(
                f"{json_path}: annotation {annotation_id} has category_id {category_id!r} out of range "
                f"(allowed: 1..{NUM_FULL_CLASSES})"
            )
        try:
            mask = decode_rle(rle)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{json_path}: annotation {annotation_id}: unreadable RLE ({err})") from None
        if mask.shape != (height, width):
            raise DataError(
                f"{json_path}: annotation {annotation_id} mask is {mask.shape[0]}x{mask.shape[1]}, "
                f"image {image.name} is {height}x{width}"
            )
        painted[mask.astype(bool)] = category_id
    link_or_copy(image, out_image)
    return write_label(out_label, table[painted])


def read_detail(path: Path) -> tuple[list[dict], dict[int, list[tuple]]]:
    """Val-phase images and, per image id, its (annotation id, category id, RLE) in file order."""
    try:
        data = json.loads(Path(path).read_text())
        images = [img for img in data["images"] if img["phase"] == "val"]
        annotations = defaultdict(list)
        for ann in data["annos_segmentation"]:
            annotations[ann["image_id"]].append((ann.get("id"), ann["category_id"], ann["segmentation"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable annotation file ({err})") from None
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: not in PASCAL in Detail format (missing {err})") from None
    return images, annotations


def prepare(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    pc59 = read_names(inputs.file("catseg_pc59"), NUM_CLASSES)
    pc459 = read_names(inputs.file("catseg_pc459"), NUM_FULL_CLASSES)
    table = train_id_table(context59_ids(pc59, pc459))
    json_path = inputs.file("pascal_context_detail")
    images_dir = require_dir(inputs.folder("voc2010"), VOC2010_IMAGES, inputs.file("voc2010").name)
    image_out, label_out = split_dirs(out, "val")
    images, annotations = read_detail(json_path)
    items = []
    for img in images:
        try:
            name, size = img["file_name"], (int(img["height"]), int(img["width"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{json_path}: image entry {img.get('image_id')!r} lacks {err}") from None
        stem = Path(name).stem
        items.append(
            (
                require_file(images_dir / name, "image", f"{json_path.name} image {img.get('image_id')}"),
                size,
                annotations.get(img.get("image_id"), []),
                image_out / f"{stem}.jpg",
                label_out / f"{stem}.png",
            )
        )
    convert = functools.partial(_convert, table=table, json_path=json_path)
    return {"val": convert_all(convert, items, inputs.workers, "pc59 val")}
