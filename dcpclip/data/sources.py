"""Where every file of COCO-Stuff-164k and the six benchmarks comes from: one registry of URLs, file
names, published checksums and sizes, which files each dataset needs, and how many images each split holds.

Checksums: a published one (sha256, md5 or sha1, as its publisher gave it) is verified on every fetch.
Where none is published, the sha256 of the first download is written to a committed lock file
(`sources.lock.json` beside this module) and verified ever after. The benchmark definition files (prompt
names, the A-847 id selection, the Pascal Context validation ids) are fetched from the CAT-Seg repository
pinned to one commit, with the sha256 sums and sizes of `docs/protocol.md`; the project carries
no copy of them.

Where the published checksums come from (facts only, no code taken):
- COCO 2017 zips: md5 sums listed by PaddleDetection's dataset table and COCO download scripts.
- VOC 2010 / 2012 tars: md5 sums of torchvision's `VOCSegmentation`.
- ADEChallengeData2016.zip, trainval_merged.json: sha1 sums of gluon-cv / PyTorch-Encoding's preparation
  scripts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dcpclip.atomic import write_text
from dcpclip.data.errors import DataError
from dcpclip.data.specs import SPECS

CAT_SEG_COMMIT = "6d3a188af95165147fe2f34a8237fa7d2633e784"
CAT_SEG_DATASETS = f"https://raw.githubusercontent.com/KU-CVLAB/CAT-Seg/{CAT_SEG_COMMIT}/datasets/"
LOCK_PATH = Path(__file__).with_name("sources.lock.json")

ADE20K_FULL_HELP = (
    "A-847 needs the full ADE20K release ADE20K_2021_17_01.zip, which is only served to registered, "
    "approved accounts: request access at https://ade20k.csail.mit.edu/ (the 'Download' page), download "
    "ADE20K_2021_17_01.zip yourself, then pass data.ade20k_full_archive=/path/to/ADE20K_2021_17_01.zip "
    "(or put it in data.mirror, or in the raw folder). Its sha256 is recorded in sources.lock.json at "
    "first use."
)


@dataclasses.dataclass(frozen=True)
class Source:
    """One downloadable file."""

    key: str
    filename: str  # name on disk (and in a mirror folder)
    url: str | None  # None: no public download (registration-gated); supplied by the user
    known_hash: str | None  # "sha256:..", "md5:.." or "sha1:.." where published; None: locked at first fetch
    size: int | None = None  # bytes, where published
    note: str = ""  # approximate size, access

    @property
    def is_archive(self) -> bool:
        return self.filename.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A source's file on disk, verified."""

    source: Source
    path: Path
    verified_hash: str  # the checksum this file was verified against ("md5:..", "sha256:..")


@dataclasses.dataclass(frozen=True)
class Registry:
    """The sources of one data origin (the real datasets, or a generated synthetic copy of their formats)."""

    origin: Literal["real", "synthetic"]
    sources: Mapping[str, Source]
    expected_images: Mapping[str, Mapping[str, tuple[int, ...]]]  # dataset -> split -> accepted counts

    def for_dataset(self, dataset: str) -> dict[str, Source]:
        if dataset not in DATASET_SOURCES:
            raise DataError(f"unknown dataset {dataset!r} (known: {', '.join(DATASET_SOURCES)})")
        missing = [k for k in DATASET_SOURCES[dataset] if k not in self.sources]
        if missing:
            raise DataError(f"{self.origin} registry has no source {missing[0]!r} needed by {dataset}")
        return {k: self.sources[k] for k in DATASET_SOURCES[dataset]}


def _catseg(stem: str, filename: str, size: int, sha256: str, what: str) -> Source:
    return Source(f"catseg_{stem}", filename, CAT_SEG_DATASETS + filename, f"sha256:{sha256}", size, what)


DEFINITION_FILES: tuple[Source, ...] = (
    _catseg(
        "coco",
        "coco.json",
        1903,
        "0d1caff40f22c2f8de07c9d3016f2521dea096ae8b51889a12d3511bc33a18e7",
        "171 COCO-Stuff prompt names",
    ),
    _catseg(
        "ade150",
        "ade150.json",
        1572,
        "13acce5a2acf692d795841c0e5d66db8105bc2fbac99f4470e2ec4b5372ae15e",
        "150 A-150 prompt names",
    ),
    _catseg(
        "ade847",
        "ade847.json",
        14680,
        "eefd744c873fafa42e74353a3e75d8abc6c67e1cc4e830923236b4d6b9449676",
        "847 A-847 prompt names",
    ),
    _catseg(
        "pc59",
        "pc59.json",
        562,
        "99bf900203f2c9ea2d08834924885c51d22f8ecd76df655ac44f74c3c0f4c217",
        "59 PC-59 prompt names",
    ),
    _catseg(
        "pc459",
        "pc459.json",
        5055,
        "cf64f1df183b191040c774ba97f3e4786dd31605f913a7cbd3abbcdf8d21baca",
        "459 PC-459 prompt names",
    ),
    _catseg(
        "voc20",
        "voc20.json",
        197,
        "e3885dd5a88e12dc2e383f4f2427583be9a5984f9ae0859403b35e5dd7829d6e",
        "20 PAS-20 prompt names",
    ),
    _catseg(
        "voc20b",
        "voc20b.json",
        563,
        "3bca95a149e01af1039de3b8ff1b8ad15da45fe5128152b4ca109a8b8ca66d73",
        "59 PAS-20b prompt names",
    ),
    _catseg(
        "pascalcontext_val",
        "pascalcontext_val.txt",
        61247,
        "903abb826516974fc79730ae21495d8a577d4293b5fd517d738cfd21b6bd1969",
        "5104 Pascal Context val ids",
    ),
    _catseg(
        "prepare_ade20k_full",
        "prepare_ade20k_full.py",
        53625,
        "6bc2eb1f18e3db2e6139cceac5bfcc80bebde4fb1a2156d09804b2dbbdafbf99",
        "holds the A-847 id selection as a list literal (read as data, never executed)",
    ),
)

