"""The cost of a whole run before it is launched, from the records: each variant's training steps x the
GMACs of one step (train-step records) and its evaluations x the GMACs per image (FLOP records) over the
full validation splits, in PFLOP, and in GPU-hours as a function of the device's effective rate R (no rate
is assumed: utilisation differs by device, precision and data pipeline by more than an order of
magnitude). The same arithmetic as `experiments.estimate`, which counts the composed config afresh and
can measure the rate."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dcpclip.data.specs import SPECS
from dcpclip.records import BENCHMARK_KEYS
from dcpclip.report.tables import GAP, markdown_table, select

PFLOP_PER_GMAC = 2e-6  # 2 FLOPs per multiply-add


def split_images() -> dict[str, int]:
    """{benchmark: images of its whole validation split} (the protocol's sizes)."""
    return {key: SPECS[key].expected_images[0] for key in BENCHMARK_KEYS}


def _value(rows: pd.DataFrame, variant: str, metric: str, benchmark: str | None = None) -> float | None:
    rows = rows[(rows["variant"] == variant) & (rows["metric"] == metric)]
    if benchmark is not None:
        rows = rows[rows["benchmark"] == benchmark]
    return float(rows["value"].iloc[0]) if len(rows) else None


def evaluate_pflop(flops: pd.DataFrame, variant: str, seeds: float) -> float | None:
    """PFLOP of `variant`'s evaluations over the full splits from its FLOP rows; None when one is missing."""
    per_image = {key: _value(flops, variant, "gmacs_mean", key) for key in BENCHMARK_KEYS}
    if any(v is None for v in per_image.values()):
        return None
    return seeds * sum(split_images()[key] * gmacs for key, gmacs in per_image.items()) * PFLOP_PER_GMAC


def hours_at_rate(pflop: float) -> str:
    """GPU-hours at R effective TFLOP/s, as "<hours x R> / R"."""
    return f"{pflop * 1e3 / 3600:.1f} / R"


def run_cost_table(summary: pd.DataFrame, profile: str, arch: str, variants: Sequence[str]) -> str:
    """One row per variant with a train-step record, and the total (shown only when every cell is known)."""
    steps = select(summary, kind="train_step", profile=profile, arch=arch)
    flops = select(summary, kind="flops", profile=profile, arch=arch)
    rows, totals = [], []
    for variant in variants:
        step, iterations, seeds = (_value(steps, variant, m) for m in ("step_gmacs", "iterations", "seeds"))
        if step is None:
            continue
        train = seeds * iterations * step * PFLOP_PER_GMAC
        evaluate = evaluate_pflop(flops, variant, seeds)
        runs = f"{seeds:.0f} x {iterations:.0f} steps x {step:.1f} GMACs" if step else "training-free"
        cells = [train, evaluate, None if evaluate is None else train + evaluate]
        rows.append([f"`{variant}`", runs, *(GAP if c is None else f"{c:.1f}" for c in cells),
                     GAP if cells[2] is None else hours_at_rate(cells[2])])
        totals.append(cells[2])
    if rows and all(t is not None for t in totals):
        rows.append(["**total**", "", "", "", f"**{sum(totals):.1f}**", f"**{hours_at_rate(sum(totals))}**"])
    headers = ["variant", "training: seeds x steps x GMACs per step", "train PFLOP", "evaluate PFLOP",
               "total PFLOP", "GPU-hours at R TFLOP/s"]
    return markdown_table(headers, rows, "ll" + "r" * 4)


def evaluation_work() -> str:
    images = split_images()
    listed = ", ".join(f"{SPECS[key].title} {n}" for key, n in images.items())
    return f"{sum(images.values())} validation images per seed ({listed})"
