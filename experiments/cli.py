"""The command-line shape every entry point shares: Hydra overrides as positional arguments, and
`--params params.yaml` to start from the pipeline's parameters (what `dvc.yaml` stages pass), and
`--print-config` to print the resolved config that would run and exit. How they fail:
`experiments.failures`."""

from __future__ import annotations

import argparse

import yaml

from dcpclip.config_schema import to_dict
from experiments.compose import compose_config
from experiments.params_file import pipeline_overrides


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=paper variant=no_dual seed=1")
    parser.add_argument("--params", metavar="FILE",
                        help="start from a pipeline parameter file (params.yaml: experiments/params_file.py)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (every key, defaults filled in) as YAML and exit")


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides of the command line; with `--print-config`, prints their config and exits 0."""
    base = pipeline_overrides(args.params) if args.params else []
    overrides = [*base, *args.overrides]
    if args.print_config:
        cfg = compose_config(overrides)
        printed = {"variant": cfg.variant, **to_dict(cfg)}
        print("# resolved config; `variant` is read off head (compose it with variant=..., not set)\n"
              + yaml.safe_dump(printed, sort_keys=False), end="")
        raise SystemExit(0)
    return overrides


def data_stage_arguments(argv: list[str] | None, description: str, datasets: list[str]):
    """The command line of the fetch and prepare stages -> (the data config, the datasets to process:
    `--datasets`, or the training set and the benchmarks)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_override_arguments(parser)
    parser.add_argument("--datasets", nargs="+", choices=datasets,
                        help="default: data.train_dataset and data.benchmarks")
    args = parser.parse_args(argv)
    cfg = compose_config(overrides_from_args(args)).data
    return cfg, args.datasets or [cfg.train_dataset, *cfg.benchmarks]
