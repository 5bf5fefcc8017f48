"""A-847: the validation split of the full ADE20K release `ADE20K_2021_17_01` (registration-gated).

Rules (docs/protocol.md, as in MaskFormer's and CAT-Seg's `prepare_ade20k_full.py`, read for
facts only):
- validation files: entries of `index_ade20k.pkl` ({'folder': [...], 'filename': [...], ...}) whose file
  name has `val` as its second `_`-separated field; the image is `<folder>/<filename>`, its class map
  `<folder>/<stem>_seg.png`.
- ADE object id of a pixel: (R // 10) * 256 + G of the `_seg.png`.
- when the shorter side exceeds 512 it becomes 512 and the longer `round(long / short * 512)`: OpenCV
  INTER_LINEAR for the image, INTER_NEAREST for the id map (before the id -> trainId mapping).
- the 847 ids of the pinned `ADE20K_SEM_SEG_FULL_CATEGORIES` list map to their trainId 0..846, every other
  id to 65535; uint16 TIFF.
- every image, resized or not, is re-saved as JPEG with Pillow's default quality.
The pickle (its protocol is not documented) is loaded with an unpickler that admits numpy arrays of any
pickle protocol, 0 to 5, and plain containers, and refuses every other callable.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dcpclip.data.definitions import read_ade20k_full_categories
from dcpclip.data.errors import DataError
from dcpclip.data.prepare.common import (
    Histogram,
    Inputs,
    SplitResult,
    check_same_size,
    convert_all,
    read_array,
    read_pixels,
    require_file,
    split_dirs,
    write_label,
)

NUM_CLASSES = 847
IGNORE = 65535
MAX_SHORT_SIDE = 512
RELEASE = "ADE20K_2021_17_01"
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """What protocols 0-2 pickle numpy's raw bytes as: `_codecs.encode(text, "latin1")`, and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def resized_size(height: int, width: int) -> tuple[int, int] | None:
    """(H, W) after the short-side-512 rule, or None when the image is kept at its size."""
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / float(height) * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / float(width) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def decode_object_ids(seg: np.ndarray) -> np.ndarray:
    """[H, W, 3+] uint8 `_seg.png` pixels -> [H, W] int32 ADE object ids."""
    return (seg[..., 0].astype(np.int32) // 10) * 256 + seg[..., 1].astype(np.int32)


def train_id_table(categories: list[dict]) -> np.ndarray:
    """[max id + 1] uint16: ADE object id -> trainId, 65535 for ids outside the selection."""
    table = np.full(max(256 * 26, max(c["id"] for c in categories) + 1), IGNORE, dtype=np.uint16)
    for cat in categories:
        table[cat["id"]] = cat["trainId"]
    return table


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_index(path: Path) -> list[tuple[str, str]]:
    """(folder, filename) of every image listed in `index_ade20k.pkl`."""
    try:
        with open(path, "rb") as fh:
            index = _IndexUnpickler(fh).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise DataError(f"{path}: unreadable index ({err})") from None
    if not (isinstance(index, dict) and "folder" in index and "filename" in index):
        raise DataError(f"{path}: expected a dict with 'folder' and 'filename' lists")
    folders, filenames = list(index["folder"]), list(index["filename"])
    if len(folders) != len(filenames):
        raise DataError(f"{path}: {len(folders)} folders but {len(filenames)} file names")
    return [(str(f), str(n)) for f, n in zip(folders, filenames, strict=True)]


def is_validation(filename: str) -> bool:
    fields = filename.split("_")
    return len(fields) > 1 and fields[1] == "val"


def _convert(item: tuple[Path, Path, Path, Path], table: np.ndarray) -> Histogram:
    image, seg_path, out_image, out_label = item
    pixels = read_pixels(image)
    seg = read_array(seg_path, channels=3)
    check_same_size(seg.shape, pixels.shape[:2], seg_path, image)
    ids = decode_object_ids(seg)
    size = resized_size(*pixels.shape[:2])
    if size is not None:
        height, width = size
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
        ids = cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(pixels).save(out_image, format="JPEG")  # Pillow's default quality (75), like the field
    return write_label(out_label, table[ids])


def prepare(inputs: Inputs, out: Path) -> dict[str, SplitResult]:
    categories = read_ade20k_full_categories(inputs.file("catseg_prepare_ade20k_full"), NUM_CLASSES)
    root = inputs.folder("ade20k_full")
    index_path = require_file(root / RELEASE / "index_ade20k.pkl", "index", inputs.file("ade20k_full").name)
    image_out, label_out = split_dirs(out, "val")
    items, seen = [], set()
    for folder, filename in read_index(index_path):
        if not is_validation(filename):
            continue
        stem = Path(filename).stem
        if stem in seen:
            raise DataError(f"{index_path}: image {filename} is listed twice")
        seen.add(stem)
        image = require_file(root / folder / filename, "image", f"index entry {folder}/{filename}")
        seg = require_file(root / folder / f"{stem}_seg.png", "class map (_seg.png)", f"image {image}")
        items.append((image, seg, image_out / f"{stem}.jpg", label_out / f"{stem}.tif"))
    convert = functools.partial(_convert, table=train_id_table(categories))
    return {"val": convert_all(convert, items, inputs.workers, "a847 val")}
