"""The paper profile at its own geometry, with only counts shrunk: the check to run before renting GPUs.

    python -m experiments.paper_smoke --workdir /tmp/paper-smoke            # every variant, ~20 min on 2 CPUs
    python -m experiments.paper_smoke --workdir /tmp/paper-smoke --variants full --summary smoke.json

Every stage runs as its own process, through the pipeline's own entry points, in --workdir (relative
paths of the config land there), on `profile=paper` with the overrides of `SHRINK`, which change counts
and nothing else: a few synthetic images in the real datasets' on-disk formats (480x640, the size of
COCO and ADE20K photos), fetched and prepared by the real code; a random-initialised ViT-B/16 (no
download; the geometry is the paper's); 2 training iterations per trained variant at crop 384, batch 4,
with the recipe's optimiser groups, schedule and DataLoader workers; sliding-window evaluation at short
side 640 (4 windows of 384, stride 256, plus the global view) of 1 image of every benchmark on its whole
vocabulary (C up to 847); the FLOP count on that image; `predict` on it; and the report from those
records. On CUDA the paper's AMP is on. Prints each stage's wall time and peak resident memory (its
process's maximum RSS), and writes them with the machine to --summary (JSON). Exit status 1 names the
failed stage and the log that has its output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dcpclip.atomic import write_text
from dcpclip.model.variants import variant_override, variant_trains
from experiments.failures import entry_point

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("full", "no_prune", "no_dual", "static_text", "zero_shot")
SHRINK = (
    "profile=paper", "data=synthetic", "backbone.pretrained=null",
    "data.synthetic.train_images=8", "data.synthetic.val_images=1", "data.synthetic.image_size=[480,640]",
    "data.num_workers=2", "train.iterations=2", "train.checkpoint_every=2", "train.log_every=1",
    "eval.max_images=1", "eval.flops_images=1",
)


@dataclass(frozen=True)
class StageRun:
    name: str
    wall_s: float
    peak_rss_mib: float


class StageFailed(RuntimeError):
    pass


def run_stage(name: str, argv: list[str], workdir: Path) -> StageRun:
    """Run `python -m <argv>` in `workdir` with its output in logs/<name>.log; its wall time and peak RSS."""
    log = workdir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    print(f"smoke: {name}: python -m {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", *argv], cwd=workdir, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone
    process.returncode = os.waitstatus_to_exitcode(status)
    run = StageRun(name, time.perf_counter() - start, usage.ru_maxrss / 1024)  # Linux: ru_maxrss in KiB
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise StageFailed(f"stage {name} exited with {process.returncode}; its output is in {log}:\n{tail}")
    print(f"smoke: {name}: {run.wall_s:.1f} s, peak RSS {run.peak_rss_mib:.0f} MiB", flush=True)
    return run


def stages(variants: list[str], overrides: list[str]) -> list[tuple[str, list[str]]]:
    """(name, module and arguments) of every stage, in pipeline order."""
    trained = [v for v in variants if variant_trains(v)]
    image = "data/paper/prepared/a150/images/val"  # the prepared A-150 folder: its one image
    return [
        ("fetch", ["experiments.fetch", *overrides]),
        ("prepare", ["experiments.prepare", *overrides]),
        *((f"train {v}", ["experiments.train", *overrides, variant_override(v)]) for v in trained),
        *((f"evaluate {v}", ["experiments.evaluate", *overrides, variant_override(v)]) for v in variants),
        *((f"flops {v}", ["experiments.flops", *overrides, variant_override(v)]) for v in variants),
        ("predict", ["experiments.predict", image, "--vocab", "a847", "--out", "predictions", *overrides,
                     f"variant={variants[0]}", *(["--zero-shot"] if not trained else [])]),
        ("aggregate", ["experiments.aggregate", "--profile", "paper"]),
        ("report", ["experiments.report", "--profile", "paper"]),
    ]


@entry_point("experiments.paper_smoke")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where data, runs, results and reports go")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--summary", type=Path, help="write the stages' wall times and peak RSS here (JSON)")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides (counts only, to stay a smoke)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    start, runs = time.perf_counter(), []
    try:
        for name, stage_argv in stages(args.variants, [*SHRINK, *args.overrides]):
            runs.append(run_stage(name, stage_argv, args.workdir))
    except StageFailed as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    peak = max(r.peak_rss_mib for r in runs)
    print(f"smoke: all {len(runs)} stages passed in {total:.0f} s; the largest peak RSS {peak:.0f} MiB", flush=True)
    if args.summary:
        import torch  # only now: a forked child's peak RSS starts at its parent's, so the parent stays small

        from dcpclip.environment import environment_stamp

        device = "cuda" if torch.cuda.is_available() else "cpu"
        summary = {"overrides": [*SHRINK, *args.overrides], "variants": args.variants, "wall_s": total,
                   "peak_rss_mib": peak, "stages": [asdict(r) for r in runs], "environment": environment_stamp(device)}
        write_text(args.summary, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
