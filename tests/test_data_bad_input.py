"""Bad raw data fails preparation with an error that names the file (or source, or counts), and leaves
nothing under the prepared root: raw files are generated, one member is corrupted, and the real fetch +
prepare code runs on them."""

import dataclasses
import io
import json
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from dcpclip.data.config import DataConfig, SyntheticConfig
from dcpclip.data.errors import DataError
from dcpclip.data.prepare import prepare_dataset
from dcpclip.data.prepare.a847 import read_index
from dcpclip.data.synthetic import mat, png, raw_files, write_host
from dcpclip.errors import CorruptCacheWarning

SMALL = SyntheticConfig(val_images=2, train_images=2, image_size=(24, 40))
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools


def run(tmp_path, dataset, files, registry_edit=None):
    cfg = DataConfig(raw_root=str(tmp_path / "raw"), root=str(tmp_path / "prepared"))
    registry = write_host(files, tmp_path / "raw" / "synthetic-host", SMALL)
    if registry_edit:
        registry = registry_edit(registry)
    return prepare_dataset(
        dataset, cfg, registry=registry, lock_path=tmp_path / "lock.json", progressbar=False
    ).manifest


def fails(tmp_path, dataset, files, pattern, registry_edit=None):
    with pytest.raises(DataError, match=pattern):
        run(tmp_path, dataset, files, registry_edit)
    prepared = tmp_path / "prepared"
    assert not prepared.exists() or list(prepared.iterdir()) == [], "a failed preparation left files behind"


