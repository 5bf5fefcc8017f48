"""Train one run: `python -m experiments.train [hydra overrides...]`, e.g.
`python -m experiments.train variant=no_dual seed=1 train.iterations=100`.

The run goes to `dcpclip.paths.run_dir(cfg)`: a finished run (same training config) is skipped, an
interrupted one resumes exactly where its last checkpoint stopped, a run folder made with another training
config is refused. Training curves (loss terms, learning rates, gradient norm) are written with DVCLive to
<run_dir>/dvclive (no dvc.yaml, no git or DVC experiment side effects).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from dcpclip.atomic import write_text
from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import ConfigError
from dcpclip.data.errors import DataError
from dcpclip.engine.checkpoint import RunMismatchError, checkpoint_identity, run_status
from dcpclip.engine.trainer import train_experiment
from dcpclip.model.backbone import PretrainedWeightsUnavailable
from dcpclip.model.variants import resolve_variant
from dcpclip.paths import run_dir, training_fingerprint
from experiments.cli import failed
from experiments.compose import compose_config

EXPLAINED_ERRORS = (ConfigError, DataError, RunMismatchError, PretrainedWeightsUnavailable, FileNotFoundError)


class DVCLiveSink:
    """`dcpclip.engine.trainer.MetricsSink` writing DVCLive metric files; resume-aware."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.live = None

    def start(self, step: int) -> None:
        from dvclive import Live

        if step > 0:
            self.drop_after(step)
        self.live = Live(str(self.directory), resume=step > 0, save_dvc_exp=False, dvcyaml=False, report=None)

    def drop_after(self, step: int) -> None:
        """Remove rows an interrupted process logged after its last checkpoint (they are redone)."""
        for path in sorted((self.directory / "plots" / "metrics").rglob("*.tsv")):
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, delimiter="\t")
                fields, rows = reader.fieldnames, [r for r in reader if int(r["step"]) <= step]
            text = io.StringIO()
            writer = csv.DictWriter(text, fields, delimiter="\t", lineterminator=os.linesep)
            writer.writeheader()
            writer.writerows(rows)
            write_text(path, text.getvalue())

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None


def train_job(overrides: list[str]) -> dict:
    """Train (or skip, or resume) the run of `overrides`; the fan-out calls this. Raises on failure."""
    return train(compose_config(overrides), progress=False)


def train(cfg: ExperimentConfig, progress: bool) -> dict:
    folder = run_dir(cfg)
    if not resolve_variant(cfg.variant)[1]:
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
    if not resolve_variant(cfg.variant)[1]:
        return f"train {folder}: variant {cfg.variant} is training-free, nothing to train"
    status = run_status(folder, training_fingerprint(cfg))
    if status == "resumable":
        return f"train {folder}: resuming from step {checkpoint_identity(folder)[2]} of {iterations}"
    return {
        "fresh": f"train {folder}: {iterations} steps from scratch",
        "done": f"train {folder}: already trained, skipping",
        "mismatch": f"train {folder}: holds a run of another config",
    }[status]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. variant=no_dual seed=1")
    args = parser.parse_args(argv)
    rerun = shlex.join(["python", "-m", "experiments.train", *args.overrides])
    try:
        cfg = compose_config(args.overrides)
        print(describe_start(cfg), flush=True)
        outcome = train(cfg, progress=sys.stderr.isatty())
    except Exception as err:
        return failed(err, rerun, EXPLAINED_ERRORS)
    if outcome["status"] in ("trained", "resumed"):
        print(f"trained {outcome['run_dir']}: {outcome['step']} steps ({outcome['status']}), "
              f"{outcome['steps_per_second']:.2f} steps/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
