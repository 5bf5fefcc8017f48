"""Where data comes from and where it is prepared."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

BENCHMARKS = ("a847", "pc459", "a150", "pc59", "pas20", "pas20b")  # the field's reporting order


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size of the generated raw datasets (offline profile)."""

    seed: int = 0
    train_images: int = 48
    val_images: int = 8  # per benchmark
    image_size: tuple[int, int] = (96, 128)  # (H, W) of generated images


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "real"] = "synthetic"
    # the synthetic and the real data live in separate folders, so one never overwrites the other
    raw_root: str = "data/synthetic/raw"  # fetched files (and, for synthetic data, the generated host)
    root: str = "data/synthetic/prepared"  # prepared datasets, one folder per dataset
    # unpacked archives, kept between runs; None: an "extracted" folder beside raw_root
    extract_root: str | None = None
    mirror: str | None = None  # URL or folder replacing the public download hosts (a lab's own copy)
    ade20k_full_archive: str | None = None  # registration-gated ADE20K_2021_17_01 zip, supplied by the user
    train_dataset: str = "coco_stuff"
    benchmarks: tuple[str, ...] = BENCHMARKS
    num_workers: int = 0  # worker processes for preparation (and data loading)
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)

    @property
    def extract_folder(self) -> str:
        """Where archives are unpacked: extract_root, or an "extracted" folder beside raw_root (so a run
        with its own raw_root never unpacks into another run's folder)."""
        return self.extract_root or str(Path(self.raw_root).parent / "extracted")
