"""Stage `fetch`: download (or, for `data=synthetic`, generate and then fetch) and verify the files of the
training set and the benchmarks. One line per dataset.

    python -m experiments.fetch                          # synthetic data (offline profile)
    python -m experiments.fetch profile=paper data.mirror=/srv/datasets --datasets a150 pas20
"""

from __future__ import annotations

from dcpclip.data.fetch import fetch_dataset, registry_for
from dcpclip.data.sources import DATASET_SOURCES
from experiments.cli import data_stage_arguments
from experiments.failures import entry_point


@entry_point("experiments.fetch")
def main(argv: list[str]) -> int:
    cfg, datasets = data_stage_arguments(argv, __doc__, list(DATASET_SOURCES))
    registry = registry_for(cfg)
    for dataset in datasets:
        fetched = fetch_dataset(dataset, cfg, registry=registry)
        size = sum(f.path.stat().st_size for f in fetched.values())
        where = f"{cfg.raw_root} ({registry.origin})"
        print(f"{dataset}: {len(fetched)} files verified, {size / 2**20:.1f} MiB in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
