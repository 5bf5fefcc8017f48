"""Format-exact synthetic raw data for COCO-Stuff and the six benchmarks: the same archive names, folder
layouts inside the archives, file types and encodings as the real downloads, and synthetic stand-ins for
the pinned definition files (name lists, a `prepare_ade20k_full.py` holding the id-selection literal, the
Pascal Context val list). The files are written to a host folder with a registry of `file://` URLs and
their sha256 sums, so the real fetch (pooch, checksums) and preparation code run on them unchanged.

What each class looks like is fixed by its name (first synonym): a colour and a stripe or checker texture
derived from the name's sha256, so the same name looks the same in training and in every benchmark.
Scenes are Voronoi layouts drawn from a seeded generator; benchmark scenes favour classes whose names also
occur in the synthetic COCO-Stuff vocabulary. Raw values the preparation must map away also occur: COCO's
11 unused thing ids and 255, A-150's 0, ADE object ids outside the 847, PC-59's 400 other ids and
unlabeled pixels, VOC's background and void. Every byte is deterministic in the seed (fixed archive
timestamps, gzip mtime 0, a fixed .mat header).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from pycocotools import mask as mask_utils

from dcpclip.atomic import atomic_path, write_text
from dcpclip.config_schema import to_dict
from dcpclip.data.config import SyntheticConfig
from dcpclip.data.errors import DataError
from dcpclip.data.sources import DATASET_SOURCES, REAL, Registry, Source
from dcpclip.data.specs import NUM_RAW_IDS, UNUSED_THING_IDS
from dcpclip.data.synthetic_vocabulary import visual_key, vocabularies

RawFiles = dict[str, bytes | dict[str, bytes]]  # filename -> file bytes, or archive member -> bytes
REGISTRY_FILE = "registry.json"
_ZIP_DATE = (2017, 1, 1, 0, 0, 0)
_TAR_MTIME = 1262304000  # 2010-01-01
_MAT_HEADER = b"MATLAB 5.0 MAT-file, synthetic Pascal Context label map".ljust(116)


# ----------------------------------------------------------------------------------------------- looks
@functools.cache
def signature(name: str) -> tuple[np.ndarray, int, int]:
    """(RGB colour, texture kind 0..3, period in pixels) of a class name."""
    digest = hashlib.sha256(visual_key(name).encode()).digest()
    colour = 30 + np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float32) * (195 / 255)
    return colour, digest[3] % 4, 3 + digest[4] % 6


def _texture(kind: int, period: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    phase = {0: yy, 1: xx, 2: yy + xx, 3: (yy // period) + (xx // period)}[kind]
    if kind == 3:
        return np.where(phase % 2 == 0, 1.0, -1.0)
    return np.where((phase // period) % 2 == 0, 1.0, -1.0)


def render(regions: np.ndarray, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """[H, W] region index map + a name per region -> [H, W, 3] uint8 image."""
    height, width = regions.shape
    image = np.zeros((height, width, 3), dtype=np.float32)
    for index, name in enumerate(names):
        mask = regions == index
        if mask.any():
            colour, kind, period = signature(name)
            image[mask] = colour + 35.0 * _texture(kind, period, height, width)[mask][:, None]
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def layout(rng: np.random.Generator, height: int, width: int, regions: int) -> tuple[np.ndarray, np.ndarray]:
    """A Voronoi scene: [H, W] region index and [H, W] bool "on a region border" (the void band)."""
    seeds = rng.uniform([0, 0], [height, width], size=(regions, 2))
    yy, xx = np.mgrid[:height, :width]
    dist = np.sqrt((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)  # [H, W, R]
    order = np.sort(dist, axis=-1)
    border = (order[..., 1] - order[..., 0]) < 1.5 if regions > 1 else np.zeros((height, width), bool)
    return dist.argmin(-1), border


def _pick(rng: np.random.Generator, preferred: list[int], others: list[int], p_preferred: float) -> int:
    pool = preferred if preferred and (not others or rng.random() < p_preferred) else others
    return int(pool[rng.integers(len(pool))])


# ---------------------------------------------------------------------------------------- encoders
def jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def mat(label_map: np.ndarray) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"LabelMap": label_map})
    return _MAT_HEADER + buf.getvalue()[116:]  # scipy writes the creation time into the header text


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], gzipped: bool) -> bytes:
    raw = io.BytesIO()
    stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gzipped else raw
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    if gzipped:
        stream.close()
    return raw.getvalue()


def encode(filename: str, content: bytes | dict[str, bytes]) -> bytes:
    """The bytes of a host file: archives are built from their members by the file name's type."""
    if isinstance(content, bytes):
        return content
    if filename.endswith(".zip"):
        return _zip(content)
    if filename.endswith((".tar.gz", ".tgz")):
        return _tar(content, gzipped=True)
    if filename.endswith(".tar"):
        return _tar(content, gzipped=False)
    raise ValueError(f"{filename}: not an archive name")


