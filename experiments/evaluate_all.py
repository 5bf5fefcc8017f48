"""Stage `evaluate`: evaluate every variant x seed of `grid` on every benchmark of `data.benchmarks`, as
parallel Ray Tune trials (one per run x benchmark). A record whose evaluation fingerprint matches the
config is up to date and not redone.

    python -m experiments.evaluate_all --params params.yaml
"""

from __future__ import annotations

import sys

from dcpclip import paths
from dcpclip.data.specs import SPECS
from dcpclip.engine.evaluate import up_to_date
from dcpclip.model.config import carried_classes
from dcpclip.model.variants import variant_override
from experiments.compose import compose_config, compose_variant
from experiments.evaluate import evaluate_job
from experiments.failures import entry_point
from experiments.fanout import Job, reference, stage_main


def evaluation_jobs(overrides: list[str]) -> tuple[list[Job], list[bool]]:
    base = compose_config(overrides)
    jobs, pending = [], []
    for variant in base.grid.variants:
        for seed in base.grid.seeds:
            run = (*overrides, variant_override(variant), f"seed={seed}")
            cfg = compose_variant([*overrides, f"seed={seed}"], variant)
            for key in base.data.benchmarks:
                jobs.append(Job(f"{variant} seed{seed} {SPECS[key].title}", reference(evaluate_job),
                                (*run, f"data.benchmarks=[{key}]"), str(paths.eval_record_path(cfg, key)),
                                carried_classes(cfg.head, SPECS[key].num_prompts)))
                pending.append(not up_to_date(cfg, key))
    return jobs, pending


@entry_point("experiments.evaluate_all")
def main(argv: list[str]) -> int:
    return stage_main("evaluate", __doc__.splitlines()[0], evaluation_jobs, argv)


if __name__ == "__main__":
    sys.exit(main())
