"""Stage `flops`: count GMACs per image of every variant of `grid` on every benchmark's vocabulary, and of
one training step (one parallel Ray Tune trial per variant), plus the paper architecture named by
`count_paper_arch`. Records
that match the config are up to date and not recounted.

    python -m experiments.flops_all --params params.yaml
"""

from __future__ import annotations

import sys

from dcpclip import paths
from dcpclip.data.specs import SPECS
from dcpclip.flop_records import stale_counts
from dcpclip.model.config import carried_classes
from dcpclip.model.variants import variant_override
from dcpclip.profiles import PAPER_ARCH_PROFILE
from experiments.compose import compose_config, compose_variant
from experiments.failures import entry_point
from experiments.fanout import Job, reference, stage_main
from experiments.flops import flops_job, paper_arch_config


def flops_jobs(overrides: list[str]) -> tuple[list[Job], list[bool]]:
    base = compose_config(overrides)
    jobs, pending = [], []
    for variant in base.grid.variants:
        cfg = compose_variant(overrides, variant)
        stale = stale_counts(cfg, cfg.profile, paths.flops_record_path)
        extra = ()
        if base.count_paper_arch:
            extra = (f"--paper-arch={base.count_paper_arch}",)
            paper = paper_arch_config(cfg, base.count_paper_arch)
            stale += stale_counts(paper, PAPER_ARCH_PROFILE, paths.paper_arch_flops_record_path)
        job_overrides = (*overrides, variant_override(variant), *extra)
        where = paths.flops_record_path(cfg, "<benchmark>").parent  # its records; paper-arch ones beside
        cost = carried_classes(cfg.head, max(SPECS[key].num_prompts for key in cfg.data.benchmarks))
        jobs.append(Job(variant, reference(flops_job), job_overrides, str(where), cost))
        pending.append(bool(stale))
    return jobs, pending


@entry_point("experiments.flops_all")
def main(argv: list[str]) -> int:
    return stage_main("flops", __doc__.splitlines()[0], flops_jobs, argv, uses_gpu=False)  # fvcore traces on CPU


if __name__ == "__main__":
    sys.exit(main())
