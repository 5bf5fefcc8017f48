"""The synthetic vocabularies mirror the real lists' structure and share names with the training set;
a class looks the same wherever its name occurs; generation is deterministic in the seed; the stage entry
points print one line per dataset."""

import json

import numpy as np

from dcpclip.data.config import SyntheticConfig
from dcpclip.data.definitions import read_ade20k_full_categories
from dcpclip.data.synthetic import ade_full_categories, encode, raw_files, render, signature
from dcpclip.data.synthetic_vocabulary import visual_key, vocabularies
from experiments import fetch as fetch_stage
from experiments import prepare as prepare_stage


def test_vocabularies_have_the_real_class_count_structure_and_overlap():
    v = vocabularies()
    assert {k: len(n) for k, n in v.items()} == {
        "coco": 171,
        "ade150": 150,
        "ade847": 847,
        "pc459": 459,
        "pc59": 59,
        "voc20": 20,
        "voc20b": 59,
    }
    coco = {visual_key(n) for n in v["coco"]}
    for key in ("ade150", "ade847", "pc459", "pc59", "voc20", "voc20b"):
        shared = sum(visual_key(n) in coco for n in v[key])
        assert shared >= min(20, len(v[key])), key
    assert list(v["pc459"]) == sorted(v["pc459"]) and "unknown" in v["pc459"]
    assert "diningtable" in v["pc59"] and "diningtable" not in v["pc459"] and "table" in v["pc459"]
    assert list(v["voc20b"][:20]) == list(v["voc20"])
    assert [n for n in v["pc59"] if n not in v["voc20"] and n != "diningtable"] == list(v["voc20b"][20:])
    assert sum(n != n.strip() for n in v["ade150"]) == 1
    assert any(", " in n for n in v["ade847"])


def test_a_class_looks_the_same_under_every_spelling_of_its_name():
    assert all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(signature("sofa, couch, lounge"), signature("sofa "), strict=True)
    )
    regions = np.repeat(np.arange(4), 16).reshape(8, 8)
    first = render(regions, ["sky", "grass", "car", "person"], np.random.default_rng(0))
    second = render(regions, ["wall", "tree", "car, auto", "sofa"], np.random.default_rng(0))
    assert np.array_equal(first[regions == 2], second[regions == 2])
    assert np.abs(first[regions == 0].astype(int) - second[regions == 0]).mean() > 10


def test_generation_is_deterministic_in_the_seed():
    small = SyntheticConfig(train_images=2, val_images=2, image_size=(16, 24))
    first = {name: encode(name, content) for name, content in raw_files(small).items()}
    again = {name: encode(name, content) for name, content in raw_files(small).items()}
    other = {
        name: encode(name, content)
        for name, content in raw_files(
            SyntheticConfig(seed=1, train_images=2, val_images=2, image_size=(16, 24))
        ).items()
    }
    assert first == again
    assert first["train2017.zip"] != other["train2017.zip"]
    assert first["coco.json"] == other["coco.json"]  # names do not depend on the seed


def test_fake_definition_file_is_read_as_data(tmp_path):
    files = raw_files(SyntheticConfig(val_images=1), ["a847"])
    path = tmp_path / "prepare_ade20k_full.py"
    path.write_bytes(files["prepare_ade20k_full.py"])
    assert read_ade20k_full_categories(path, 847) == ade_full_categories()
    assert [c["name"] for c in ade_full_categories()] == list(vocabularies()["ade847"])
    assert json.loads(files["ade847.json"]) == list(vocabularies()["ade847"])


def test_stage_entry_points_print_one_line_per_dataset(tmp_path, capsys):
    overrides = [f"data.raw_root={tmp_path / 'raw'}",
                 f"data.root={tmp_path / 'prepared'}"]
    assert fetch_stage.main([*overrides, "--datasets", "a150", "pas20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["a150", "pas20"]
    assert prepare_stage.main([*overrides, "--datasets", "pas20b", "pc59"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"pas20b: prepared, 8 val images, 21 classes -> {tmp_path / 'prepared' / 'pas20b'}",
        f"pc59: prepared, 8 val images, 59 classes -> {tmp_path / 'prepared' / 'pc59'}",
    ]
    assert prepare_stage.main([*overrides, "--datasets", "pc59"]) == 0  # same sources and code: kept
    assert capsys.readouterr().out.strip() == (
        f"pc59: up to date (same sources and code), 8 val images, 59 classes -> {tmp_path / 'prepared' / 'pc59'}")
    assert (tmp_path / "prepared" / "pc59" / "manifest.json").is_file()
