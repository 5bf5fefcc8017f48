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
from dcpclip.report.aggregate import RECALL_AT_K, seed_statistics

DPI = 100
PANEL_SIZE = (5.0, 3.6)  # inches per panel
TITLES = [SPECS[key].title for key in BENCHMARK_KEYS]
VOCABULARY_SIZES = sorted({SPECS[key].num_prompts for key in BENCHMARK_KEYS})
STYLE = {"font.family": "DejaVu Sans", "axes.titlesize": 10}


def palette(variants: Sequence[str]) -> dict[str, tuple]:
    """One colour per variant, fixed by its position in the report's variant list."""
    colours = sns.color_palette("colorblind", max(len(variants), 1))
    return dict(zip(variants, colours, strict=True))


def _draw(panels: int, draw, columns: int = 3, figure_size: tuple[float, float] | None = None) -> bytes:
    """Lay out `panels` axes (in a figure of `figure_size` inches, default PANEL_SIZE per panel), let
    `draw(axes)` fill them, and encode the figure as PNG."""
    columns = min(columns, panels)
    rows = -(-panels // columns)
    size = figure_size or (PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows)
    with matplotlib.rc_context(STYLE), sns.axes_style("whitegrid"), sns.plotting_context("notebook", 0.8):
        figure = Figure(figsize=size, dpi=DPI)
        FigureCanvasAgg(figure)
        axes = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
        draw(axes)
        figure.tight_layout()
        return png_bytes(figure)


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG without the "Software" metadata (byte-identical for identical figures)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def delta_by_benchmark(summary: pd.DataFrame, profile: str, variants: Sequence[str],
                       reference: str = "full") -> bytes | None:
    """Grouped bars: each other variant's mIoU minus `reference`'s per benchmark (seed means), in points;
    below zero means the ablation costs accuracy there."""
    stats = seed_statistics(summary, "mIoU", profile)
    means = {(r.variant, r.benchmark): r.mean for r in stats.itertuples()}
    rows = pd.DataFrame([(v, SPECS[b].title, means[v, b] - means[reference, b])
                         for v in variants if v != reference for b in BENCHMARK_KEYS
                         if (v, b) in means and (reference, b) in means], columns=["variant", "title", "delta"])
    if rows.empty:
        return None
    present = [v for v in variants if v in set(rows["variant"])]

    def draw(axes):
        (ax,) = axes
        sns.barplot(rows, x="title", y="delta", hue="variant", order=TITLES, hue_order=present,
                    palette=palette(variants), errorbar=None, ax=ax)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(xlabel="", ylabel=f"mIoU − {reference} (points)",
               title=f"Difference from {reference} per benchmark ({profile} profile, seed means)")
        ax.legend(title="", fontsize=8, ncols=len(present))

    return _draw(1, draw, figure_size=(10.0, 4.0))


def recall_at_k(summary: pd.DataFrame, profile: str, variants: Sequence[str]) -> bytes | None:
    """One panel per benchmark: the pruner's recall (%) against K on a log axis, one line per pruning
    variant (seed means); the vocabulary size C marks where keeping K classes keeps them all."""
    rows = summary[(summary["profile"] == profile) & summary["metric"].str.startswith(RECALL_AT_K)]
    if rows.empty:
        return None
    rows = rows.assign(k=rows["metric"].str.removeprefix(RECALL_AT_K).astype(int))
    curves = rows.groupby(["variant", "benchmark", "vocabulary", "k"], sort=False)["value"].mean().reset_index()
    present = [v for v in variants if v in set(curves["variant"])]
    ks = sorted(set(curves["k"]))
    benchmarks = [b for b in BENCHMARK_KEYS if b in set(curves["benchmark"])]

    def draw(axes):
        for ax, benchmark in zip(axes, benchmarks, strict=True):
            panel = curves[curves["benchmark"] == benchmark]
            sns.lineplot(panel, x="k", y="value", hue="variant", hue_order=present, palette=palette(variants),
                         marker="o", estimator=None, legend=benchmark == benchmarks[0], ax=ax)
            vocabulary = SPECS[benchmark].num_prompts
            if vocabulary <= ks[-1]:
                ax.axvline(vocabulary, color="grey", linestyle=":", linewidth=1)
                ax.text(vocabulary, 4, " K = C", color="grey", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.minorticks_off()
            ax.set_ylim(0, 102)
            ax.set(xlabel="K (classes kept per view)", ylabel="recall (%)",
                   title=f"{SPECS[benchmark].title} (C={vocabulary})")

    return _draw(len(benchmarks), draw)


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
            present = [v for v in variants if v in set(rows["variant"])]
            # the pruning variants' lines lie on each other: markers and dashes tell them apart
            sns.lineplot(rows, x="vocabulary", y="mean", hue="variant", style="variant", palette=palette(variants),
                         hue_order=present, style_order=present, markers=True, markersize=7,
                         estimator="mean", errorbar=None, legend=ax is axes[0], ax=ax)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(VOCABULARY_SIZES, [str(c) for c in VOCABULARY_SIZES])
            ax.minorticks_off()
            ax.set(xlabel="vocabulary size C (class names, log scale)", ylabel="GMACs per image (log scale)",
                   title=f"{profile}: {arch}")

    return _draw(len(panels), draw)


def accuracy_vs_cost(summary: pd.DataFrame, profile: str, arch: str, variants: Sequence[str]) -> bytes | None:
    """One point per variant: its six-benchmark mean mIoU (seed means) against its mean GMACs per image
    over the same benchmarks, on the profile's own model (whose accuracy it is); only variants with both on
    all six."""
    miou = seed_statistics(summary, "mIoU", profile)
    cost = seed_statistics(summary, "gmacs_mean", profile)
    cost = cost[cost["arch"] == arch]
    points = []
    for variant in variants:
        accuracy = miou[miou["variant"] == variant].set_index("benchmark")["mean"]
        gmacs = cost[cost["variant"] == variant].set_index("benchmark")["mean"]
        if all(b in accuracy.index and b in gmacs.index for b in BENCHMARK_KEYS):
            points.append((variant, gmacs[list(BENCHMARK_KEYS)].mean(), accuracy[list(BENCHMARK_KEYS)].mean()))
    if not points:
        return None
    points = pd.DataFrame(points, columns=["variant", "gmacs", "miou"])

    def draw(axes):
        (ax,) = axes
        sns.scatterplot(points, x="gmacs", y="miou", hue="variant", hue_order=list(points["variant"]),
                        palette=palette(variants), s=90, legend=False, ax=ax)
        for row in points.itertuples():
            ax.annotate(row.variant, (row.gmacs, row.miou), textcoords="offset points", xytext=(6, 4), fontsize=9)
        ax.set_xscale("log")
        ax.set(xlabel="GMACs per image (mean over the six benchmarks, log scale)",
               ylabel="mIoU (%, six-benchmark mean)", title=f"Accuracy vs cost ({profile}, {arch})")

    return _draw(1, draw, figure_size=(6.5, 4.5))


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
