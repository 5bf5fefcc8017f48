"""Image and label transforms of the training recipe and the evaluation protocol.

Behaviour matches what CAT-Seg's pipeline does with detectron2 (`MaskFormerSemanticDatasetMapper` for
training, detectron2's `DatasetMapper` with `ResizeShortestEdge(640, 2560)` for testing), reimplemented:
- resizing to a short side follows `ResizeShortestEdge.get_output_shape` (short side to the target, long
  side capped with the aspect kept, both rounded half up); images are resized with PIL's bilinear filter
  on uint8 pixels, labels with torch's legacy "nearest" (detectron2 resizes the label as a float array);
- training: resize the short side to the crop size (long side <= 1333, detectron2's default
  `INPUT.MAX_SIZE_TRAIN`), random crop of at most crop x crop, SSD colour distortion
  (`ColorAugSSDTransform` of detectron2's PointRend project: brightness +-32, then contrast x[0.5, 1.5]
  before or after saturation x[0.5, 1.5] and hue +-18 (OpenCV's 0..179 scale), each applied with
  probability 1/2, saturating uint8 arithmetic), horizontal flip with probability 1/2, then padding at the
  bottom and right to crop x crop with pixel value 128 and the ignore label;
- images are finally scaled to [0, 1] and normalised with CLIP's mean and std (the padding too, as in
  CAT-Seg, which pads before normalising).
All randomness comes from the `numpy.random.Generator` passed in, so a sample is a pure function of it.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

TRAIN_MAX_LONG_SIDE = 1333  # detectron2's INPUT.MAX_SIZE_TRAIN default, which CAT-Seg keeps
PAD_PIXEL = 128
BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # in OpenCV's 8-bit hue units (0..179)

_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
_STD = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)


def short_side_shape(height: int, width: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """(H', W') with the short side at `short_side` and the long side at most `max_long_side`."""
    scale = short_side / min(height, width)
    new_height, new_width = height * scale, width * scale
    longest = max(new_height, new_width)
    if longest > max_long_side:
        new_height, new_width = new_height * max_long_side / longest, new_width * max_long_side / longest
    return int(new_height + 0.5), int(new_width + 0.5)


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 -> [H', W', 3] uint8, PIL bilinear (antialiased when shrinking)."""
    if image.shape[:2] == tuple(shape):
        return image
    return np.array(Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def resize_label(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[H, W] integer labels -> [H', W'], each output pixel takes source pixel floor(i * H / H')."""
    if label.shape == tuple(shape):
        return label
    resized = F.interpolate(
        torch.from_numpy(label.astype(np.float64))[None, None], size=shape, mode="nearest"
    )
    return resized[0, 0].numpy().astype(label.dtype)


def normalize(image: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> [3, H, W] float32, CLIP mean/std normalised."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return (pixels - _MEAN) / _STD


def _affine(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """alpha * values + beta, clipped to 0..255 and truncated to uint8 (the SSD distortion's arithmetic)."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def ssd_color_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> distorted copy: brightness, then contrast first or last around saturation and
    hue; each step applied with probability 1/2."""

    def contrast(img):
        if rng.integers(2):
            img = _affine(img, alpha=rng.uniform(*CONTRAST_RANGE))
        return img

    def saturation(img):
        if rng.integers(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = _affine(hsv[:, :, 1], alpha=rng.uniform(*SATURATION_RANGE))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return img

    def hue(img):
        if rng.integers(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            shift = int(rng.integers(-HUE_DELTA, HUE_DELTA + 1))
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + shift) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return img

    if rng.integers(2):
        image = _affine(image, beta=rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA))
    steps = (contrast, saturation, hue) if rng.integers(2) else (saturation, hue, contrast)
    for step in steps:
        image = step(image)
    return image


@dataclasses.dataclass(frozen=True)
class TrainAugmentation:
    """The recipe's training transform: (image uint8 [H, W, 3], label [H, W]) -> fixed-size tensors."""

    crop_size: int
    ignore_value: int = 255  # label of the padding
    max_long_side: int = TRAIN_MAX_LONG_SIDE

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> image [3, S, S] float32 (CLIP-normalised), label [S, S] int64, S = crop_size."""
        size = self.crop_size
        shape = short_side_shape(*image.shape[:2], size, self.max_long_side)
        image, label = resize_image(image, shape), resize_label(label, shape)

        crop_height, crop_width = min(size, shape[0]), min(size, shape[1])
        top = int(rng.integers(shape[0] - crop_height + 1))
        left = int(rng.integers(shape[1] - crop_width + 1))
        image = image[top : top + crop_height, left : left + crop_width]
        label = label[top : top + crop_height, left : left + crop_width]

        image = ssd_color_distortion(image, rng)
        if rng.uniform() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]

        padded_image = np.full((size, size, 3), PAD_PIXEL, dtype=np.uint8)
        padded_label = np.full((size, size), self.ignore_value, dtype=np.int64)
        padded_image[:crop_height, :crop_width] = image
        padded_label[:crop_height, :crop_width] = label
        return normalize(padded_image), torch.from_numpy(padded_label)


@dataclasses.dataclass(frozen=True)
class EvalResize:
    """The protocol's test transform: short side to `short_side`, long side <= `max_long_side`
    (`EvalConfig.short_side`, `EvalConfig.max_long_side`)."""

    short_side: int
    max_long_side: int

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """[H, W, 3] uint8 -> [3, H', W'] float32, CLIP-normalised."""
        shape = short_side_shape(*image.shape[:2], self.short_side, self.max_long_side)
        return normalize(resize_image(image, shape))