# -------------------------------------------------------------------------------------- the sources
class _Scenes:
    """Image sizes, seeded generators, and the overlap of a vocabulary with the training vocabulary."""

    def __init__(self, cfg: SyntheticConfig, family: int):
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, family])
        self.coco_keys = {visual_key(n) for n in vocabularies()["coco"]}

    def size(self, index: int) -> tuple[int, int]:
        height, width = self.cfg.image_size
        return (height, width) if index % 2 == 0 else (height, max(8, width - 16))

    def split_by_overlap(self, names: Iterable[str], ids: Iterable[int]) -> tuple[list[int], list[int]]:
        shared, other = [], []
        for name, i in zip(names, ids, strict=True):
            (shared if visual_key(name) in self.coco_keys else other).append(i)
        return shared, other

    def regions(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        height, width = self.size(index)
        count = int(self.rng.integers(3, 7))
        regions, border = layout(self.rng, height, width, count)
        return regions, border, count


def _coco(cfg: SyntheticConfig) -> RawFiles:
    scenes = _Scenes(cfg, family=1)
    names = vocabularies()["coco"]
    used = [i for i in range(NUM_RAW_IDS) if i not in UNUSED_THING_IDS]
    raw_names = {raw: names[train] for train, raw in enumerate(used)}
    raw_names.update({raw: f"unused thing {raw}" for raw in UNUSED_THING_IDS})
    files: RawFiles = {"train2017.zip": {}, "val2017.zip": {}, "stuffthingmaps_trainval2017.zip": {}}
    for split, count, first in (("train2017", cfg.train_images, 1), ("val2017", cfg.val_images, 500_000)):
        for index in range(count):
            regions, border, n = scenes.regions(index)
            raws = [_pick(scenes.rng, used, list(UNUSED_THING_IDS), 0.93) for _ in range(n)]
            label = np.asarray(raws, dtype=np.uint8)[regions]
            label[border] = 255
            stem = f"{first + index:012d}"
            files[f"{split}.zip"][f"{split}/{stem}.jpg"] = jpeg(
                render(regions, [raw_names[r] for r in raws], scenes.rng)
            )
            files["stuffthingmaps_trainval2017.zip"][f"{split}/{stem}.png"] = png(label)
    return files


def _ade_challenge(cfg: SyntheticConfig) -> RawFiles:
    scenes = _Scenes(cfg, family=2)
    names = vocabularies()["ade150"]
    shared, other = scenes.split_by_overlap(names, range(1, 151))
    members = {}
    for split, prefix, count in (("validation", "ADE_val", cfg.val_images), ("training", "ADE_train", 2)):
        for index in range(count):
            regions, _, n = scenes.regions(index)
            values = [
                0 if scenes.rng.random() < 0.1 else _pick(scenes.rng, shared, other, 0.75) for _ in range(n)
            ]
            looks = [names[v - 1] if v else "clutter" for v in values]
            stem = f"{prefix}_{index + 1:08d}"
            members[f"ADEChallengeData2016/images/{split}/{stem}.jpg"] = jpeg(
                render(regions, looks, scenes.rng)
            )
            members[f"ADEChallengeData2016/annotations/{split}/{stem}.png"] = png(
                np.asarray(values, dtype=np.uint8)[regions]
            )
    return {"ADEChallengeData2016.zip": members}


def ade_full_categories() -> list[dict]:
    """The synthetic 847-entry id selection: ADE object ids spread over the encodable range 1..6655."""
    rng = np.random.default_rng(847)
    ids = rng.choice(np.arange(1, 256 * 26), size=847, replace=False)
    return [
        {"name": name, "id": int(i), "trainId": t}
        for t, (name, i) in enumerate(zip(vocabularies()["ade847"], ids, strict=True))
    ]


def encode_object_ids(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[H, W] ADE object ids -> [H, W, 3] `_seg.png` pixels: R = (id // 256) * 10 + jitter, G = id % 256."""
    base = (ids // 256) * 10
    jitter = rng.integers(0, 10, ids.shape) % (np.minimum(255 - base, 9) + 1)
    instance = rng.integers(0, 256, ids.shape)
    return np.stack([base + jitter, ids % 256, instance], axis=-1).astype(np.uint8)


def _ade_full(cfg: SyntheticConfig) -> RawFiles:
    scenes = _Scenes(cfg, family=3)
    categories = ade_full_categories()
    listed = {c["id"] for c in categories}
    unlisted = [i for i in range(1, 256 * 26) if i not in listed]
    shared, other = scenes.split_by_overlap([c["name"] for c in categories], [c["id"] for c in categories])
    name_of = {c["id"]: c["name"] for c in categories}
    members, folders, filenames = {}, [], []
    for split, prefix, count in (("validation", "ADE_val", cfg.val_images), ("training", "ADE_train", 2)):
        for index in range(count):
            regions, _, n = scenes.regions(index)
            ids = [
                int(unlisted[scenes.rng.integers(len(unlisted))])
                if scenes.rng.random() < 0.15
                else _pick(scenes.rng, shared, other, 0.75)
                for _ in range(n)
            ]
            scene = f"{('urban', 'home_or_hotel')[index % 2]}/scene{index % 3}"
            folder = f"ADE20K_2021_17_01/images/ADE/{split}/{scene}"
            stem = f"{prefix}_{index + 1:08d}"
            looks = [name_of.get(i, f"ade object {i}") for i in ids]
            members[f"{folder}/{stem}.jpg"] = jpeg(render(regions, looks, scenes.rng))
            members[f"{folder}/{stem}_seg.png"] = png(encode_object_ids(np.asarray(ids)[regions], scenes.rng))
            folders.append(folder)
            filenames.append(f"{stem}.jpg")
    index = {
        "filename": filenames,
        "folder": folders,
        "scene": [f.rsplit("/", 1)[-1] for f in folders],
        "objectnames": [c["name"] for c in categories],
        "objectPresence": np.zeros((len(categories), len(filenames)), dtype=np.uint8),
    }
    members["ADE20K_2021_17_01/index_ade20k.pkl"] = pickle.dumps(index, protocol=4)
    return {"ADE20K_2021_17_01.zip": members}


def _pascal_context(cfg: SyntheticConfig) -> RawFiles:
    """VOC 2010 images with their Pascal Context labels: the 459-label .mat files and the Detail JSON."""
    scenes = _Scenes(cfg, family=4)
    pc459 = vocabularies()["pc459"]
    pc59_full = {n for n in pc459 if n in set(vocabularies()["voc20"]) | set(vocabularies()["pc59"])}
    preferred = [i + 1 for i, n in enumerate(pc459) if n in pc59_full and visual_key(n) in scenes.coco_keys]
    others = [i + 1 for i, n in enumerate(pc459) if i + 1 not in preferred]
    images_tar, context_tar, detail_images, annotations = {}, {}, [], []
    val_ids = []
    for split, count, year in (("val", cfg.val_images, 2008), ("train", 2, 2009)):
        for index in range(count):
            regions, _, n = scenes.regions(index)
            ids = [_pick(scenes.rng, preferred, others, 0.7) for _ in range(n)]
            label_map = np.asarray(ids, dtype=np.uint16)[regions]
            height, width = label_map.shape
            image_id = f"{year}_{index + 1:06d}"
            images_tar[f"VOCdevkit/VOC2010/JPEGImages/{image_id}.jpg"] = jpeg(
                render(regions, [pc459[i - 1] for i in ids], scenes.rng)
            )
            context_tar[f"trainval/{image_id}.mat"] = mat(label_map)
            numeric_id = int(image_id.replace("_", ""))
            detail_images.append(
                {
                    "file_name": f"{image_id}.jpg",
                    "image_id": numeric_id,
                    "height": height,
                    "width": width,
                    "phase": split,
                    "date_captured": "2010-01-01",
                }
            )
            masks = [(regions == r, ids[r]) for r in range(n) if scenes.rng.random() > 0.15]  # some unlabeled
            top, left = (int(v) for v in scenes.rng.integers(0, [height // 2, width // 2]))
            patch = np.zeros((height, width), dtype=bool)
            patch[top : top + height // 3, left : left + width // 3] = True
            masks.append((patch, _pick(scenes.rng, preferred, others, 0.5)))  # painted last, over the others
            for mask, category in masks:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": numeric_id,
                        "category_id": int(category),
                        "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                        "area": int(mask.sum()),
                        "iscrowd": 0,
                        "parts": [],
                    }
                )
            if split == "val":
                val_ids.append(image_id)
    context_tar["labels.txt"] = "".join(f"{i}: {name}\n" for i, name in enumerate(pc459, 1)).encode()
    detail = {
        "info": {"description": "synthetic PASCAL in Detail annotations"},
        "images": detail_images,
        "annos_segmentation": annotations,
        "categories": [
            {"category_id": i, "name": name, "supercategory": "object", "onlysemantic": 1, "parts": []}
            for i, name in enumerate(pc459, 1)
        ],
        "annos_occlusion": [],
        "annos_boundary": [],
        "annos_joints": [],
        "parts": [],
    }
    return {
        "VOCtrainval_03-May-2010.tar": images_tar,
        "trainval.tar.gz": context_tar,
        "trainval_merged.json": json.dumps(detail).encode(),
        "pascalcontext_val.txt": "\n".join(val_ids).encode(),  # no final newline, like the pinned file
    }


def _voc(cfg: SyntheticConfig) -> RawFiles:
    scenes = _Scenes(cfg, family=5)
    voc, backgrounds = vocabularies()["voc20"], vocabularies()["voc20b"][20:]
    tar, labels, lists = {}, {}, {"val": [], "train": []}
    for split, count, year in (("val", cfg.val_images, 2007), ("train", 2, 2008)):
        for index in range(count):
            regions, border, n = scenes.regions(index)
            values = [0 if scenes.rng.random() < 0.35 else int(scenes.rng.integers(1, 21)) for _ in range(n)]
            looks = [voc[v - 1] if v else backgrounds[scenes.rng.integers(len(backgrounds))] for v in values]
            label = np.asarray(values, dtype=np.uint8)[regions]
            label[border] = 255
            image_id = f"{year}_{index + 1:06d}"
            tar[f"VOCdevkit/VOC2012/JPEGImages/{image_id}.jpg"] = jpeg(render(regions, looks, scenes.rng))
            labels[f"SegmentationClassAug/{image_id}.png"] = png(label)
            lists[split].append(image_id)
    for split, ids in lists.items():
        tar[f"VOCdevkit/VOC2012/ImageSets/Segmentation/{split}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    return {"VOCtrainval_11-May-2012.tar": tar, "SegmentationClassAug.zip": labels}


def fake_prepare_ade20k_full(categories: list[dict]) -> str:
    """Python source holding the id selection as a list literal, in the published script's shape."""
    entries = "".join(f"    {json.dumps(c)},\n" for c in categories)
    return (
        "# Synthetic stand-in for CAT-Seg's datasets/prepare_ade20k_full.py: the list below is data.\n"
        "raise RuntimeError('definition file: read ADE20K_SEM_SEG_FULL_CATEGORIES as data, never run it')\n\n"
        "import numpy as np\n\n"
        f"ADE20K_SEM_SEG_FULL_CATEGORIES = [\n{entries}]\n\n\n"
        "def loadAde20K(file):\n    raise NotImplementedError\n"
    )


def _definitions(cfg: SyntheticConfig) -> RawFiles:
    files: RawFiles = {
        f"{stem}.json": json.dumps(list(names)).encode() for stem, names in vocabularies().items()
    }
    files["prepare_ade20k_full.py"] = fake_prepare_ade20k_full(ade_full_categories()).encode()
    return files


_FAMILIES = {  # generator -> the source keys it writes
    _coco: ("coco_train2017", "coco_val2017", "cocostuff_stuffthingmaps"),
    _ade_challenge: ("ade20k_challenge",),
    _ade_full: ("ade20k_full",),
    _pascal_context: ("voc2010", "pascal_context", "pascal_context_detail", "catseg_pascalcontext_val"),
    _voc: ("voc2012", "voc_aug"),
    _definitions: tuple(
        k for k in REAL.sources if k.startswith("catseg_") and k != "catseg_pascalcontext_val"
    ),
}


def raw_files(cfg: SyntheticConfig, datasets: Iterable[str] = tuple(DATASET_SOURCES)) -> RawFiles:
    """Every file the given datasets are prepared from, as a host would serve them (archives as members)."""
    needed = {key for d in datasets for key in DATASET_SOURCES[d]}
    files: RawFiles = {}
    for generate_family, keys in _FAMILIES.items():
        if needed & set(keys):
            files.update(generate_family(cfg))
    return files


def expected_images(cfg: SyntheticConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    return {
        key: (
            {"train": (cfg.train_images,), "val": (cfg.val_images,)}
            if key == "coco_stuff"
            else {"val": (cfg.val_images,)}
        )
        for key in DATASET_SOURCES
    }


def write_host(files: RawFiles, host: Path, cfg: SyntheticConfig) -> Registry:
    """Write the files into `host` and return (and save) their registry of file:// URLs and sha256 sums."""
    host = Path(host)
    by_filename = {s.filename: s for s in REAL.sources.values()}
    sources = {}
    for filename, content in files.items():
        data = encode(filename, content)
        with atomic_path(host / filename) as tmp:
            tmp.write_bytes(data)
        real = by_filename[filename]
        sources[real.key] = Source(
            real.key,
            filename,
            (host / filename).resolve().as_uri(),
            f"sha256:{hashlib.sha256(data).hexdigest()}",
            len(data),
            note=f"synthetic stand-in for {real.filename}",
        )
    registry = Registry("synthetic", sources, expected_images(cfg))
    record = {
        "config": to_dict(cfg),
        "sources": {k: dataclasses.asdict(s) for k, s in sources.items()},
        "expected_images": registry.expected_images,
    }
    write_text(host / REGISTRY_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return registry


def generate(cfg: SyntheticConfig, host: Path, datasets: Iterable[str] = tuple(DATASET_SOURCES)) -> Registry:
    return write_host(raw_files(cfg, datasets), host, cfg)


def synthetic_registry(cfg: SyntheticConfig, host: Path) -> Registry:
    """The registry of the synthetic host at `host`, generated first when missing, stale or incomplete."""
    path = Path(host) / REGISTRY_FILE
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            sources = {k: Source(**v) for k, v in record["sources"].items()}
            expected = {
                d: {s: tuple(c) for s, c in splits.items()} for d, splits in record["expected_images"].items()
            }
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(
                f"{path}: unreadable synthetic registry ({err}); delete {host} to regenerate"
            ) from None
        complete = set(sources) == set(REAL.sources) and all(
            (Path(host) / s.filename).is_file() for s in sources.values()
        )
        if record.get("config") == to_dict(cfg) and complete:
            return Registry("synthetic", sources, expected)
    return generate(cfg, host)
