"""Stage `aggregate`: every record under results/ -> one tidy table (results/summary.csv), the DVC
metrics (results/metrics/<profile>/<variant>.json: mIoU per benchmark, so `dvc metrics show` prints a
variant x benchmark table), and the training-loss curves of the profile's runs as DVC plot data
(results/curves/<profile>/<variant>_seed<k>.tsv, `dvc plots show`)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dcpclip.atomic import write_text
from dcpclip.profiles import EVAL_PROFILES
from dcpclip.records import load_records
from dcpclip.report.aggregate import write_aggregate
from dcpclip.report.curves import load_training_curves
from experiments.failures import entry_point

CURVE_METRIC = "train/total"  # the total training loss, as the trainer logs it


def write_curves(runs: str | Path, profile: str, out: Path) -> int:
    """One TSV (step, loss) per run of `profile`; returns how many were written."""
    curves = load_training_curves(runs, profile)
    curves = curves[curves["metric"] == CURVE_METRIC]
    if out.exists():
        shutil.rmtree(out)
    for (variant, seed), run in curves.groupby(["variant", "seed"], sort=True):
        table = run.sort_values("step")[["step", "value"]].rename(columns={"value": "loss"})
        write_text(out / f"{variant}_seed{seed}.tsv", table.to_csv(sep="\t", index=False, lineterminator="\n"))
    return curves.groupby(["variant", "seed"]).ngroups


@entry_point("experiments.aggregate")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=EVAL_PROFILES, default="offline")
    parser.add_argument("--results", default="results", help="folder holding eval/ and flops/ records")
    parser.add_argument("--runs", default="runs", help="run folders with DVCLive curves (may be absent)")
    parser.add_argument("--summary", default="results/summary.csv")
    parser.add_argument("--metrics", default="results/metrics", help="folder of per-variant metric files")
    parser.add_argument("--curves", default="results/curves", help="folder of per-run loss curves")
    args = parser.parse_args(argv)
    records = load_records(args.results)
    summary = write_aggregate(records, args.summary, args.metrics)
    runs = write_curves(args.runs, args.profile, Path(args.curves) / args.profile)
    print(f"aggregate: {len(records)} records -> {len(summary)} rows in {args.summary}; mIoU in "
          f"{args.metrics}/; {runs} loss curves in {args.curves}/{args.profile}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
