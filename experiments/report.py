"""Stage `report`: the records under results/ (with the evaluation pass's prediction samples beside them,
the DVCLive training curves under runs/, the CLIP weights' records models/<profile>/<arch>/clip.json) ->
reports/README.md and reports/figures/*.png for one profile. Reads nothing else."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dcpclip.prediction_samples import load_sample_sets
from dcpclip.profiles import EVAL_PROFILES
from dcpclip.records import load_records
from dcpclip.report.curves import load_training_curves
from dcpclip.report.render import ReportSettings, render_report, write_report
from experiments.failures import entry_point


@entry_point("experiments.report")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=EVAL_PROFILES, default="offline")
    parser.add_argument("--results", default="results", help="folder holding eval/ and flops/ records")
    parser.add_argument("--runs", default="runs", help="run folders with DVCLive curves (may be absent)")
    parser.add_argument("--models", default="models", help="the pretrain stage's output (may be absent)")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--worst-classes", type=int, default=ReportSettings.worst_classes)
    args = parser.parse_args(argv)
    settings = ReportSettings(profile=args.profile, worst_classes=args.worst_classes)
    curves = load_training_curves(args.runs, args.profile)
    weights = [json.loads(p.read_text()) for p in sorted(Path(args.models, args.profile).glob("*/clip.json"))]
    samples = load_sample_sets(args.results, args.profile)
    report = render_report(load_records(args.results), curves, settings, weights, samples)
    path = write_report(report, args.out)
    print(f"report: {args.profile} profile -> {path} and {len(report.figures)} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
