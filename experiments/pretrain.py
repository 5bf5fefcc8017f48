"""Provide the CLIP weights the profile trains from: `python -m experiments.pretrain [--params params.yaml]
[hydra overrides...]`.

With `pretrain.enabled` (the offline profile) this pre-trains the random-init tiny CLIP on the training
set and exports it to `<pretrain.dir>/clip.pt` (`dcpclip.engine.pretrain`; skipped when the export
matches the config, resumed when interrupted, curves in `<pretrain.dir>/run/dvclive`). Otherwise (the
paper profile) the weights are `backbone.pretrained` (open_clip downloads OpenAI's at first use) and only
`<pretrain.dir>/clip.json` is written, saying so. Either way clip.json is the pipeline stage's record.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from dcpclip import paths
from dcpclip.atomic import write_text
from dcpclip.config import ExperimentConfig
from dcpclip.engine.pretrain import RECORD_KIND, pretrain_clip, pretrain_status
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed
from experiments.live_metrics import DVCLiveSink

# errors whose message says what to do: shown without a traceback


def external_weights_record(cfg: ExperimentConfig) -> dict:
    return {"kind": RECORD_KIND, "arch": cfg.backbone.arch, "pretrained": cfg.backbone.pretrained,
            "pretrained_here": False}


def provide(cfg: ExperimentConfig, progress: bool) -> str:
    """Make the profile's CLIP weights available; returns a line saying what was done."""
    record_path = paths.pretrained_clip_record_path(cfg)
    if not cfg.pretrain.enabled:
        record = external_weights_record(cfg)
        write_text(record_path, json.dumps(record, indent=2) + "\n")
        return f"pretrain: none; {cfg.backbone.arch} weights {cfg.backbone.pretrained!r} (noted in {record_path})"
    status = pretrain_status(cfg)
    shown = "holds a run of another identity (config or code): retraining from scratch" if status == "mismatch" \
        else status
    print(f"pretrain {paths.pretrain_run_dir(cfg)}: {shown}", flush=True)
    result = pretrain_clip(cfg, sink=DVCLiveSink(paths.pretrain_run_dir(cfg) / "dvclive"), progress=progress)
    speed = f", {result.steps_per_second:.2f} steps/s" if result.seconds else ""
    return f"pretrain: {cfg.backbone.pretrained} ({result.status}, {result.step} steps{speed})"


@entry_point("experiments.pretrain")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_override_arguments(parser)
    args = parser.parse_args(argv)
    rerun = shlex.join(["python", "-m", "experiments.pretrain", *(argv if argv is not None else sys.argv[1:])])
    try:
        cfg = compose_config(overrides_from_args(args))
        print(provide(cfg, progress=sys.stderr.isatty()), flush=True)
    except Exception as err:
        return failed(err, rerun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
