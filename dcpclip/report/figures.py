"""The report's figures as PNG bytes, drawn with seaborn on a bare matplotlib `Figure` (Agg canvas, no
pyplot state). Fixed size and dpi, no bootstrap (error bars are the std over seeds) and no "Software"
metadata, so the same table always gives byte-identical files. A figure without data is None."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dcpclip.data.specs import SPECS
from dcpclip.records import BENCHMARK_KEYS
from dcpclip.report.aggregate import seed_statistics

DPI = 100
PANEL_SIZE = (5.0, 3.6)  # inches per panel
TITLES = [SPECS[key].title for key in BENCHMARK_KEYS]
VOCABULARY_SIZES = sorted({SPECS[key].num_prompts for key in BENCHMARK_KEYS})
STYLE = {"font.family": "DejaVu Sans", "axes.titlesize": 10}


def palette(variants: Sequence[str]) -> dict[str, tuple]:
    """One colour per variant, fixed by its position in the report's variant list."""
    colours = sns.color_palette("colorblind", max(len(variants), 1))
    return dict(zip(variants, colours, strict=True))


def _draw(panels: int, draw, columns: int = 3) -> bytes:
    """Lay out `panels` axes, let `draw(axes)` fill them, and encode the figure as PNG."""
    columns = min(columns, panels)
    rows = -(-panels // columns)
    with matplotlib.rc_context(STYLE), sns.axes_style("whitegrid"), sns.plotting_context("notebook", 0.8):
        figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def miou_by_benchmark(summary: pd.DataFrame, profile: str, variants: Sequence[str]) -> bytes | None:
    """Grouped bars: mIoU per benchmark, one bar per variant, error bar = std over seeds."""
    rows = summary[(summary["profile"] == profile) & (summary["metric"] == "mIoU")]
    if rows.empty:
        return None
    rows = rows.assign(title=rows["benchmark"].map(lambda key: SPECS[key].title))
    present = [v for v in variants if v in set(rows["variant"])]

    def draw(axes):
        (ax,) = axes
        sns.barplot(rows, x="title", y="value", hue="variant", order=TITLES, hue_order=present,
                    palette=palette(variants), errorbar="sd", ax=ax)
        ax.set(xlabel="", ylabel="mIoU (%)", title=f"mIoU per benchmark ({profile} profile; bars: seed mean)")

    return _draw(1, draw)


def gmacs_vs_vocabulary(summary: pd.DataFrame, sources: Sequence[tuple[str, str]],
                        variants: Sequence[str]) -> bytes | None:
    """GMACs per image against the vocabulary size, one panel per (profile, arch) source."""
    stats = seed_statistics(summary, "gmacs_mean")
    panels = [(p, a) for p, a in sources if not stats[(stats["profile"] == p) & (stats["arch"] == a)].empty]
    if not panels:
        return None

    def draw(axes):
        for ax, (profile, arch) in zip(axes, panels, strict=True):
            rows = stats[(stats["profile"] == profile) & (stats["arch"] == arch)]
            sns.lineplot(rows, x="vocabulary", y="mean", hue="variant", palette=palette(variants),
                         hue_order=[v for v in variants if v in set(rows["variant"])], marker="o",
                         estimator="mean", errorbar=None, ax=ax)
            ax.set_xscale("log")
            ax.set_xticks(VOCABULARY_SIZES, [str(c) for c in VOCABULARY_SIZES])
            ax.minorticks_off()
            ax.set(xlabel="vocabulary size C (class names)", ylabel="GMACs per image",
                   title=f"{profile}: {arch}")

    return _draw(len(panels), draw)


def accuracy_vs_cost(summary: pd.DataFrame, profile: str, arch: str, variants: Sequence[str]) -> bytes | None:
    """mIoU (seed mean) against GMACs per image, one point per variant and benchmark."""
    miou = seed_statistics(summary, "mIoU", profile)
    cost = seed_statistics(summary, "gmacs_mean", profile)
    points = miou.merge(cost[cost["arch"] == arch], on=["variant", "benchmark"], suffixes=("_miou", "_gmacs"))
    if points.empty:
        return None
    points = points.assign(benchmark=points["benchmark"].map(lambda key: SPECS[key].title))

    def draw(axes):
        (ax,) = axes
        sns.scatterplot(points, x="mean_gmacs", y="mean_miou", hue="variant", style="benchmark", s=60,
                        hue_order=[v for v in variants if v in set(points["variant"])],
                        style_order=[t for t in TITLES if t in set(points["benchmark"])],
                        palette=palette(variants), ax=ax)
        ax.set(xlabel="GMACs per image", ylabel="mIoU (%)", title=f"accuracy vs cost ({profile}, {arch})")
        ax.legend(fontsize=7, ncols=2)

    return _draw(1, draw)


def training_curves(curves: pd.DataFrame, variants: Sequence[str]) -> bytes | None:
    """Each logged training loss term (`train/...`; learning rates are left out: the schedule is the
    config's) against the step, one line per run (variant colour, one line per seed)."""
    if curves.empty:
        return None
    curves = curves[curves["metric"].str.startswith("train/") & (curves["metric"] != "train/grad_norm")]
    if curves.empty:
        return None
    metrics = sorted(set(curves["metric"]), key=lambda m: (m != "train/total", m))
    colours = palette([*variants, *sorted(set(curves["variant"]) - set(variants))])

    def draw(axes):
        for i, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
            rows = curves[curves["metric"] == metric]
            sns.lineplot(rows, x="step", y="value", hue="variant", units="seed", estimator=None,
                         hue_order=[v for v in colours if v in set(rows["variant"])], palette=colours,
                         legend=i == 0, ax=ax)
            ax.set(xlabel="step", ylabel=metric, title=metric)

    return _draw(len(metrics), draw)
