"""Peak memory and time of evaluating one image at the paper's geometry, C = 847: the sparse output (the
kept classes' logits only, what inference now consumes) vs the dense path it replaced (the model's
full-vocabulary [V, C, H, W] logits, then the kept classes' columns taken from them).

ViT-B/16 at 384 with random weights, the paper profile's sliding protocol (short side 640: 2 x 2 windows of
384 at stride 256 + a global view, one batch of 5), a 640 x 853 image, 847 random unit text embeddings,
no grad, `full` (K = 32 per view). Each arm runs in a fresh process, so its peak resident memory
(`ru_maxrss`) is its own; the table gives the peak, the peak above the loaded model, and the time of one
evaluation after a warm-up one. Both arms must give the same labels (a digest of them is compared).

    python benchmarks/sparse_logits.py [--threads 1] [--classes 847]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import resource
import subprocess
import sys
import time

ARMS = ("dense", "sparse")


@dataclasses.dataclass
class DenseOutput:
    """What inference saw before: the full-vocabulary logits and the kept indices."""

    logits: object  # [V, C, H, W]
    kept: object  # [V, K]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_arm(arm: str, classes: int, threads: int) -> dict:
    import torch

    from dcpclip.engine.inference import InferenceSettings, predict_labels
    from dcpclip.flops import random_text_bank
    from dcpclip.model.build import run_model
    from experiments.compose import compose_config

    torch.set_num_threads(threads)
    cfg = compose_config(["profile=paper", "backbone.pretrained=null"])
    model = run_model(cfg.backbone, cfg.head, cfg.seed).eval()
    bank = random_text_bank(classes, model.backbone.embed_dim)  # [C, D]
    settings = InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss,
                                             model.backbone.patch_size)
    image = torch.randn(3, 640, 853, generator=torch.Generator().manual_seed(0))  # [3, h, w] at the short side
    runner = model if arm == "sparse" else (lambda views, text: DenseOutput(*(
        lambda output: (output.logits, output.kept))(model(views, text))))
    loaded = peak_rss_mb()
    seconds = []
    with torch.no_grad():
        for _ in range(2):  # a warm-up, then the timed one
            began = time.perf_counter()
            labels = predict_labels(runner, image, bank, settings, (640, 853)).labels
            seconds.append(time.perf_counter() - began)
    return {"arm": arm, "peak_rss_mb": peak_rss_mb(), "loaded_rss_mb": loaded, "seconds": seconds[-1],
            "labels_sha256": hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=847)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each arm")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # the child process of one arm
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.classes, args.threads)))
        return 0
    results = {}
    for arm in ARMS:
        child = subprocess.run([sys.executable, __file__, "--arm", arm, "--classes", str(args.classes),
                                "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results[arm] = json.loads(child.stdout.strip().splitlines()[-1])
    dense, sparse = results["dense"], results["sparse"]
    print(f"one sliding evaluation, ViT-B/16 at 384, C = {args.classes}, 640 x 853 image, {args.threads} thread(s)")
    print("| arm | peak RSS MB | peak above the loaded model MB | seconds | labels |")
    print("|---|---|---|---|---|")
    for r in (dense, sparse):
        print(f"| {r['arm']} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['loaded_rss_mb']:.0f} | "
              f"{r['seconds']:.2f} | {r['labels_sha256']} |")
    print(f"sparse / dense: peak RSS {sparse['peak_rss_mb'] / dense['peak_rss_mb']:.2f}, peak above the model "
          f"{(sparse['peak_rss_mb'] - sparse['loaded_rss_mb']) / (dense['peak_rss_mb'] - dense['loaded_rss_mb']):.2f}, "
          f"time {sparse['seconds'] / dense['seconds']:.2f}; labels "
          f"{'identical' if sparse['labels_sha256'] == dense['labels_sha256'] else 'DIFFER'}")
    return 0 if sparse["labels_sha256"] == dense["labels_sha256"] else 1


if __name__ == "__main__":
    sys.exit(main())
