"""Stage `train`: train every variant x seed of `grid` as parallel Ray Tune trials, one run folder each.

A finished run with the same training fingerprint is skipped, an interrupted one resumes from its
checkpoint, a training-free variant (zero_shot) has nothing to train. So after a crash, or after changing
one variant's config, a rerun trains only what changed.

    python -m experiments.train_all --params params.yaml        # what `dvc repro` runs
    python -m experiments.train_all profile=paper "grid.seeds=[0,1,2]"
"""

from __future__ import annotations

import sys

from dcpclip import paths
from dcpclip.data.specs import SPECS
from dcpclip.engine.checkpoint import run_status
from dcpclip.model.config import carried_classes
from dcpclip.model.variants import variant_override, variant_trains
from experiments.compose import compose_config, compose_variant
from experiments.failures import entry_point
from experiments.fanout import Job, reference, stage_main
from experiments.train import train_job


def training_jobs(overrides: list[str]) -> tuple[list[Job], list[bool]]:
    """One job per trained variant x seed, and whether each still has to run."""
    base = compose_config(overrides)
    jobs, pending = [], []
    for variant in base.grid.variants:
        if not variant_trains(variant):
            continue
        for seed in base.grid.seeds:
            job_overrides = (*overrides, variant_override(variant), f"seed={seed}")
            cfg = compose_variant([*overrides, f"seed={seed}"], variant)
            cost = carried_classes(cfg.head, SPECS[cfg.data.train_dataset].num_prompts)
            jobs.append(Job(f"{variant} seed{seed}", reference(train_job), job_overrides, str(paths.run_dir(cfg)),
                            cost))
            pending.append(run_status(paths.run_dir(cfg), paths.training_fingerprint(cfg)) != "done")
    return jobs, pending


@entry_point("experiments.train_all")
def main(argv: list[str]) -> int:
    return stage_main("train", __doc__.splitlines()[0], training_jobs, argv)


if __name__ == "__main__":
    sys.exit(main())
