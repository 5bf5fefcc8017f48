"""Stage `fetch`: download (or, for `data=synthetic`, generate and then fetch) and verify the files of the
training set and the benchmarks. One line per dataset.

    python -m experiments.fetch                          # synthetic data (offline profile)
    python -m experiments.fetch profile=paper data.mirror=/srv/datasets --datasets a150 pas20
"""

from __future__ import annotations

import argparse

from dcpclip.data.fetch import fetch_dataset, registry_for
from dcpclip.data.sources import DATASET_SOURCES
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
        choices=list(DATASET_SOURCES),
        help="default: data.train_dataset and data.benchmarks",
    )
    args = parser.parse_args(argv)
    cfg = compose_config(overrides_from_args(args)).data
    registry = registry_for(cfg)
    for dataset in args.datasets or [cfg.train_dataset, *cfg.benchmarks]:
        fetched = fetch_dataset(dataset, cfg, registry=registry)
        size = sum(f.path.stat().st_size for f in fetched.values())
        where = f"{cfg.raw_root} ({registry.origin})"
        print(f"{dataset}: {len(fetched)} files verified, {size / 2**20:.1f} MiB in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