ARCHIVES: tuple[Source, ...] = (
    Source(
        "coco_train2017",
        "train2017.zip",
        "http://images.cocodataset.org/zips/train2017.zip",
        "md5:cced6f7f71b7629ddf16f17bbcfab6b2",
        note="about 18 GB",
    ),
    Source(
        "coco_val2017",
        "val2017.zip",
        "http://images.cocodataset.org/zips/val2017.zip",
        "md5:442b8da7639aecaf257c1dceb8ba8c80",
        note="about 0.8 GB",
    ),
    Source(
        "cocostuff_stuffthingmaps",
        "stuffthingmaps_trainval2017.zip",
        "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
        None,
        note="about 0.7 GB",
    ),
    Source(
        "ade20k_challenge",
        "ADEChallengeData2016.zip",
        "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
        "sha1:219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
        note="about 0.9 GB",
    ),
    Source("ade20k_full", "ADE20K_2021_17_01.zip", None, None, note=ADE20K_FULL_HELP),
    Source(
        "voc2012",
        "VOCtrainval_11-May-2012.tar",
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "md5:6cd6e144f989b92b3379bac3b3de84fd",
        note="about 2 GB",
    ),
    Source(
        "voc_aug",
        "SegmentationClassAug.zip",
        "https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1",
        None,
        note="SBD-augmented VOC 2012 label PNGs, the copy CAT-Seg's README links; about 60 MB",
    ),
    Source(
        "voc2010",
        "VOCtrainval_03-May-2010.tar",
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
        "md5:da459979d0c395079b5c75ee67908abb",
        note="about 1.3 GB",
    ),
    Source(
        "pascal_context",
        "trainval.tar.gz",
        "https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
        None,
        note="Pascal Context 459-class LabelMap .mat files and labels.txt",
    ),
    Source(
        "pascal_context_detail",
        "trainval_merged.json",
        "https://codalabuser.blob.core.windows.net/public/trainval_merged.json",
        "sha1:169325d9f7e9047537fedca7b04de4dddf10b881",
        note="PASCAL in Detail annotations (PC-59)",
    ),
)

# which files each dataset is prepared from
DATASET_SOURCES: dict[str, tuple[str, ...]] = {
    "coco_stuff": ("coco_train2017", "coco_val2017", "cocostuff_stuffthingmaps", "catseg_coco"),
    "a847": ("ade20k_full", "catseg_prepare_ade20k_full", "catseg_ade847"),
    "pc459": ("voc2010", "pascal_context", "catseg_pascalcontext_val", "catseg_pc459"),
    "a150": ("ade20k_challenge", "catseg_ade150"),
    "pc59": ("voc2010", "pascal_context_detail", "catseg_pc59", "catseg_pc459"),
    "pas20": ("voc2012", "voc_aug", "catseg_voc20"),
    "pas20b": ("voc2012", "voc_aug", "catseg_voc20b"),
}

COCO_VAL2017_IMAGES = 5000  # COCO-Stuff's val split, prepared beside the training split for in-domain checks

REAL = Registry(
    origin="real",
    sources={s.key: s for s in (*ARCHIVES, *DEFINITION_FILES)},
    expected_images={
        key: (
            {"train": spec.expected_images, "val": (COCO_VAL2017_IMAGES,)}
            if key == "coco_stuff"
            else {spec.split: spec.expected_images}
        )
        for key, spec in SPECS.items()
    },
)


def names_source(dataset: str) -> str:
    """The source key of a dataset's pinned prompt-name list."""
    return "catseg_" + SPECS[dataset].names_file.removesuffix(".json")


def with_mirror(registry: Registry, mirror: str | None) -> Registry:
    """Every file is looked up as `<mirror>/<filename>` (a URL prefix or a local folder), not at its host."""
    if not mirror:
        return registry
    if mirror.startswith(("http://", "https://", "file://")):
        prefix = mirror.rstrip("/") + "/"
    else:
        prefix = Path(mirror).expanduser().resolve().as_uri() + "/"
    sources = {k: dataclasses.replace(s, url=prefix + s.filename) for k, s in registry.sources.items()}
    return dataclasses.replace(registry, sources=sources)


def with_user_archive(registry: Registry, ade20k_full_archive: str | None) -> Registry:
    """Point the registration-gated ADE20K release at the archive the user downloaded."""
    if not ade20k_full_archive:
        return registry
    path = Path(ade20k_full_archive).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"data.ade20k_full_archive: no file at {path}. {ADE20K_FULL_HELP}")
    sources = dict(registry.sources)
    sources["ade20k_full"] = dataclasses.replace(sources["ade20k_full"], url=path.as_uri())
    return dataclasses.replace(registry, sources=sources)


def read_lock(path: Path = LOCK_PATH) -> dict[str, dict]:
    """The sha256 sums recorded at first download, by source key."""
    if not path.is_file():
        return {}
    try:
        lock = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(lock, dict):
        raise DataError(f"{path}: expected a JSON object of source key -> {{filename, sha256, size}}")
    return lock


def record_lock(source: Source, sha256: str, size: int, path: Path = LOCK_PATH) -> None:
    lock = read_lock(path)
    lock[source.key] = {"filename": source.filename, "sha256": sha256, "size": size}
    write_text(path, json.dumps(lock, indent=2, sort_keys=True) + "\n")
