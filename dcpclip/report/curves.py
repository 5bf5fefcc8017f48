"""Training curves as DVCLive writes them: `runs/<profile>/<arch>/<variant>/seed<k>/dvclive/plots/metrics/
<metric>.tsv`, tab-separated with columns `step` and the metric's last name component. A run that logged
nothing, or a profile never trained, simply contributes no rows."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

CURVE_COLUMNS = {"variant": str, "seed": int, "metric": str, "step": int, "value": float}
_SEED_DIR = re.compile(r"seed(\d+)")


def load_training_curves(runs_dir: str | os.PathLike, profile: str) -> pd.DataFrame:
    """One row per logged step: variant, seed, metric (path under plots/metrics, no suffix), step, value."""
    frames = []
    for path in sorted(Path(runs_dir, profile).glob("*/*/seed*/dvclive/plots/metrics/**/*.tsv")):
        metrics_dir = next(p for p in path.parents if p.name == "metrics")
        run = metrics_dir.parents[2]  # .../<arch>/<variant>/seed<k>
        seed = _SEED_DIR.fullmatch(run.name)
        if seed is None:
            continue
        table = pd.read_csv(path, sep="\t")
        if "step" not in table.columns or len(table.columns) < 2:
            raise ValueError(
                f"{path}: expected DVCLive columns 'step' and a metric, got {list(table.columns)}")
        frames.append(pd.DataFrame({
            "variant": run.parent.name,
            "seed": int(seed.group(1)),
            "metric": path.relative_to(metrics_dir).with_suffix("").as_posix(),
            "step": table["step"].astype(int),
            "value": table[table.columns[-1]].astype(float),
        }))
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in CURVE_COLUMNS.items()})
    return pd.concat(frames, ignore_index=True)[list(CURVE_COLUMNS)]
