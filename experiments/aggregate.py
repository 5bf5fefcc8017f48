"""Stage `aggregate`: every record under results/ -> one tidy table (results/summary.csv) and the DVC
metrics file (results/metrics.json: mIoU per profile, variant and benchmark)."""

from __future__ import annotations

import argparse

from dcpclip.records import load_records
from dcpclip.report.aggregate import write_aggregate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results", help="folder holding eval/ and flops/ records")
    parser.add_argument("--summary", default="results/summary.csv")
    parser.add_argument("--metrics", default="results/metrics.json")
    args = parser.parse_args(argv)
    records = load_records(args.results)
    summary = write_aggregate(records, args.summary, args.metrics)
    print(f"aggregate: {len(records)} records -> {len(summary)} rows in {args.summary}, "
          f"mIoU in {args.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
