"""Training the four trained variants: the Ray-parallel train stage vs one run after another in one process,
measured in one run on the same data.

Synthetic COCO-Stuff is fetched and prepared into a temporary folder by the real `experiments.fetch` /
`experiments.prepare` stages. Every arm trains `--variants` (default full, no_prune, no_dual, static_text)
into its own fresh runs folder with the offline profile's settings (tiny CLIP, batch 4, 64-pixel crops,
`train.threads` 1, `grid.cpus_per_trial` 1) for `--iterations` steps (default 100; the profile trains 150):
- sequential: `experiments.train.train` per variant in this process, with `train.threads` = each value of
  `--sequential-threads` (default 1, the stage's per-run setting; add 2 for one process using both cores,
  which on a loaded machine stalls: 828 s instead of 51 s once here, as OpenMP threads wait for each other);
- ray: `experiments.train_all.main`, the train stage itself: one Ray Tune trial per variant, as many at a time
  as the CPUs allow. Ray starts its workers at nice 15 unless `RAY_worker_niceness` says otherwise, so on a
shared machine the trials yield to every other process; the header says which niceness applied.
Warm-up: both arms first train every variant for 1 step into scratch folders; the Ray warm-up starts the
local Ray instance (its wall time, printed, is the stage's cold-start cost) and runs the 1-step stage once
more with Ray running (the stage's fixed cost when warm); the timed Ray arm reuses that instance.
Each arm's wall time is the median over `--repeats` rounds (default 1: an arm takes minutes); a round runs
the arms one after the other, so that load from other processes hits them alike.

    python benchmarks/parallel_training.py [--iterations 100] [--sequential-threads 1 2] [--repeats 1]
    RAY_worker_niceness=0 python benchmarks/parallel_training.py      # trials at the driver's priority
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from dcpclip import paths
from dcpclip.engine.checkpoint import run_status
from dcpclip.model.variants import variant_override, variant_trains
from experiments import fetch, prepare, train_all
from experiments.compose import compose_config
from experiments.train import train

TRAINED_VARIANTS = ("full", "no_prune", "no_dual", "static_text")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(TRAINED_VARIANTS))
    parser.add_argument("--iterations", type=int, default=100, help="steps per run (offline profile: 150)")
    parser.add_argument(
        "--sequential-threads",
        type=int,
        nargs="+",
        default=[1],
        help="train.threads of the sequential arms (default 1)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all arms (median reported)")
    args = parser.parse_args(argv)
    untrained = [v for v in args.variants if not variant_trains(v)]
    if untrained:
        parser.error(f"--variants: {', '.join(untrained)} trains nothing")
    if args.iterations < 1 or args.repeats < 1 or min(args.sequential_threads) < 1:
        parser.error("--iterations, --repeats and --sequential-threads must be >= 1")
    return args


def prepare_training_set(folder: Path) -> list[str]:
    """Fetch and prepare the synthetic COCO-Stuff under `folder`; returns the data overrides."""
    data = [f"data.raw_root={folder}/raw", f"data.root={folder}/prepared"]
    for stage in (fetch, prepare):
        if stage.main([*data, "--datasets", "coco_stuff"]) != 0:
            raise RuntimeError(f"{stage.__name__} failed for the synthetic COCO-Stuff")
    return data


def stage_overrides(data: list[str], runs: Path, variants: list[str], iterations: int) -> list[str]:
    return [
        *data,
        f"runs_dir={runs}",
        f"results_dir={runs}/results",
        f"cache_dir={runs}/cache",
        f"train.iterations={iterations}",
        "pretrain=none",  # the tiny CLIP at random init: the speed of training does not depend on its weights
        f"grid.variants=[{','.join(variants)}]",
    ]


def check_trained(overrides: list[str], variants: list[str]) -> None:
    for variant in variants:
        cfg = compose_config([*overrides, variant_override(variant)])
        status = run_status(paths.run_dir(cfg), paths.training_fingerprint(cfg))
        if status != "done":
            raise RuntimeError(f"{paths.run_dir(cfg)}: run is {status} after its arm, expected done")


def sequential(overrides: list[str], variants: list[str], threads: int) -> dict[str, float]:
    """Train each variant in this process; returns seconds per variant."""
    seconds = {}
    for variant in variants:
        began = time.perf_counter()
        train(compose_config([*overrides, variant_override(variant), f"train.threads={threads}"]), progress=False)
        seconds[variant] = time.perf_counter() - began
    check_trained(overrides, variants)
    return seconds


def ray_stage(overrides: list[str], variants: list[str]) -> float:
    began = time.perf_counter()
    code = train_all.main(overrides)
    seconds = time.perf_counter() - began
    if code != 0:
        raise RuntimeError(f"experiments.train_all failed (exit {code}) with overrides {overrides}")
    check_trained(overrides, variants)
    return seconds


def measure(args: argparse.Namespace, folder: Path) -> dict:
    data = prepare_training_set(folder)
    variants, threads = list(args.variants), torch.get_num_threads()

    def overrides(name: str, iterations: int = args.iterations) -> list[str]:
        return stage_overrides(data, folder / name, variants, iterations)

    began = time.perf_counter()
    sequential(overrides("warm-up-sequential", 1), variants, 1)
    warm_sequential = time.perf_counter() - began
    warm_ray = ray_stage(overrides("warm-up-ray", 1), variants)
    warm_ray_again = ray_stage(overrides("warm-up-ray-again", 1), variants)  # Ray already running

    arms = [f"sequential-{t}" for t in args.sequential_threads] + ["ray"]
    walls: dict[str, list[float]] = {arm: [] for arm in arms}
    per_variant: dict[str, dict[str, float]] = {}
    for round_ in range(args.repeats):
        for arm in arms:
            runs = overrides(f"{arm}-round{round_}")
            if arm == "ray":
                walls[arm].append(ray_stage(runs, variants))
                continue
            per_variant[arm] = sequential(runs, variants, int(arm.split("-")[1]))
            walls[arm].append(sum(per_variant[arm].values()))
    torch.set_num_threads(threads)  # train() set the per-run thread count in this process
    cpus = int(ray.cluster_resources().get("CPU", 0))
    ray.shutdown()
    return {
        "wall": {arm: statistics.median(w) for arm, w in walls.items()},
        "per_variant": per_variant,
        "warm_sequential": warm_sequential,
        "warm_ray": warm_ray,
        "warm_ray_again": warm_ray_again,
        "ray_cpus": cpus,
        "cfg": compose_config(overrides("ray")),
    }


def ray_niceness() -> str:
    return os.environ.get("RAY_worker_niceness") or "15 (Ray's default)"


def report(args: argparse.Namespace, result: dict, load: tuple[float, float]) -> str:
    cfg, wall = result["cfg"], result["wall"]
    baseline_arm = f"sequential-{args.sequential_threads[0]}"
    baseline = wall[baseline_arm]
    concurrent = min(len(args.variants), int(result["ray_cpus"] // cfg.grid.cpus_per_trial))
    lines = [
        f"train stage: {len(args.variants)} variants ({', '.join(args.variants)}) x {args.iterations} steps, "
        f"offline profile ({cfg.backbone.arch}, batch {cfg.train.batch_size}, crop {cfg.train.crop_size}), "
        f"synthetic COCO-Stuff; CPU {platform.machine()}, {os.cpu_count()} cores, no GPU used; "
        f"median of {args.repeats} round(s) after a 1-step warm-up; 1-minute load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after (above {os.cpu_count()}: other processes competed for the cores)",
        "",
        "| arm | wall s | speedup vs " + baseline_arm.replace("-", ", train.threads=") + " |",
        "|---|---|---|",
    ]
    for threads in args.sequential_threads:
        arm = f"sequential-{threads}"
        lines.append(
            f"| sequential in one process, train.threads={threads} | {wall[arm]:.1f} | {baseline / wall[arm]:.2f} |"
        )
    lines.append(
        f"| Ray train stage (experiments.train_all): {result['ray_cpus']} CPUs, {cfg.grid.cpus_per_trial:g} per "
        f"trial ({concurrent} at a time), train.threads={cfg.train.threads}, workers at nice {ray_niceness()} | "
        f"{wall['ray']:.1f} | "
        f"{baseline / wall['ray']:.2f} |"
    )
    lines += [
        "",
        f"warm-up, every variant for 1 step: sequential {result['warm_sequential']:.1f} s; Ray stage including "
        f"ray.init (the stage's cold start) {result['warm_ray']:.1f} s; Ray stage again, Ray running "
        f"{result['warm_ray_again']:.1f} s",
        "",
        "| variant | " + " | ".join(f"sequential s, train.threads={t}" for t in args.sequential_threads) + " |",
        "|---|" + "---|" * len(args.sequential_threads),
    ]
    for variant in args.variants:
        cells = [f"{result['per_variant'][f'sequential-{t}'][variant]:.1f}" for t in args.sequential_threads]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dcpclip-parallel-training-") as folder:
        with contextlib.chdir(folder):  # Ray's trials run from the working directory; keep them out of the repo
            result = measure(args, Path(folder))
    print(report(args, result, (load_before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
