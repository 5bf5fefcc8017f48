"""Count GMACs per image of one variant on each benchmark's vocabulary and of one training step, writing
one FLOP record per benchmark (`dcpclip.paths.flops_record_path`) and one train-step record
(`dcpclip.paths.train_step_record_path`); what is counted and how: `dcpclip.flop_records`.

    python -m experiments.flops variant=full            # the profile's own model
    python -m experiments.flops variant=full --paper-arch vitb16   # + the paper architecture, random init
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from dcpclip import paths
from dcpclip.config import ExperimentConfig
from dcpclip.data.specs import SPECS
from dcpclip.flop_records import count_records
from dcpclip.model.variants import variant_override
from dcpclip.profiles import PAPER_ARCH_PROFILE
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed


def paper_arch_config(cfg: ExperimentConfig, model_option: str) -> ExperimentConfig:
    """`cfg` with the paper profile's architecture and evaluation geometry, random init (no download)."""
    paper = compose_config(["profile=paper", f"model={model_option}", "backbone.pretrained=null",
                            variant_override(cfg.variant)])
    return dataclasses.replace(paper, data=cfg.data, results_dir=cfg.results_dir, cache_dir=cfg.cache_dir)


def count(cfg: ExperimentConfig, paper_arch: str | None, command: str) -> dict:
    outcome = {cfg.backbone.arch: count_records(cfg, cfg.profile, paths.flops_record_path, command)}
    if paper_arch:
        paper = paper_arch_config(cfg, paper_arch)
        outcome[f"{PAPER_ARCH_PROFILE} {paper.backbone.arch}"] = count_records(
            paper, PAPER_ARCH_PROFILE, paths.paper_arch_flops_record_path, command)
    return outcome


def flops_job(overrides: list[str]) -> dict:
    """Fan-out job: overrides may end with "--paper-arch=<model option>"."""
    paper_arch = next((o.split("=", 1)[1] for o in overrides if o.startswith("--paper-arch=")), None)
    overrides = [o for o in overrides if not o.startswith("--paper-arch=")]
    command = shlex.join(["python", "-m", "experiments.flops", *overrides,
                          *(["--paper-arch", paper_arch] if paper_arch else [])])
    return count(compose_config(overrides), paper_arch, command)


@entry_point("experiments.flops")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_override_arguments(parser)
    parser.add_argument("--paper-arch", metavar="MODEL",
                        help="also count this experiments/conf/model option at the paper geometry (e.g. vitb16)")
    args = parser.parse_args(argv)
    overrides = overrides_from_args(args)
    command = shlex.join(["python", "-m", "experiments.flops", *overrides,
                          *(["--paper-arch", args.paper_arch] if args.paper_arch else [])])
    try:
        cfg = compose_config(overrides)
        outcome = count(cfg, args.paper_arch, command)
    except Exception as err:
        return failed(err, command)
    for arch, counts in outcome.items():
        shown = ", ".join(f"{SPECS[k].title if k in SPECS else k} {v}" for k, v in counts.items())
        print(f"flops {cfg.variant} {arch} (GMACs per image; per training step): {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