def decoded(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def test_a_good_run_of_the_same_helpers_succeeds(tmp_path):
    assert run(tmp_path, "a150", raw_files(SMALL, ["a150"]))["images"] == {"val": 2}


def test_label_value_out_of_range_names_the_file(tmp_path):
    files = raw_files(SMALL, ["a150"])
    name = "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
    bad = decoded(files["ADEChallengeData2016.zip"][name])
    bad[0, 0] = 151
    files["ADEChallengeData2016.zip"][name] = png(bad)
    fails(
        tmp_path,
        "a150",
        files,
        r"ADE_val_00000002\.png: label value\(s\) 151 out of range \(allowed: 0\.\.150\)",
    )


@pytest.mark.parametrize("dataset", ["pas20", "pas20b"])
def test_voc_label_21_is_out_of_range(tmp_path, dataset):
    files = raw_files(SMALL, [dataset])
    name = "SegmentationClassAug/2007_000001.png"
    bad = decoded(files["SegmentationClassAug.zip"][name])
    bad[-1, -1] = 21
    files["SegmentationClassAug.zip"][name] = png(bad)
    fails(tmp_path, dataset, files, r"2007_000001\.png: label value\(s\) 21 out of range")


def test_pc459_labelmap_outside_1_to_459(tmp_path):
    files = raw_files(SMALL, ["pc459"])
    files["trainval.tar.gz"]["trainval/2008_000001.mat"] = mat(
        np.full(SMALL.image_size, 460, dtype=np.uint16)
    )
    fails(tmp_path, "pc459", files, r"2008_000001\.mat: LabelMap values 460\.\.460 out of range")


def test_pc59_category_outside_the_459_space(tmp_path):
    files = raw_files(SMALL, ["pc59"])
    detail = json.loads(files["trainval_merged.json"])
    detail["annos_segmentation"][0]["category_id"] = 460
    files["trainval_merged.json"] = json.dumps(detail).encode()
    fails(tmp_path, "pc59", files, r"trainval_merged\.json: annotation 1 has category_id 460 out of range")


def test_label_and_image_size_mismatch(tmp_path):
    files = raw_files(SMALL, ["coco_stuff"])
    name = "train2017/000000000002.png"
    files["stuffthingmaps_trainval2017.zip"][name] = png(
        decoded(files["stuffthingmaps_trainval2017.zip"][name])[:-3]
    )
    fails(
        tmp_path,
        "coco_stuff",
        files,
        r"000000000002\.png: label size 21x\d+ \(HxW\) differs from image .*000000000002\.jpg",
    )


def test_missing_image_for_a_label(tmp_path):
    files = raw_files(SMALL, ["a150"])
    del files["ADEChallengeData2016.zip"]["ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"]
    fails(
        tmp_path, "a150", files, r"missing image for label .*ADE_val_00000001\.png: .*ADE_val_00000001\.jpg"
    )


def test_missing_a847_class_map(tmp_path):
    files = raw_files(SMALL, ["a847"])
    members = files["ADE20K_2021_17_01.zip"]
    del members[next(n for n in members if n.endswith("ADE_val_00000002_seg.png"))]
    fails(tmp_path, "a847", files, r"missing class map \(_seg\.png\) for image .*ADE_val_00000002\.jpg")


def test_unreadable_label_names_the_file(tmp_path):
    files = raw_files(SMALL, ["pas20"])
    files["SegmentationClassAug.zip"]["SegmentationClassAug/2007_000002.png"] = b"\x89PNG not really"
    fails(tmp_path, "pas20", files, r"2007_000002\.png: unreadable image")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_the_index_pickle_loads_with_numpy_arrays_in_every_protocol(tmp_path, protocol):
    index = {"folder": np.array(["ADE/validation/a", "ADE/training/b"], dtype=object),
             "filename": np.array(["ADE_val_00000001.jpg", "ADE_train_00000002.jpg"]),
             "objectPresence": np.arange(6, dtype=np.uint16).reshape(2, 3)}
    path = tmp_path / "index_ade20k.pkl"
    path.write_bytes(pickle.dumps(index, protocol=protocol))
    assert read_index(path) == [("ADE/validation/a", "ADE_val_00000001.jpg"),
                                ("ADE/training/b", "ADE_train_00000002.jpg")]


@pytest.mark.parametrize("payload, refused", [
    (b"cos\nsystem\n(S'echo'\ntR.", "refusing to load os.system"),
    (pickle.dumps(print, protocol=4), "refusing to load builtins.print"),
    # the one callable admitted beyond numpy's own is held to numpy's use of it
    (b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.", "refusing _codecs.encode(str, 'rot13')"),
])
def test_the_index_pickle_refuses_other_callables(tmp_path, payload, refused):
    path = tmp_path / "index_ade20k.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=f"index_ade20k.pkl: unreadable index \\({re.escape(refused)}"):
        read_index(path)


def test_unreadable_index_pickle_names_the_file(tmp_path):
    files = raw_files(SMALL, ["a847"])
    files["ADE20K_2021_17_01.zip"]["ADE20K_2021_17_01/index_ade20k.pkl"] = b"cos\nsystem\n(S'echo'\ntR."
    fails(tmp_path, "a847", files, r"index_ade20k\.pkl: unreadable index \(refusing to load os\.system\)")


def test_wrong_image_count_says_expected_and_found(tmp_path):
    files = raw_files(SMALL, ["pas20b"])
    files["VOCtrainval_11-May-2012.tar"]["VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"] = (
        b"2007_000001\n"
    )
    fails(tmp_path, "pas20b", files, r"pas20b: val split has 1 images, expected 2")


def test_wrong_definition_file_length(tmp_path):
    files = raw_files(SMALL, ["pas20"])
    files["voc20.json"] = json.dumps(["aeroplane"] * 19).encode()
    fails(tmp_path, "pas20", files, r"voc20\.json: 19 names, expected 20")


def test_hash_mismatch_names_the_source_and_keeps_nothing(tmp_path):
    files = raw_files(SMALL, ["a150"])

    def wrong_hash(registry):
        sources = dict(registry.sources)
        sources["ade20k_challenge"] = dataclasses.replace(
            sources["ade20k_challenge"], known_hash="sha256:" + "0" * 64
        )
        return dataclasses.replace(registry, sources=sources)

    fails(tmp_path, "a150", files, r"ade20k_challenge .*hash", registry_edit=wrong_hash)
    assert not (tmp_path / "raw" / "ADEChallengeData2016.zip").exists()


def test_truncated_archive_on_the_host_fails_its_checksum(tmp_path):
    files = raw_files(SMALL, ["a150"])
    cfg = DataConfig(raw_root=str(tmp_path / "raw"), root=str(tmp_path / "prepared"))
    registry = write_host(files, tmp_path / "raw" / "synthetic-host", SMALL)
    archive = tmp_path / "raw" / "synthetic-host" / "ADEChallengeData2016.zip"
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match=re.escape("ade20k_challenge (file://")):
        prepare_dataset("a150", cfg, registry=registry, lock_path=tmp_path / "lock.json", progressbar=False)
    assert not (tmp_path / "prepared").exists()


def test_truncated_archive_without_a_published_hash_fails_at_extraction(tmp_path):
    files = raw_files(SMALL, ["pc459"])

    def unhashed(registry):  # like a first download of a source whose checksum nobody published
        sources = dict(registry.sources)
        sources["pascal_context"] = dataclasses.replace(sources["pascal_context"], known_hash=None)
        return dataclasses.replace(registry, sources=sources)

    host = tmp_path / "raw" / "synthetic-host"
    write_host(files, host, SMALL)
    data = (host / "trainval.tar.gz").read_bytes()
    files["trainval.tar.gz"] = data[: len(data) // 2]
    fails(
        tmp_path, "pc459", files, r"trainval\.tar\.gz: truncated or corrupt archive", registry_edit=unhashed
    )


def test_archive_member_escaping_the_folder_is_refused(tmp_path):
    files = raw_files(SMALL, ["pas20"])
    files["SegmentationClassAug.zip"]["../../evil.png"] = b"x"
    fails(
        tmp_path, "pas20", files, r"SegmentationClassAug\.zip: refusing archive member '\.\./\.\./evil\.png'"
    )
    assert not list(tmp_path.rglob("evil.png"))


def test_failed_update_keeps_the_previous_preparation(tmp_path):
    files = raw_files(SMALL, ["a150"])
    run(tmp_path, "a150", files)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "prepared").rglob("*"))
    name = "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    files["ADEChallengeData2016.zip"][name] = b"garbage"
    with pytest.raises(DataError, match="unreadable image"):
        run(tmp_path, "a150", files)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "prepared").rglob("*")) == before


def test_an_unreadable_manifest_is_named_and_the_dataset_prepared_again(tmp_path):
    files = raw_files(SMALL, ["a150"])
    run(tmp_path, "a150", files)
    manifest = tmp_path / "prepared" / "a150" / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.warns(CorruptCacheWarning, match=f"prepared manifest {re.escape(str(manifest))}: unreadable"):
        assert run(tmp_path, "a150", files)["images"] == {"val": 2}
    assert manifest.read_text() == good


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_prepared_file_missing_or_cut_short_is_named_and_the_dataset_prepared_again(tmp_path, damage):
    files = raw_files(SMALL, ["a150"])
    run(tmp_path, "a150", files)
    folder = tmp_path / "prepared" / "a150"
    image = sorted((folder / "images" / "val").iterdir())[0]
    good = image.read_bytes()
    image.unlink() if damage == "delete" else image.write_bytes(good[:10])
    name = image.relative_to(folder).as_posix()
    problem = f"{name} is missing" if damage == "delete" else f"{name} has 10 bytes, {len(good)} when written"
    with pytest.warns(CorruptCacheWarning, match=re.escape(f"prepared dataset {folder}: {problem}; preparing again")):
        run(tmp_path, "a150", files)
    assert image.read_bytes() == good
