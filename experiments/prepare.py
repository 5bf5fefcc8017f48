"""Stage `prepare`: convert the fetched files of the training set and the benchmarks into the prepared
layout (`dcpclip.data.specs`) by the protocol's rules, checking image counts. One line per dataset.

    python -m experiments.prepare                        # synthetic data (offline profile)
    python -m experiments.prepare profile=paper data.num_workers=8 --datasets pc59
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcpclip.data.fetch import registry_for
from dcpclip.data.prepare import PREPARERS, prepare_dataset
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_override_arguments(parser)
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(PREPARERS),
        help="default: data.train_dataset and data.benchmarks",
    )
    args = parser.parse_args(argv)
    cfg = compose_config(overrides_from_args(args)).data
    registry = registry_for(cfg)
    for dataset in args.datasets or [cfg.train_dataset, *cfg.benchmarks]:
        record = prepare_dataset(dataset, cfg, registry=registry)
        counts = ", ".join(f"{n} {split}" for split, n in record["images"].items())
        print(f"{dataset}: {counts} images, {record['num_classes']} classes -> {Path(cfg.root) / dataset}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
