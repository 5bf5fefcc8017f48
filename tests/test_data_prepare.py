"""The real fetch + preparation on generated raw data, checked pixel for pixel against the protocol's rules
(docs/protocol.md), each rule recomputed here from the raw files."""

import io
import json
import pickle

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image
from pycocotools import mask as mask_utils

from dcpclip.data.config import DataConfig, SyntheticConfig
from dcpclip.data.definitions import read_ade20k_full_categories
from dcpclip.data.prepare import prepare_dataset
from dcpclip.data.prepare.pc59 import decode_rle
from dcpclip.data.specs import SPECS
from dcpclip.data.synthetic import generate, raw_files, write_host
from dcpclip.data.synthetic_vocabulary import vocabularies

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
CFG = SyntheticConfig()
UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    cfg = DataConfig(raw_root=str(root / "raw"), root=str(root / "prepared"))
    registry = generate(CFG, root / "raw" / "synthetic-host")
    manifests = {
        key: prepare_dataset(key, cfg, registry=registry, lock_path=root / "lock.json", progressbar=False).manifest
        for key in SPECS
    }
    return root / "prepared", manifests, registry, raw_files(CFG)


def label(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_layout_classes_and_manifest(prepared):
    root, manifests, registry, _ = prepared
    for key, spec in SPECS.items():
        folder = root / key
        names = json.loads((folder / "classes.json").read_text())
        assert names == list(vocabularies()[spec.names_file.removesuffix(".json")])
        assert len(names) == spec.num_prompts
        record = json.loads((folder / "manifest.json").read_text())
        assert record == json.loads(json.dumps(manifests[key]))
        for split, count in record["images"].items():
            images = sorted(p.stem for p in (folder / "images" / split).glob("*.jpg"))
            suffix = ".tif" if spec.label_format == "tif16" else ".png"
            assert sorted(p.stem for p in (folder / "labels" / split).glob(f"*{suffix}")) == images
            assert len(images) == count
        for source_key, source in record["sources"].items():
            assert source["hash"] == registry.sources[source_key].known_hash
        hist = record["label_histogram"][spec.split]
        assert hist["pixels"] == sum(n for _, n in hist["counts"])
    assert manifests["coco_stuff"]["images"] == {"train": CFG.train_images, "val": CFG.val_images}
    assert "ade150.json" in manifests["a150"]["sources"]["catseg_ade150"]["file"]
    assert json.loads((root / "a150" / "classes.json").read_text())[7].endswith(" ")  # kept as published


def test_coco_stuff_171_ids_and_unused_ones_to_255(prepared):
    root, _, _, raw = prepared
    maps = raw["stuffthingmaps_trainval2017.zip"]
    seen = set()
    for name, data in maps.items():
        split, stem = name.split("/")
        raw_label = pixels(data).astype(int)
        seen.update(np.unique(raw_label).tolist())
        expected = np.where(
            np.isin(raw_label, UNUSED) | (raw_label == 255),
            255,
            raw_label - np.searchsorted(UNUSED, raw_label),
        )
        out = label(root / "coco_stuff" / "labels" / split.removesuffix("2017") / stem)
        assert out.dtype == np.uint8 and np.array_equal(out, expected)
        image = raw[f"{split}.zip"][f"{split}/{stem.replace('.png', '.jpg')}"]
        assert (
            root / "coco_stuff" / "images" / split.removesuffix("2017") / stem.replace(".png", ".jpg")
        ).read_bytes() == image
    assert set(UNUSED) & seen and 255 in seen, (
        "unused thing ids / unlabeled not generated: rule not exercised"
    )


def test_a150_minus_one_with_uint8_wrap(prepared):
    root, _, _, raw = prepared
    members = raw["ADEChallengeData2016.zip"]
    checked = 0
    for name, data in members.items():
        if "/annotations/validation/" not in name:
            continue
        raw_label = pixels(data).astype(int)
        out = label(root / "a150" / "labels" / "val" / name.rsplit("/", 1)[1])
        assert np.array_equal(out, np.where(raw_label == 0, 255, raw_label - 1))
        checked += 0 in raw_label
    assert checked, "no 'other' (0) pixels generated: the wrap-around was not exercised"
    assert not (root / "a150" / "images" / "val" / "ADE_train_00000001.jpg").exists()


def _ade_expected(seg: np.ndarray, categories) -> np.ndarray:
    ids = (seg[..., 0].astype(int) // 10) * 256 + seg[..., 1]
    lookup = {c["id"]: c["trainId"] for c in categories}
    values, inverse = np.unique(ids, return_inverse=True)
    return np.array([lookup.get(v, 65535) for v in values.tolist()])[inverse].reshape(ids.shape)


def test_a847_decodes_r_g_and_maps_the_pinned_selection(prepared, tmp_path):
    root, _, _, raw = prepared
    (tmp_path / "prepare_ade20k_full.py").write_bytes(raw["prepare_ade20k_full.py"])
    categories = read_ade20k_full_categories(tmp_path / "prepare_ade20k_full.py", 847)
    members = raw["ADE20K_2021_17_01.zip"]
    index = pickle.loads(members["ADE20K_2021_17_01/index_ade20k.pkl"])
    val = [
        (f, n) for f, n in zip(index["folder"], index["filename"], strict=True) if n.split("_")[1] == "val"
    ]
    assert len(val) == CFG.val_images and len(index["filename"]) > len(val)
    unlisted = 0
    for folder, filename in val:
        stem = filename.removesuffix(".jpg")
        seg = pixels(members[f"{folder}/{stem}_seg.png"])
        assert (seg[..., 0] % 10).any(), "R carries no remainder: // 10 not exercised"
        out = label(root / "a847" / "labels" / "val" / f"{stem}.tif")
        assert out.dtype == np.uint16
        expected = _ade_expected(seg, categories)
        assert np.array_equal(out, expected)
        unlisted += int((expected == 65535).sum())
        # not resized (short side <= 512), but re-encoded as JPEG with Pillow's default quality
        original = pixels(members[f"{folder}/{filename}"])
        buf = io.BytesIO()
        Image.fromarray(original).save(buf, format="JPEG")
        assert np.array_equal(
            np.asarray(Image.open(root / "a847" / "images" / "val" / filename)), pixels(buf.getvalue())
        )
    assert unlisted, "no ids outside the 847 generated: the 65535 rule was not exercised"


def test_a847_resizes_short_side_over_512_like_opencv(tmp_path):
    big = SyntheticConfig(val_images=2, image_size=(600, 700))
    cfg = DataConfig(raw_root=str(tmp_path / "raw"), root=str(tmp_path / "prepared"))
    raw = raw_files(big, ["a847"])
    registry = write_host(raw, tmp_path / "raw" / "synthetic-host", big)
    prepare_dataset("a847", cfg, registry=registry, lock_path=tmp_path / "lock.json", progressbar=False)
    members = raw["ADE20K_2021_17_01.zip"]
    (tmp_path / "def.py").write_bytes(raw["prepare_ade20k_full.py"])
    categories = read_ade20k_full_categories(tmp_path / "def.py", 847)
    sizes = {"ADE_val_00000001": (512, 597), "ADE_val_00000002": (512, 584)}  # 700 / 684 wide, 600 high
    for stem, (height, width) in sizes.items():
        folder = next(n.rsplit("/", 1)[0] for n in members if n.endswith(f"{stem}.jpg"))
        seg = pixels(members[f"{folder}/{stem}_seg.png"])
        src_h, src_w = seg.shape[:2]
        # OpenCV INTER_NEAREST: source index floor(dst * src / dst_size), no half-pixel offset
        rows = np.minimum(np.floor(np.arange(height) * src_h / height).astype(int), src_h - 1)
        cols = np.minimum(np.floor(np.arange(width) * src_w / width).astype(int), src_w - 1)
        expected = _ade_expected(seg[rows][:, cols], categories)
        out = label(tmp_path / "prepared" / "a847" / "labels" / "val" / f"{stem}.tif")
        assert out.shape == (height, width) and np.array_equal(out, expected)
        pil_nearest = np.asarray(
            Image.fromarray(_ade_expected(seg, categories).astype(np.int32)).resize(
                (width, height), Image.NEAREST
            )
        )
        assert not np.array_equal(pil_nearest, expected)  # the arithmetic matters: PIL's nearest differs
        image = cv2.resize(
            pixels(members[f"{folder}/{stem}.jpg"]), (width, height), interpolation=cv2.INTER_LINEAR
        )
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG")
        written = np.asarray(Image.open(tmp_path / "prepared" / "a847" / "images" / "val" / f"{stem}.jpg"))
        assert np.array_equal(written, pixels(buf.getvalue()))


def test_pc459_is_labelmap_minus_one_as_uint16_tiff(prepared):
    root, _, _, raw = prepared
    val_ids = raw["pascalcontext_val.txt"].decode().split("\n")
    assert len(val_ids) == CFG.val_images
    for image_id in val_ids:
        label_map = scipy.io.loadmat(io.BytesIO(raw["trainval.tar.gz"][f"trainval/{image_id}.mat"]))[
            "LabelMap"
        ]
        out = label(root / "pc459" / "labels" / "val" / f"{image_id}.tif")
        assert out.dtype == np.uint16 and np.array_equal(out, label_map.astype(int) - 1)
        assert out.max() < 459


def test_pc59_paints_rles_in_order_and_ignores_the_other_400(prepared):
    root, _, _, raw = prepared
    pc59, pc459 = vocabularies()["pc59"], vocabularies()["pc459"]
    ids = [pc459.index("table" if n == "diningtable" else n) + 1 for n in pc59]
    assert ids == sorted(ids) and "diningtable" in pc59 and "table" in pc459
    to_label = {i: k for k, i in enumerate(ids)}
    detail = json.loads(raw["trainval_merged.json"])
    val = [img for img in detail["images"] if img["phase"] == "val"]
    assert len(val) == CFG.val_images
    saw_other = saw_unlabeled = False
    for img in val:
        painted = np.zeros((img["height"], img["width"]), dtype=int)
        for ann in detail["annos_segmentation"]:
            if ann["image_id"] == img["image_id"]:
                painted[mask_utils.decode(ann["segmentation"]) > 0] = ann["category_id"]
        expected = np.vectorize(lambda i: to_label.get(i, 255))(painted)
        out = label(root / "pc59" / "labels" / "val" / img["file_name"].replace(".jpg", ".png"))
        assert np.array_equal(out, expected)
        saw_unlabeled |= bool((painted == 0).any())
        saw_other |= bool(((painted > 0) & (expected == 255)).any())
    assert saw_other and saw_unlabeled


def test_rle_decoding_accepts_compressed_and_uncompressed_counts():
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:4, 2:6] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed = {"size": compressed["size"], "counts": compressed["counts"].decode()}
    column_major = mask.flatten(order="F")
    runs, value, count = [], 0, 0
    for v in column_major:
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    assert np.array_equal(decode_rle(compressed), mask)
    assert np.array_equal(decode_rle({"size": [5, 7], "counts": runs}), mask)


@pytest.mark.parametrize("dataset, background", [("pas20", 255), ("pas20b", 20)])
def test_voc_background_and_void(prepared, dataset, background):
    root, _, _, raw = prepared
    tar = raw["VOCtrainval_11-May-2012.tar"]
    val_ids = tar["VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"].decode().split()
    assert sorted(p.stem for p in (root / dataset / "labels" / "val").glob("*.png")) == sorted(val_ids)
    seen = set()
    for image_id in val_ids:
        raw_label = pixels(raw["SegmentationClassAug.zip"][f"SegmentationClassAug/{image_id}.png"]).astype(
            int
        )
        seen.update(np.unique(raw_label).tolist())
        expected = np.where(raw_label == 0, background, np.where(raw_label == 255, 255, raw_label - 1))
        assert np.array_equal(label(root / dataset / "labels" / "val" / f"{image_id}.png"), expected)
    assert {0, 255} <= seen


def test_worker_processes_write_the_same_files(prepared, tmp_path):
    root, _, registry, _ = prepared
    serial, parallel = root / "a847", tmp_path / "prepared" / "a847"
    cfg = DataConfig(raw_root=str(root.parent / "raw"), root=str(parallel.parent), num_workers=2)
    record = prepare_dataset("a847", cfg, registry=registry, lock_path=tmp_path / "lock", progressbar=False).manifest
    assert record == json.loads((serial / "manifest.json").read_text())
    for path in serial.rglob("*.*"):
        assert (parallel / path.relative_to(serial)).read_bytes() == path.read_bytes()
