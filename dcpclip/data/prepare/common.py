"""What every dataset preparation shares: its inputs (fetched files, unpacked archives), checked reading
of images and label maps (errors name the file), label writing (uint8 PNG / uint16 TIFF), the per-image
loop (optionally over worker processes) that accumulates the label histogram, and the folder that only
appears under its final name once complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dcpclip.atomic import remove_abandoned, temporary_name
from dcpclip.data.archives import extract
from dcpclip.data.errors import DataError
from dcpclip.data.sources import Fetched


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The verified files a dataset is prepared from."""

    fetched: Mapping[str, Fetched]
    extract_root: Path  # archives are unpacked into <extract_root>/<archive name>/
    workers: int = 0  # worker processes for the per-image loop (0: in this process)

    def file(self, key: str) -> Path:
        return self.fetched[key].path

    def folder(self, key: str) -> Path:
        """The unpacked content of archive `key`."""
        fetched = self.fetched[key]
        return extract(fetched.path, self.extract_root, fetched.verified_hash)


@dataclasses.dataclass
class SplitResult:
    images: int
    histogram: dict[int, int]  # label value -> pixel count


Histogram = tuple[np.ndarray, np.ndarray]  # (label values, pixel counts) of one written label map


def convert_all(
    convert: Callable[[object], Histogram], items: Sequence, workers: int, desc: str
) -> SplitResult:
    """Run `convert` on every item (a picklable function when `workers` > 0) and add up the histograms."""
    total: dict[int, int] = {}
    with contextlib.ExitStack() as stack:
        if workers > 0 and len(items) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            results = pool.map(convert, items, chunksize=max(1, min(64, len(items) // (4 * workers))))
        else:
            results = map(convert, items)
        for values, counts in tqdm(results, total=len(items), desc=desc, unit="img", disable=None):
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                total[value] = total.get(value, 0) + count
    return SplitResult(images=len(items), histogram=dict(sorted(total.items())))


def split_dirs(out: Path, split: str) -> tuple[Path, Path]:
    """`<out>/images/<split>` and `<out>/labels/<split>`, created."""
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    return images, labels


def require_file(path: Path, what: str, image_id: str) -> Path:
    if not path.is_file():
        raise DataError(f"missing {what} for {image_id}: {path}")
    return path


def require_dir(root: Path, relative: str, archive: str) -> Path:
    path = root / relative
    if not path.is_dir():
        raise DataError(f"{archive}: no folder {relative}/ in the archive (unpacked at {root})")
    return path


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, reading only its header."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None
    return height, width


def read_pixels(path: Path) -> np.ndarray:
    """Decoded pixels of an image as stored ([H, W] or [H, W, C])."""
    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None


def read_array(path: Path, channels: int = 1) -> np.ndarray:
    """Decoded pixels of a label image: [H, W] for `channels` 1 (index/grey values), [H, W, C] otherwise."""
    array = read_pixels(path)
    if channels == 1 and array.ndim != 2:
        raise DataError(f"{path}: expected a single-channel label map, got shape {array.shape}")
    if channels > 1 and (array.ndim != 3 or array.shape[2] < channels):
        raise DataError(f"{path}: expected {channels} colour channels, got shape {array.shape}")
    return array


def check_same_size(label_hw: tuple[int, ...], image_hw: tuple[int, int], label_path: Path, image_path: Path):
    if tuple(label_hw[:2]) != tuple(image_hw):
        raise DataError(
            f"{label_path}: label size {label_hw[0]}x{label_hw[1]} (HxW) differs from image "
            f"{image_path} size {image_hw[0]}x{image_hw[1]}"
        )


def check_values(label: np.ndarray, allowed: np.ndarray, path: Path, allowed_text: str) -> None:
    """`allowed` is a boolean table indexed by label value."""
    values = np.unique(label)
    bad = values[(values >= len(allowed)) | ~allowed[np.minimum(values, len(allowed) - 1)]]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8].tolist())
        raise DataError(f"{path}: label value(s) {shown} out of range (allowed: {allowed_text})")


def write_label(path: Path, label: np.ndarray) -> Histogram:
    """uint8 -> PNG, uint16 -> TIFF (the field's formats); returns the written map's histogram."""
    if label.dtype == np.uint8:
        Image.fromarray(label).save(path, format="PNG")
    elif label.dtype == np.uint16:
        Image.fromarray(label).save(path, format="TIFF")
    else:
        raise TypeError(f"labels are uint8 or uint16, got {label.dtype}")
    return np.unique(label, return_counts=True)


def link_or_copy(src: Path, dst: Path) -> None:
    """The original file unchanged (a hard link where the file system allows it)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`: on success it replaces `final`, on error it goes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final)
    tmp, old = temporary_name(final), temporary_name(final, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
