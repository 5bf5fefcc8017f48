"""Train one run: `python -m experiments.train [hydra overrides...]`, e.g.
`python -m experiments.train variant=no_dual seed=1 train.iterations=100`.

The run goes to `dcpclip.paths.run_dir(cfg)`: a finished run (same training config and code) is skipped,
an interrupted one resumes exactly where its last checkpoint stopped, a run folder made with another
training identity (config or code) is discarded, with a warning naming what differs, and trained from
scratch. Training curves (loss terms, learning rates, gradient norm) are written with DVCLive to
<run_dir>/dvclive (no dvc.yaml, no git or DVC experiment side effects).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from dcpclip.config import ExperimentConfig
from dcpclip.engine.checkpoint import checkpoint_identity, run_status
from dcpclip.engine.segmenter_training import train_experiment
from dcpclip.paths import run_dir, training_fingerprint
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed
from experiments.live_metrics import DVCLiveSink


def train_job(overrides: list[str]) -> dict:
    """Train (or skip, or resume) the run of `overrides`; the fan-out calls this. Raises on failure."""
    return train(compose_config(overrides), progress=False)


def train(cfg: ExperimentConfig, progress: bool) -> dict:
    folder = run_dir(cfg)
    if not cfg.trains:
        return {"status": "training-free", "run_dir": str(folder)}
    result = train_experiment(cfg, sink=DVCLiveSink(folder / "dvclive"), progress=progress)
    return {
        "status": result.status,
        "run_dir": str(result.run_dir),
        "fingerprint": result.fingerprint,
        "step": result.step,
        "steps_per_second": result.steps_per_second,
    }


def describe_start(cfg: ExperimentConfig) -> str:
    folder, iterations = run_dir(cfg), cfg.train.iterations
    if not cfg.trains:
        return f"train {folder}: variant {cfg.variant} is training-free, nothing to train"
    status = run_status(folder, training_fingerprint(cfg))
    if status == "resumable":
        return f"train {folder}: resuming from step {checkpoint_identity(folder)[2]} of {iterations}"
    return {
        "fresh": f"train {folder}: {iterations} steps from scratch",
        "done": f"train {folder}: already trained, skipping",
        "mismatch": f"train {folder}: holds a run of another training identity (config or code): "
                    f"discarding it, {iterations} steps from scratch",
    }[status]


@entry_point("experiments.train")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_override_arguments(parser)
    overrides = overrides_from_args(parser.parse_args(argv))
    rerun = shlex.join(["python", "-m", "experiments.train", *overrides])
    try:
        cfg = compose_config(overrides)
        print(describe_start(cfg), flush=True)
        outcome = train(cfg, progress=sys.stderr.isatty())
    except Exception as err:
        return failed(err, rerun)
    if outcome["status"] in ("trained", "resumed"):
        print(f"trained {outcome['run_dir']}: {outcome['step']} steps ({outcome['status']}), "
              f"{outcome['steps_per_second']:.2f} steps/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
