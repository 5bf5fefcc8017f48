"""A cost estimate before launch: GPU-hours per stage and in total for the composed config.

    python -m experiments.estimate profile=paper                  # the rate measured by a probe on this device
    python -m experiments.estimate profile=paper --tflops 300     # your device's sustained rate, TFLOP/s
    python -m experiments.estimate profile=paper --out results/estimate/paper.json   # for the report

The arithmetic, printed with the numbers:
- Cost is fvcore multiply-adds counted on the composed model (`dcpclip.flops`, random init: weights do
  not change the count), 2 FLOPs per multiply-add.
- train: trained variants x seeds x iterations x the cost of one step (`dcpclip.train_cost`: 3 x (batch x
  one crop's forward on the training vocabulary + the text tower when it trains), the backward taken as
  twice the forward).
- evaluate: variants x seeds x the sum over benchmarks of images (the real split's size; `eval.max_images`
  caps it) x the cost of one image: all its views at the evaluation geometry. In sliding mode every image
  becomes the same 4 windows + the global view; in whole mode a short-side x 4/3 short-side image stands
  for all. The text banks are computed once per vocabulary and cached: not counted.
- flops, aggregate, report: minutes on a CPU, not counted.
- rate: the effective TFLOP/s of this model on this device, i.e. the utilisation included: a probe times
  `--probe-repeats` forwards of the full variant on one window (bf16 autocast on CUDA, as the paper
  profile) and divides their counted FLOPs by the time; or `--tflops`. The train hours assume training runs
  at that inference rate; `benchmarks/gpu_throughput.py` measures the training loop's steps/s to check it
  (on this project's 2-core CPU, training ran at about 0.75x the probe's rate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from dcpclip.atomic import write_text
from dcpclip.config import ExperimentConfig, with_variant
from dcpclip.data.specs import SPECS
from dcpclip.engine.inference import InferenceSettings, model_views
from dcpclip.environment import device_name
from dcpclip.flops import count_gmacs, random_text_bank
from dcpclip.model.build import run_model
from dcpclip.model.variants import variant_trains
from dcpclip.train_cost import count_train_step, gpu_hours
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import entry_point, failed


@dataclasses.dataclass(frozen=True)
class StageCost:
    stage: str
    work: str  # what is multiplied, in words
    gmacs: float  # total multiply-adds / 1e9

    def hours(self, tflops: float) -> float:
        return gpu_hours(self.gmacs, tflops)


def evaluation_views(cfg: ExperimentConfig, patch_size: int) -> torch.Tensor:
    """[V, 3, h, w]: the views of one image at the evaluation geometry (see the module docstring)."""
    short = cfg.eval.short_side
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss, patch_size)
    return model_views(torch.zeros(3, short, short * 4 // 3), settings)


def split_images(cfg: ExperimentConfig, key: str) -> int:
    count = SPECS[key].expected_images[0] if cfg.data.source == "real" else cfg.data.synthetic.val_images
    return min(count, cfg.eval.max_images) if cfg.eval.max_images else count


def variant_costs(cfg: ExperimentConfig) -> tuple[float, dict[str, float]]:
    """(GMACs of one training step, 0 for a training-free variant; {benchmark: GMACs per image})."""
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    backbone = model.backbone
    step = count_train_step(model, cfg).step_gmacs if cfg.trains else 0.0
    views = evaluation_views(cfg, backbone.patch_size)
    per_image = {}
    for key in cfg.data.benchmarks:
        bank = random_text_bank(SPECS[key].num_prompts, backbone.embed_dim)  # [C, D]
        one = count_gmacs(model, views[:1], bank, cross_check=False)
        per_image[key] = one.gmacs * len(views)  # no operator mixes views: the cost is linear in them
    return step, per_image


def stage_costs(cfg: ExperimentConfig) -> tuple[list[StageCost], dict]:
    """The train and evaluate costs of the grid, and the per-unit counts they were multiplied from."""
    seeds, train, evaluate, units = len(cfg.grid.seeds), 0.0, 0.0, {}
    trained = [v for v in cfg.grid.variants if variant_trains(v)]
    for variant in cfg.grid.variants:
        step, per_image = variant_costs(with_variant(cfg, variant))
        train += seeds * cfg.train.iterations * step
        evaluate += seeds * sum(split_images(cfg, key) * gmacs for key, gmacs in per_image.items())
        units[variant] = {"train_step_gmacs": step, "eval_image_gmacs": per_image}
    images = {key: split_images(cfg, key) for key in cfg.data.benchmarks}
    costs = [
        StageCost("train", f"{len(trained)} trained variants x {seeds} seeds x {cfg.train.iterations} steps x "
                           f"batch {cfg.train.batch_size} x 3 (forward + backward)", train),
        StageCost("evaluate", f"{len(cfg.grid.variants)} variants x {seeds} seeds x {sum(images.values())} images "
                              f"({', '.join(f'{k} {n}' for k, n in images.items())})", evaluate),
    ]
    return costs, {"units": units, "images": images}


def probe_tflops(cfg: ExperimentConfig, repeats: int) -> tuple[float, str]:
    """Effective TFLOP/s of the full variant's forward on one window of this device, and the device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probe = with_variant(cfg, "full")
    model = run_model(probe.backbone, probe.head, probe.seed).eval()
    window = torch.randn(1, 3, probe.backbone.image_size, probe.backbone.image_size)
    bank = random_text_bank(SPECS["a150"].num_prompts, model.backbone.embed_dim)
    gmacs = count_gmacs(model, window, bank, cross_check=False).gmacs
    model, window, bank = model.to(device), window.to(device), bank.to(device)
    amp = device.type == "cuda" and cfg.train.amp
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model(window, bank)  # warm-up: kernels chosen, memory allocated
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(window, bank)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeats
    return 2 * gmacs * 1e9 / seconds / 1e12, device_name(device)


