"""Paper-profile speed on the present device (meant for one GPU; runs on the CPU too): ViT-B/16 `full`
evaluation images/s at C = 150 and C = 847, training steps/s, and the peak memory of each.

- evaluation: `dcpclip.engine.inference.predict_labels`, the evaluate stage's per-image path (views, the
  model under `eval.amp`, merge, argmax at the original size), on a random 512 x 683 image (the protocol's
  short side 640 is applied to it first, as the evaluation dataset does) with C random unit text
  embeddings; `--images` timed images after one warm-up image.
- training: `experiments.train.train`, the train stage's loop, on the smoke's prepared COCO-Stuff (run
  `python -m experiments.paper_smoke --workdir W` first), for `--steps` and for 4 steps; steps/s is
  (steps - 4) / (difference of their times), so start-up, warm-up and the final checkpoint cancel out.
- peak memory: `torch.cuda.max_memory_allocated` per measurement on CUDA, the process's max RSS on the CPU.

    python benchmarks/gpu_throughput.py --workdir /tmp/paper-smoke --out throughput.json [--images 20 --steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from dcpclip.atomic import write_text
from dcpclip.engine.inference import InferenceSettings, predict_labels
from dcpclip.environment import environment_stamp
from dcpclip.flops import random_text_bank
from dcpclip.model.build import build_model
from experiments.compose import compose_config
from experiments.paper_smoke import SHRINK
from experiments.train import train

VOCABULARIES = (150, 847)
WARM_STEPS = 4
PROTOCOL_IMAGE = (512, 683)  # ADE20K's typical size, before the short side is resized to 640


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def evaluation_rate(device: torch.device, classes: int, images: int) -> dict:
    """Images/s of `full` at the paper geometry on `classes` names, and the peak memory."""
    cfg = compose_config(["profile=paper", "backbone.pretrained=null"])
    torch.manual_seed(0)
    model = build_model(cfg.backbone, cfg.head).eval().to(device)
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss,
                                             model.backbone.patch_size)
    bank = random_text_bank(classes, model.backbone.embed_dim).to(device)  # [C, D]
    generator = torch.Generator().manual_seed(0)
    height, width = PROTOCOL_IMAGE
    scale = cfg.eval.short_side / min(height, width)
    image = torch.randn(3, round(height * scale), round(width * scale), generator=generator).to(device)  # [3, h, w]
    predict_labels(model, image, bank, settings, PROTOCOL_IMAGE)  # warm-up
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(images):
        labels = predict_labels(model, image, bank, settings, PROTOCOL_IMAGE).labels
    labels.cpu()  # the last result on the host: every queued kernel has run
    seconds = time.perf_counter() - start
    return {"classes": classes, "images": images, "images_per_second": images / seconds,
            "peak_memory_mib": peak_memory_mib(device)}


def training_rate(workdir: Path, device: torch.device, steps: int) -> dict:
    """Steps/s of `full`'s training loop at crop 384, batch 4 (the paper recipe), and the peak memory."""
    os.chdir(workdir)  # the smoke's prepared data, relative to its folder
    seconds = {}
    reset_peak(device)
    for count in (WARM_STEPS, steps):
        cfg = compose_config([*SHRINK, "variant=full", f"train.iterations={count}", f"train.checkpoint_every={count}",
                              "train.log_every=50", f"runs_dir=gpu_throughput_runs/{count}"])
        result = train(cfg, progress=False)
        if result["status"] != "trained":
            raise RuntimeError(f"{result['run_dir']}: {result['status']}; remove gpu_throughput_runs/ and rerun")
        seconds[count] = result["step"] / result["steps_per_second"]
    return {"batch_size": cfg.train.batch_size, "crop_size": cfg.train.crop_size, "amp": cfg.train.amp,
            "steps": steps, "steps_per_second": (steps - WARM_STEPS) / (seconds[steps] - seconds[WARM_STEPS]),
            "peak_memory_mib": peak_memory_mib(device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished experiments.paper_smoke folder")
    parser.add_argument("--out", type=Path, required=True, help="the measurements (JSON)")
    parser.add_argument("--images", type=int, default=20, help="timed evaluation images per vocabulary")
    parser.add_argument("--steps", type=int, default=40, help="training steps of the long run (> 4)")
    args = parser.parse_args(argv)
    if args.steps <= WARM_STEPS:
        parser.error(f"--steps {args.steps}: must be more than {WARM_STEPS}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out, workdir = args.out.resolve(), args.workdir.resolve()
    evaluation = [evaluation_rate(device, classes, args.images) for classes in VOCABULARIES]
    for row in evaluation:
        print(f"evaluate full, C={row['classes']}: {row['images_per_second']:.2f} images/s, "
              f"peak {row['peak_memory_mib']:.0f} MiB", flush=True)
    training = training_rate(workdir, device, args.steps)
    print(f"train full: {training['steps_per_second']:.2f} steps/s (batch {training['batch_size']}, crop "
          f"{training['crop_size']}), peak {training['peak_memory_mib']:.0f} MiB", flush=True)
    record = {"evaluation": evaluation, "training": training, "environment": environment_stamp(device)}
    write_text(out, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
