"""The report's qualitative grid: for one benchmark, the first images the evaluation pass kept
(`dcpclip.prediction_samples`), one row each: the image, its ground truth, and the labels of `full` and
each trained ablation, coloured as `experiments.predict` colours them (`dcpclip.overlay.blend`). Only
samples whose fingerprint is that of an evaluation record in the report are drawn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dcpclip.data.specs import SPECS
from dcpclip.overlay import blend, class_color, short_name
from dcpclip.prediction_samples import SampleSet
from dcpclip.records import EvalRecord
from dcpclip.report.figures import DPI, png_bytes

QUALITATIVE_VARIANTS = ("full", "no_prune", "no_dual", "static_text")
QUALITATIVE_IMAGES = 3  # rows drawn per benchmark (at most what eval.sample_images kept)
LEGEND_CLASSES = 12  # the classes covering the most ground-truth pixels of the rows are named
CELL_WIDTH = 2.1  # inches


def current_sets(samples: Sequence[SampleSet], evals: Sequence[EvalRecord], benchmark: str) -> dict[str, SampleSet]:
    """variant -> the sample set of its lowest seed on `benchmark` that belongs to one of `evals` (same
    profile, variant, seed and config fingerprint)."""
    current = {(r.profile, r.variant, r.seed, r.benchmark, r.config_fingerprint) for r in evals}
    chosen: dict[str, SampleSet] = {}
    for s in sorted(samples, key=lambda s: s.seed):
        key = (s.profile, s.variant, s.seed, s.benchmark, s.config_fingerprint)
        if s.benchmark == benchmark and key in current and s.samples:
            chosen.setdefault(s.variant, s)
    return chosen


def grid(samples: Sequence[SampleSet], evals: Sequence[EvalRecord], benchmark: str) -> bytes | None:
    """The grid of `benchmark` as PNG bytes; None when no variant of QUALITATIVE_VARIANTS kept samples."""
    sets = current_sets(samples, evals, benchmark)
    shown = [v for v in QUALITATIVE_VARIANTS if v in sets]
    if not shown:
        return None
    first = sets[shown[0]]
    rows = first.samples[:QUALITATIVE_IMAGES]
    names, ignore = first.class_names, first.ignore_value
    by_id = {v: {s.id: s for s in sets[v].samples} for v in shown}
    columns = ["image", "ground truth", *QUALITATIVE_VARIANTS]
    height, width = rows[0].label.shape
    cell_height = CELL_WIDTH * height / width
    figure = Figure(figsize=(CELL_WIDTH * len(columns), cell_height * len(rows) + 1.2), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    pixels: Counter = Counter()
    for r, sample in enumerate(rows):
        unlabelled = sample.label == ignore
        labelled = sample.label[~unlabelled]
        pixels.update(dict(zip(*np.unique(labelled, return_counts=True), strict=True)))
        pictures = [sample.image, blend(sample.image, sample.label, len(names), unlabelled)]
        for variant in QUALITATIVE_VARIANTS:
            predicted = by_id.get(variant, {}).get(sample.id)
            pictures.append(None if predicted is None else blend(predicted.image, predicted.prediction, len(names)))
        for c, (ax, picture) in enumerate(zip(axes[r], pictures, strict=True)):
            ax.set_axis_off()
            if picture is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=9, color="grey",
                        transform=ax.transAxes)
            else:
                ax.imshow(picture, interpolation="nearest")
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        axes[r][0].text(-0.04, 0.5, sample.id, rotation=90, ha="right", va="center", fontsize=7,
                        transform=axes[r][0].transAxes)
    common = sorted(pixels, key=lambda i: (-pixels[i], i))[:LEGEND_CLASSES]
    handles = [Patch(facecolor=np.array(class_color(int(i))) / 255, edgecolor="black", label=short_name(names[i]))
               for i in common]
    figure.legend(handles=handles, loc="lower center", ncols=min(6, max(1, len(handles))), fontsize=7,
                  frameon=False)
    figure.suptitle(f"{SPECS[benchmark].title}: first {len(rows)} images", fontsize=11)
    figure.subplots_adjust(left=0.03, right=0.99, top=1 - 0.6 / figure.get_figheight(),
                           bottom=0.6 / figure.get_figheight(), wspace=0.04, hspace=0.04)
    return png_bytes(figure)