def render(cfg: ExperimentConfig, costs: list[StageCost], tflops: float, rate_source: str) -> str:
    lines = [f"Cost estimate: profile {cfg.profile}, {cfg.backbone.arch} at {cfg.backbone.image_size}, "
             f"{tflops:.3g} effective TFLOP/s ({rate_source})", "",
             "| stage | work | PFLOP | hours on one device |", "|---|---|---|---|"]
    for cost in costs:
        lines.append(f"| {cost.stage} | {cost.work} | {2 * cost.gmacs / 1e6:.4g} | {cost.hours(tflops):.4g} |")
    total = sum(c.gmacs for c in costs)
    lines.append(f"| total | | {2 * total / 1e6:.4g} | {sum(c.hours(tflops) for c in costs):.4g} |")
    return "\n".join(lines)


@entry_point("experiments.estimate")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_override_arguments(parser)
    parser.add_argument("--tflops", type=float, help="sustained TFLOP/s of the target device (default: probe here)")
    parser.add_argument("--probe-repeats", type=int, default=3, help="timed forwards of the probe")
    parser.add_argument("--out", type=Path, help="also write the estimate here (JSON)")
    args = parser.parse_args(argv)
    if args.tflops is not None and args.tflops <= 0:
        parser.error(f"--tflops {args.tflops}: must be positive")
    overrides = overrides_from_args(args)
    try:
        composed = compose_config(overrides)
        # random init: weights change neither the count nor the speed (and need no download)
        cfg = dataclasses.replace(composed, backbone=dataclasses.replace(composed.backbone, pretrained=None))
        costs, details = stage_costs(cfg)
        if args.tflops is None:
            tflops, device = probe_tflops(cfg, args.probe_repeats)
            source = f"measured on {device}"
        else:
            tflops, source = args.tflops, "given with --tflops"
    except Exception as err:
        return failed(err, f"python -m experiments.estimate {' '.join(overrides)}")
    print(render(cfg, costs, tflops, source))
    if args.out:
        record = {"profile": cfg.profile, "arch": cfg.backbone.arch, "tflops": tflops, "rate_source": source,
                  "stages": [{**dataclasses.asdict(c), "gpu_hours": c.hours(tflops)} for c in costs],
                  "total_gpu_hours": sum(c.hours(tflops) for c in costs), **details,
                  "overrides": overrides}
        write_text(args.out, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
