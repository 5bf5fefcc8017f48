"""`predict` on generated images with the tiny model: the training-free baseline and a run trained for two
steps through the real trainer; the outputs' contract, the legend, and every bad input's exit status 2."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcpclip.engine.checkpoint import CHECKPOINT_NAME
from dcpclip.engine.segmenter_training import train_experiment
from dcpclip.overlay import MIN_PICTURE_SIDE, LegendEntry, class_color, draw_overlay, legend_entries, palette
from dcpclip.paths import run_dir
from experiments.compose import compose_config
from experiments.predict import main

VOCABULARY = ["sky", "grass", "red car", "road", "tree", "water", "person", "wall", "dog", "boat", "sand",
              "snow"]
PAS20_NAMES = [f"voc class {i}" for i in range(20)]


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """[H, W, 3] uint8: two bands and a block, plus noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.int64)
    image[: height // 2] = (90, 150, 230)
    image[height // 2 :] = (60, 160, 60)
    image[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = (200, 60, 40)
    return (image + rng.integers(0, 40, image.shape)).clip(0, 255).astype(np.uint8)


def _write_prepared(root, key: str, names: list[str], split: str, count: int) -> None:
    """A prepared dataset in the layout of `dcpclip.data.specs`: classes.json, jpg images, png labels."""
    base = root / key
    (base / "images" / split).mkdir(parents=True)
    (base / "labels" / split).mkdir(parents=True)
    (base / "classes.json").write_text(json.dumps(names))
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(_scene(64, 80, i)).save(base / "images" / split / f"{i:03d}.jpg")
        label = rng.integers(0, len(names), (64, 80)).astype(np.uint8)
        label[:4] = 255
        Image.fromarray(label).save(base / "labels" / split / f"{i:03d}.png")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Overrides pointing every folder into a temporary workspace, a prepared COCO-Stuff (2 images,
    171 names) and PAS-20 class list, and a `full` run trained for 2 steps by the real trainer."""
    root = tmp_path_factory.mktemp("predict")
    prepared = root / "prepared"
    _write_prepared(prepared, "coco_stuff", [f"stuff {i}" for i in range(171)], "train", 2)
    (prepared / "pas20").mkdir()
    (prepared / "pas20" / "classes.json").write_text(json.dumps(PAS20_NAMES))
    overrides = [f"runs_dir={root / 'runs'}", f"cache_dir={root / 'cache'}", f"data.root={prepared}",
                 "train.iterations=2", "train.batch_size=2", "pretrain=none"]
    cfg = compose_config(overrides)
    result = train_experiment(cfg, device="cpu", progress=False)
    assert result.step == 2
    images = root / "images"
    images.mkdir()
    Image.fromarray(_scene(90, 120, 0)).save(images / "wide.jpg")
    Image.fromarray(_scene(70, 50, 1)).save(images / "tall.png")
    return {"root": root, "overrides": overrides, "run": run_dir(cfg), "images": images}


def _predict(workspace, tmp_path, *args) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = main([*args, "--out", str(out), "--device", "cpu", *workspace["overrides"]])
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")} if out.exists() else {}
    return code, records


def _check_outputs(out, stem: str, image_path, record: dict, vocabulary: list[str]) -> np.ndarray:
    """The outputs' contract for one image; returns its label map."""
    with Image.open(image_path) as image:
        width, height = image.size
    labels = np.array(Image.open(out / f"{stem}_labels.png"))
    assert labels.shape == (height, width)
    assert labels.dtype == (np.uint8 if len(vocabulary) <= 256 else np.uint16)
    assert labels.max() < len(vocabulary)
    present = np.unique(labels).tolist()
    assert sorted(c["index"] for c in record["classes"]) == present  # the legend: exactly these classes
    assert [c["name"] for c in record["classes"]] == [vocabulary[c["index"]] for c in record["classes"]]
    shares = [c["pixel_share"] for c in record["classes"]]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0, abs=1e-5)
    entries = legend_entries(labels, vocabulary)
    recorded = [(c["index"], c["pixel_share"]) for c in record["classes"]]
    assert [(e.index, round(e.share, 6)) for e in entries] == recorded
    assert record["vocabulary"] == vocabulary
    assert record["image_size"] == {"height": height, "width": width}
    with Image.open(out / f"{stem}_overlay.png") as overlay:
        assert overlay.height >= height and overlay.width > width
    return labels


def test_zero_shot_segments_files_and_folders(workspace, tmp_path):
    images = workspace["images"]
    vocab = ", ".join(VOCABULARY)
    code, records = _predict(workspace, tmp_path, str(images), "--vocab", vocab, "--zero-shot")
    assert code == 0
    assert sorted(records) == ["tall", "wide"]
    for stem, suffix in (("tall", ".png"), ("wide", ".jpg")):
        record = records[stem]
        _check_outputs(tmp_path / "out", stem, images / f"{stem}{suffix}", record, VOCABULARY)
        assert record["model"]["kind"] == "zero-shot"
        assert record["pruned_vocabulary"] == VOCABULARY  # dense CLIP keeps every class
        assert record["inference"]["mode"] == "sliding" and record["inference"]["views"] == 5


def test_trained_run_of_the_composed_config(workspace, tmp_path):
    image = workspace["images"] / "wide.jpg"
    vocab = ",".join(VOCABULARY)
    code, records = _predict(workspace, tmp_path, str(image), "--vocab", vocab, "eval.mode=whole")
    assert code == 0
    record = records["wide"]
    labels = _check_outputs(tmp_path / "out", "wide", image, record, VOCABULARY)
    model = record["model"]
    assert (model["kind"], model["run_dir"], model["step"], model["finished"]) == (
        "run", str(workspace["run"]), 2, True)
    # top_k = 8 of 12 classes in one whole-image view: the pruned vocabulary holds every predicted class
    pruned = record["pruned_vocabulary"]
    assert len(pruned) == compose_config(workspace["overrides"]).head.top_k
    assert set(VOCABULARY[i] for i in np.unique(labels)) <= set(pruned)
    assert record["inference"]["mode"] == "whole" and record["inference"]["views"] == 1


def test_explicit_run_folder_and_large_vocabulary_file(workspace, tmp_path):
    names = [f"thing {i}" for i in range(300)]
    vocabulary_file = tmp_path / "names.txt"
    vocabulary_file.write_text("\n".join(names) + "\n\n")
    image = workspace["images"] / "tall.png"
    run = str(workspace["run"])
    code, records = _predict(workspace, tmp_path, str(image), "--vocab", str(vocabulary_file), "--run", run)
    assert code == 0
    _check_outputs(tmp_path / "out", "tall", image, records["tall"], names)  # uint16 label map


def test_benchmark_key_reads_prepared_class_names(workspace, tmp_path):
    image = workspace["images"] / "tall.png"
    code, records = _predict(workspace, tmp_path, str(image), "--vocab", "pas20", "--zero-shot")
    assert code == 0
    assert records["tall"]["vocabulary"] == PAS20_NAMES


def test_legend_entries_are_the_classes_present_by_share():
    labels = np.array([[2, 2, 2, 0], [2, 5, 5, 0]])
    names = ["a", "b", "c", "d", "e", "f"]
    entries = legend_entries(labels, names)
    assert entries == [
        LegendEntry(2, "c", 4 / 8, class_color(2)),
        LegendEntry(0, "a", 2 / 8, class_color(0)),  # tie with 5: lower index first
        LegendEntry(5, "f", 2 / 8, class_color(5)),
    ]
    picture = np.array(draw_overlay(np.zeros((2, 4, 3), np.uint8), labels, entries, len(names)))
    scale = MIN_PICTURE_SIDE // 2  # a 2 x 4 image is enlarged to a short side of MIN_PICTURE_SIDE
    legend = picture[:, 4 * scale :].reshape(-1, 3)
    drawn = {tuple(c) for c in np.unique(legend, axis=0).tolist()}
    assert all(e.color in drawn for e in entries)  # a swatch per entry
    assert class_color(1) not in drawn and class_color(3) not in drawn


def test_palette_colours_are_distinct():
    colors = palette(256)
    assert len({tuple(c) for c in colors.tolist()}) == 256


def _bad(workspace, tmp_path, capsys, *args) -> str:
    code, _ = _predict(workspace, tmp_path, *args)
    assert code == 2
    return capsys.readouterr().err


def test_missing_and_unreadable_images(workspace, tmp_path, capsys):
    missing = tmp_path / "nowhere.jpg"
    err = _bad(workspace, tmp_path, capsys, str(missing), "--vocab", "cat, dog", "--zero-shot")
    assert str(missing) in err and "not found" in err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    err = _bad(workspace, tmp_path, capsys, str(broken), "--vocab", "cat, dog", "--zero-shot")
    assert str(broken) in err and "unreadable image" in err
    twin = tmp_path / "twin"
    twin.mkdir()
    Image.fromarray(_scene(20, 20, 0)).save(twin / "wide.png")
    folders = [str(workspace["images"]), str(twin)]
    err = _bad(workspace, tmp_path, capsys, *folders, "--vocab", "cat, dog", "--zero-shot")
    assert "'wide'" in err and "overwrite" in err


@pytest.mark.parametrize(
    ("vocab", "expected"),
    [
        (" , ,", "vocabulary is empty"),
        ("cat, dog, Cat,dog", "duplicate class names 'cat' and 'Cat', 'dog'"),
        ("a151", "unknown benchmark key 'a151'"),
        ("a150", "a150/classes.json: class-name file not found"),
        ("missing_names.txt", "vocabulary file missing_names.txt not found"),
    ],
)
def test_bad_vocabularies(workspace, tmp_path, capsys, vocab, expected):
    image = str(workspace["images"] / "tall.png")
    assert expected in _bad(workspace, tmp_path, capsys, image, "--vocab", vocab, "--zero-shot")


def test_empty_vocabulary_file(workspace, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    err = _bad(workspace, tmp_path, capsys, str(workspace["images"] / "tall.png"), "--vocab", str(empty))
    assert f"vocabulary file {empty}: the vocabulary is empty" in err


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["profile=paper", "backbone.pretrained=null"],
         ["(embedding dimension 64 vs 512)", "backbone.arch: 'dcpclip-tiny' (run) vs 'ViT-B-16' (composed)"]),
        (["head.hidden_dim=16"], ["composed here: head.hidden_dim: 32 (run) vs 16 (composed)."]),
    ],
)
def test_run_of_another_model_is_refused(workspace, tmp_path, capsys, overrides, expected):
    run = str(workspace["run"])
    image = str(workspace["images"] / "tall.png")
    err = _bad(workspace, tmp_path, capsys, image, "--vocab", "cat, dog", "--run", run, *overrides)
    assert all(text in err for text in expected), err


def test_checkpoint_that_does_not_fit_the_model(workspace, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    checkpoint = torch.load(workspace["run"] / CHECKPOINT_NAME, weights_only=True)
    name = next(n for n in checkpoint["model"] if n.endswith("in_proj_weight"))
    checkpoint["model"][name] = torch.zeros(6, 2)
    torch.save(checkpoint, folder / CHECKPOINT_NAME)
    image = str(workspace["images"] / "tall.png")
    err = _bad(workspace, tmp_path, capsys, image, "--vocab", "cat, dog", "--run", str(folder))
    assert f"{name} [6, 2] (checkpoint)" in err and "another architecture or embedding dimension" in err
    empty = tmp_path / "untrained"
    empty.mkdir()
    err = _bad(workspace, tmp_path, capsys, image, "--vocab", "cat, dog", "--run", str(empty))
    assert f"run folder {empty}: no {CHECKPOINT_NAME}" in err
