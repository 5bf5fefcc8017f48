"""Pictures of a label map: a deterministic class palette, the legend of the classes present, and the
colour overlay (label colours blended with the image, region borders, each class's name written inside its
largest region, legend panel on the right).

Colours belong to vocabulary indices, so a class keeps its colour across the images of one vocabulary:
hues step around the colour wheel by the golden-ratio conjugate (neighbouring indices land far apart,
the usual trick for open-ended categorical palettes) across three saturation and three value tiers.
"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
SATURATIONS = (0.85, 0.55, 1.0)
VALUES = (0.95, 0.75, 0.6)
OVERLAY_ALPHA = 0.6  # weight of the class colour in the blend
BORDER_COLOR = (20, 20, 20)
MIN_PICTURE_SIDE = 320  # smaller images are enlarged (nearest, integer factor) so the legend stays legible
MAX_NAME_CHARS = 40  # longer class names (synonym lists) are cut in the legend
FONT_FILE = "DejaVuSans.ttf"


@dataclasses.dataclass(frozen=True)
class LegendEntry:
    index: int  # vocabulary index
    name: str
    share: float  # share of the image's pixels
    color: tuple[int, int, int]


def class_color(index: int) -> tuple[int, int, int]:
    """RGB colour of vocabulary index `index` (the same for every image and run)."""
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = SATURATIONS[index % len(SATURATIONS)]
    value = VALUES[(index // len(SATURATIONS)) % len(VALUES)]
    return tuple(round(255 * channel) for channel in colorsys.hsv_to_rgb(hue, saturation, value))


def palette(num_classes: int) -> np.ndarray:
    """[C, 3] uint8 colours of vocabulary indices 0..C-1."""
    return np.array([class_color(i) for i in range(num_classes)], dtype=np.uint8).reshape(num_classes, 3)


def legend_entries(labels: np.ndarray, names: list[str]) -> list[LegendEntry]:
    """The classes present in `labels` [H, W] (indices into `names`), largest pixel share first (ties:
    lower index first). Exactly the classes of the label map, no more, no less."""
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=len(names))
    if counts.shape[0] > len(names):
        raise ValueError(
            f"label map holds index {counts.shape[0] - 1}, the vocabulary has {len(names)} names"
        )
    present = np.flatnonzero(counts)
    order = sorted(present.tolist(), key=lambda i: (-counts[i], i))
    return [LegendEntry(i, names[i], counts[i] / labels.size, class_color(i)) for i in order]


def legend_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans when the system has it, else Pillow's built-in scalable font."""
    try:
        return ImageFont.truetype(FONT_FILE, size)
    except OSError:
        return ImageFont.load_default(size)


def short_name(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 3].rstrip() + "..."


def region_borders(labels: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose right or lower neighbour has another label."""
    borders = np.zeros(labels.shape, dtype=bool)
    borders[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    borders[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return borders


def name_anchor(mask: np.ndarray) -> tuple[int, int, float]:
    """mask [H, W] bool (not empty) -> (x, y, r): the point of the mask's largest connected region
    farthest from its border, and that distance r in pixels (where a name written there is most
    surely inside the region)."""
    components, _ = ndimage.label(mask)
    largest = np.bincount(components.reshape(-1))[1:].argmax() + 1
    box = ndimage.find_objects(components)[largest - 1]
    region = np.pad(components[box] == largest, 1)  # the padding is outside
    distance = ndimage.distance_transform_edt(region)
    y, x = np.unravel_index(distance.argmax(), distance.shape)
    return int(x - 1 + box[1].start), int(y - 1 + box[0].start), float(distance[y, x])


def blend(image: np.ndarray, labels: np.ndarray, vocabulary_size: int,
          unlabelled: np.ndarray | None = None) -> np.ndarray:
    """image [H, W, 3] uint8 and labels [H, W] -> [H, W, 3] uint8: each pixel's class colour blended with
    the image (OVERLAY_ALPHA) and region borders drawn; where `unlabelled` [H, W] bool is set (a ground
    truth's ignore value) the image shows through uncoloured."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and label map {labels.shape} differ in size")
    if unlabelled is not None:
        labels = np.where(unlabelled, 0, labels)
    colors = palette(vocabulary_size)[labels]  # [H, W, 3]
    blended = ((1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * colors).round().astype(np.uint8)
    if unlabelled is not None:
        blended[unlabelled] = image[unlabelled]
        labels = np.where(unlabelled, -1, labels)  # borders around the unlabelled regions too
    blended[region_borders(labels)] = BORDER_COLOR
    return blended


def draw_overlay(
    image: np.ndarray, labels: np.ndarray, entries: list[LegendEntry], vocabulary_size: int
) -> Image.Image:
    """image [H, W, 3] uint8 and labels [H, W] -> RGB picture: the blend (enlarged by an integer factor
    when the short side is under MIN_PICTURE_SIDE) with region borders and the names of the classes whose
    largest region is wide enough to hold text, and a legend panel listing `entries` (colour swatch,
    name, pixel share) under a title "<n> of <C> classes"."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and label map {labels.shape} differ in size")
    scale = -(-MIN_PICTURE_SIDE // min(labels.shape))  # ceil
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
        labels = labels.repeat(scale, axis=0).repeat(scale, axis=1)
    blended = blend(image, labels, vocabulary_size)
    height, width = labels.shape

    font_size = max(14, min(28, height // 24))
    font = legend_font(font_size)
    margin, row = font_size, round(font_size * 1.6)
    title = f"{len(entries)} of {vocabulary_size} classes"
    names = [short_name(e.name) for e in entries]
    shares = [f"{100 * e.share:.1f}%" if e.share >= 0.0005 else "<0.1%" for e in entries]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        return round(measure.textlength(text, font=font))

    name_width = max([text_width(n) for n in names], default=0)
    share_width = max([text_width(s) for s in shares], default=0)
    swatch = font_size
    rows_width = swatch + margin // 2 + name_width + margin + share_width
    panel_width = 2 * margin + max(text_width(title), rows_width)
    panel_height = 2 * margin + row * (len(entries) + 1)

    canvas = Image.new("RGB", (width + panel_width, max(height, panel_height)), (255, 255, 255))
    canvas.paste(Image.fromarray(blended), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for entry in entries:
        x, y, room = name_anchor(labels == entry.index)
        if room >= font_size:
            name = short_name(entry.name)
            half = text_width(name) // 2 + 2
            x = min(max(x, half), width - half)  # the whole name stays on the picture
            draw.text((x, y), name, fill=(255, 255, 255), font=font, anchor="mm",
                      stroke_width=max(1, font_size // 8), stroke_fill=(0, 0, 0))
    left, top = width + margin, margin
    draw.text((left, top), title, fill=(0, 0, 0), font=font)
    name_left, share_right = left + swatch + margin // 2, width + panel_width - margin
    for i, (entry, name, share) in enumerate(zip(entries, names, shares, strict=True)):
        y = top + row * (i + 1)
        middle = y + swatch // 2
        draw.rectangle([left, y, left + swatch - 1, y + swatch - 1], fill=entry.color, outline=BORDER_COLOR)
        draw.text((name_left, middle), name, fill=(0, 0, 0), font=font, anchor="lm")
        draw.text((share_right, middle), share, fill=(60, 60, 60), font=font, anchor="rm")
    return canvas
