"""Datasets and transforms on a tiny prepared layout written in the test."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from dcpclip.data.datasets import (
    EvaluationDataset,
    TrainingDataset,
    evaluation_dataset,
    prepared_samples,
    read_class_names,
    training_dataset,
)
from dcpclip.data.errors import DataError
from dcpclip.data.specs import SPECS
from dcpclip.data.transforms import EvalResize, TrainAugmentation, resize_label, short_side_shape

MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
STD = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)


@dataclasses.dataclass(frozen=True)
class Key:
    index: int
    epoch: int


def _grey_ramp(height, width):
    """A grey image brightening from left (60) to right (190): colour distortion keeps it grey and keeps
    the direction of the ramp, so flips stay visible in the image."""
    ramp = np.linspace(60, 190, width).round().astype(np.uint8)
    return np.repeat(np.tile(ramp, (height, 1))[:, :, None], 3, axis=2)


def _write(root, key, items, names=None):
    spec = SPECS[key]
    images = root / key / "images" / spec.split
    labels = root / key / "labels" / spec.split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for image_id, (image, label) in items.items():
        Image.fromarray(image).save(images / f"{image_id}.jpg", quality=95)
        suffix = ".png" if spec.label_format == "png8" else ".tif"
        Image.fromarray(label).save(labels / f"{image_id}{suffix}")
    names = names if names is not None else [f"class {i}" for i in range(spec.num_prompts)]
    (root / key / "classes.json").write_text(json.dumps(names))
    return spec


@pytest.fixture
def layout(tmp_path):
    columns = np.arange(60, dtype=np.uint8)
    train = {
        "b": (_grey_ramp(40, 60), np.tile(columns, (40, 1))),  # label = column index
        "a": (_grey_ramp(50, 30), np.full((50, 30), 7, np.uint8)),
        "c": (_grey_ramp(20, 100), np.full((20, 100), 3, np.uint8)),  # long: padded when the cap kicks in
    }
    _write(tmp_path, "coco_stuff", train)
    a847_label = np.full((32, 48), 846, np.uint16)
    a847_label[:4] = 65535
    _write(tmp_path, "a847", {"v0": (_grey_ramp(32, 48), a847_label)})
    return tmp_path


def test_listing_is_sorted_and_class_names_are_read(layout):
    spec = SPECS["coco_stuff"]
    samples = prepared_samples(layout, spec)
    assert [s.id for s in samples] == ["a", "b", "c"]
    assert samples[0].label.name == "a.png"
    assert read_class_names(layout, spec)[:2] == ["class 0", "class 1"]


def test_training_items_have_fixed_shape_and_dtypes(layout):
    dataset = training_dataset(layout, SPECS["coco_stuff"], crop_size=32, seed=0)
    assert len(dataset) == 3
    for index in range(3):
        image, label = dataset[Key(index, 0)]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert label.shape == (32, 32) and label.dtype == torch.int64
    _, label = dataset[Key(0, 0)]  # "a": every pixel labelled 7, short side already 30 -> resized to 32
    assert (label == 7).all()


def test_padding_uses_pixel_128_and_the_ignore_label(layout):
    # 20 x 100 -> short side 32 would be 32 x 160; the cap of 48 on the long side gives 10 x 48, so the
    # 32 x 32 crop is 10 rows high and the rest is padding.
    samples = prepared_samples(layout, SPECS["coco_stuff"])
    dataset = TrainingDataset(samples, "png8", TrainAugmentation(32, max_long_side=48), seed=0)
    image, label = dataset[Key(2, 0)]
    assert (label[:10] == 3).all() and (label[10:] == 255).all()
    padding = (torch.full((3, 1, 1), 128 / 255) - MEAN) / STD
    assert torch.allclose(image[:, 10:], padding.expand(3, 22, 32), atol=1e-6)


def test_augmentation_is_a_pure_function_of_seed_index_and_epoch(layout):
    spec = SPECS["coco_stuff"]
    first = training_dataset(layout, spec, crop_size=32, seed=5)
    second = training_dataset(layout, spec, crop_size=32, seed=5)
    for key in (Key(1, 0), Key(1, 3), Key(2, 1)):
        assert all(torch.equal(a, b) for a, b in zip(first[key], second[key], strict=True))
    draws = [first[Key(1, epoch)] for epoch in range(8)]
    assert len({(d[0].sum().item(), d[1].sum().item()) for d in draws}) > 1  # epochs differ
    other_seed = training_dataset(layout, spec, crop_size=32, seed=6)
    assert any(not torch.equal(other_seed[Key(1, e)][0], draws[e][0]) for e in range(8))


def test_crop_and_flip_move_image_and_label_together(layout):
    # "b" is 40 x 60 -> 32 x 48, label = source column; a crop keeps 32 consecutive columns, maybe flipped.
    dataset = training_dataset(layout, SPECS["coco_stuff"], crop_size=32, seed=0)
    orientations = set()
    for epoch in range(12):
        image, label = dataset[Key(1, epoch)]
        row = label[0]
        assert (label == row).all()  # every row the same
        steps = row[1:] - row[:-1]
        increasing = bool((steps >= 0).all())
        assert increasing or bool((steps <= 0).all())
        brightening = bool(image[0, 16, -1] > image[0, 16, 0])  # the grey ramp's direction
        assert brightening == increasing
        orientations.add(increasing)
    assert orientations == {True, False}  # both flipped and unflipped draws occur


def test_evaluation_items_keep_labels_at_the_original_size(layout):
    spec = SPECS["a847"]
    item = evaluation_dataset(layout, spec, short_side=24, max_long_side=2560)[0]
    assert item.id == "v0"
    assert item.image.shape == (3, 24, 36) and item.image.dtype == torch.float32
    assert item.label.shape == (32, 48) and item.label.dtype == torch.int64
    assert (item.label[:4] == 65535).all() and (item.label[4:] == 846).all()  # uint16 ignore value kept
    capped = EvaluationDataset(prepared_samples(layout, spec), "tif16", EvalResize(32, 40))[0]
    assert capped.image.shape == (3, 27, 40)  # 32 x 48 capped at 40: 26.67 x 40


def test_evaluation_image_is_clip_normalised(layout):
    samples = prepared_samples(layout, SPECS["a847"])
    item = EvaluationDataset(samples, "tif16", EvalResize(32, 2560))[0]  # already 32 on the short side
    pixels = np.array(Image.open(samples[0].image).convert("RGB"))
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    assert torch.allclose(item.image * STD + MEAN, expected, atol=1e-6)


def test_resize_arithmetic_matches_detectron2():
    assert short_side_shape(480, 640, 640, 2560) == (640, 853)  # 853.33 rounds down
    assert short_side_shape(500, 375, 640, 2560) == (853, 640)
    assert short_side_shape(100, 1000, 640, 2560) == (256, 2560)  # long side capped
    assert short_side_shape(3, 5, 2, 100) == (2, 3)  # 3.33 -> 3
    assert short_side_shape(2, 3, 4, 100) == (4, 6)
    # legacy nearest: output i takes source floor(i * 10 / 4)
    label = np.arange(10, dtype=np.uint16)[None].repeat(2, axis=0)
    assert resize_label(label, (2, 4)).tolist() == [[0, 2, 5, 7]] * 2


def test_bad_layouts_fail_naming_the_file(layout, tmp_path):
    spec = SPECS["coco_stuff"]
    with pytest.raises(DataError, match="no prepared PC-59 images"):
        prepared_samples(layout, SPECS["pc59"])
    (layout / "coco_stuff" / "labels" / "train" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 of 3 .*b\.png"):
        prepared_samples(layout, spec)
    with pytest.raises(DataError, match="must use 255"):
        training_dataset(layout, SPECS["a847"], crop_size=32, seed=0)

    root = tmp_path / "other"
    _write(
        root,
        "pas20",
        {
            "mismatch": (_grey_ramp(10, 12), np.zeros((10, 11), np.uint8)),
            "rgb": (_grey_ramp(4, 4), np.zeros((4, 4, 3), np.uint8)),
            "broken": (_grey_ramp(4, 4), np.zeros((4, 4), np.uint8)),
        },
        names=["only one"],
    )
    (root / "pas20" / "images" / "val" / "broken.jpg").write_bytes(b"not a jpeg")
    dataset = evaluation_dataset(root, SPECS["pas20"], 8, 100)
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable image"):
        dataset[0]
    with pytest.raises(DataError, match=r"mismatch\.png: label size 10x11 .* differs from image .*10x12"):
        dataset[1]
    with pytest.raises(DataError, match=r"rgb\.png: expected an 8-bit single-channel PNG"):
        dataset[2]
    with pytest.raises(DataError, match="1 class names, but PAS-20 has 20"):
        read_class_names(root, SPECS["pas20"])
