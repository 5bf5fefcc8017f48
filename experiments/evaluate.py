"""Evaluate one run (a trained variant and seed, or the training-free zero_shot) on benchmarks, writing
one JSON record per benchmark (`dcpclip.paths.eval_record_path`).

    python -m experiments.evaluate variant=no_dual seed=0 "data.benchmarks=[a150,pc59]"

A record whose evaluation fingerprint (trained weights + inference settings) matches is kept as is, so a
rerun evaluates only what changed. A trained variant whose run is not finished is an error that says how
to train it.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from dcpclip.data.specs import SPECS
from dcpclip.engine.evaluate import evaluate_run
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed


def commands(overrides: list[str]) -> tuple[str, str]:
    """(this evaluation's command, recorded in its records; the training command of the same run)."""
    return tuple(shlex.join(["python", "-m", module, *overrides])
                 for module in ("experiments.evaluate", "experiments.train"))


def evaluate_job(overrides: list[str]) -> dict:
    """One evaluation for the fan-out (raises on failure)."""
    return evaluate_run(compose_config(overrides), *commands(overrides))


@entry_point("experiments.evaluate")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_override_arguments(parser)
    overrides = overrides_from_args(parser.parse_args(argv))
    command, train_command = commands(overrides)
    try:
        cfg = compose_config(overrides)
        outcome = evaluate_run(cfg, command, train_command, progress=sys.stderr.isatty())
    except Exception as err:
        return failed(err, command)
    for key, value in outcome.items():
        shown = value if isinstance(value, str) else f"mIoU {value:.2f}%"
        print(f"evaluate {cfg.variant} seed{cfg.seed} {SPECS[key].title}: {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
