"""Stage `prepare`: convert the fetched files of the training set and the benchmarks into the prepared
layout (`dcpclip.data.specs`) by the protocol's rules, checking image counts. One line per dataset.

    python -m experiments.prepare                        # synthetic data (offline profile)
    python -m experiments.prepare profile=paper data.num_workers=8 --datasets pc59
"""

from __future__ import annotations

from pathlib import Path

from dcpclip.data.fetch import registry_for
from dcpclip.data.prepare import PREPARERS, prepare_dataset
from experiments.cli import data_stage_arguments
from experiments.failures import entry_point


@entry_point("experiments.prepare")
def main(argv: list[str]) -> int:
    cfg, datasets = data_stage_arguments(argv, __doc__, list(PREPARERS))
    registry = registry_for(cfg)
    for dataset in datasets:
        prepared = prepare_dataset(dataset, cfg, registry=registry)
        record = prepared.manifest
        counts = ", ".join(f"{n} {split}" for split, n in record["images"].items())
        state = "prepared" if prepared.redone else "up to date (same sources and code)"
        print(f"{dataset}: {state}, {counts} images, {record['num_classes']} classes -> {Path(cfg.root) / dataset}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
