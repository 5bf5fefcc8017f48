"""Evaluation throughput on CPU: the model alone vs the whole evaluation loop, and what the DCP-CLIP head costs
on top of bare dense CLIP.

(a) Over the first images of a synthetic benchmark, fetched and prepared into a temporary folder by the real
    `experiments.fetch` / `experiments.prepare` stages, for each setup:
    - model: `model(views, text_bank)` under no grad on views built beforehand (`model_views`), one image's
      views per forward, and again with the views of `eval.batch_images` images per forward, as the loop
      batches them (the second ratio is then the loop's own overhead);
    - loop: `dcpclip.engine.evaluate.evaluate_benchmark`, the code the evaluate stage runs (text bank lookup, image
      decoding and protocol resize, views, inference, probability merge, argmax at the original size,
      evaluator, record);
    and the ratio of their rates, loop/model (target >= 0.9). The loop's fixed per-benchmark costs (cached
    text bank lookup, environment stamp of the record) are timed on their own as well, and subtracted for the
    rate a long benchmark would see; the loop also runs with one data-loader worker decoding ahead.
    Setups: `tiny`, the offline profile (tiny CLIP, short side 96, 64-pixel windows, stride 32); `vitb16`, the
    paper profile's model and protocol geometry (ViT-B/16 at 384, short side 640, 2 x 2 windows of 384 at
    stride 256 + a global view) with random weights. The synthetic images are 96 x 128, so at the protocol's
    short side 640 they are upsampled and the final argmax runs at 96 x 128: cheaper than on real images of
    about 512 x 683.
(b) One view at the backbone's input size and C = 847 random unit text embeddings, no grad: the full DCP-CLIP
    forward vs the training-free dense CLIP (`zero_shot`: `encode_image` + cosine against the text bank)
    around the same backbone, and `encode_image` alone. Ratio full/zero_shot (target <= 1.25).

Every time is the median of `--repeats` rounds after a warm-up; the measurements of a round run one after the
other so that load from other processes hits them alike. `--profile` adds torch.profiler's top operators for
one loop image and one full forward of (b).

    python benchmarks/throughput.py [--setups tiny vitb16] [--benchmark a150] [--images N] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dcpclip import paths
from dcpclip.config import ExperimentConfig, with_variant
from dcpclip.data.datasets import evaluation_dataset, read_class_names
from dcpclip.data.specs import SPECS
from dcpclip.engine.evaluate import evaluate_benchmark
from dcpclip.engine.inference import InferenceSettings, model_views
from dcpclip.environment import device_name, environment_stamp
from dcpclip.model.backbone import build_backbone
from dcpclip.model.build import build_head, build_model
from dcpclip.model.text_bank import TextBankCache
from experiments import fetch, prepare
from experiments.compose import compose_config

CPU = torch.device("cpu")
HEAD_CLASSES = 847  # A-847, the largest benchmark vocabulary
PROFILE_ROWS = 12
FLUSH_DENORMAL_SUPPORTED = torch.set_flush_denormal(False)  # False (torch's default) is kept; True: the CPU has FTZ/DAZ


@dataclasses.dataclass(frozen=True)
class Setup:
    overrides: tuple[str, ...]
    images: int  # default image count of (a)
    geometry: str  # for the table


SETUPS = {
    # speed does not depend on the weights: the tiny CLIP is built at random init (no pre-training needed)
    "tiny": Setup(("pretrain=none",), 8, "offline profile: short side 96, windows 64, stride 32"),
    "vitb16": Setup(
        ("profile=paper", "data=synthetic", "backbone.pretrained=null"),
        1,
        "paper protocol: short side 640, windows 384, stride 256",
    ),
}
THREADS_HELP = (
    "torch threads (default 1: on a shared 2-core machine two OpenMP threads stall whenever another process "
    "takes a core; use 2 on an idle machine)"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS), help="setups of (a)")
    parser.add_argument("--benchmark", default="a150", choices=list(SPECS), help="synthetic benchmark of (a)")
    parser.add_argument("--images", type=int,
                        help="images per setup in (a) (default: tiny 8, vitb16 1; the synthetic benchmark is made "
                             "that large)")
    parser.add_argument("--head-setup", choices=list(SETUPS), default="vitb16", help="model of (b)")
    parser.add_argument(
        "--head-variants", nargs="+", default=["full"], help="variants compared with zero_shot in (b) (default full)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 image per setup")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.images = 1, 1
    if args.repeats < 1 or (args.images is not None and args.images < 1):
        parser.error("--repeats and --images must be >= 1")
    return args


def timed(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function over `repeats` rounds; a round calls them one after the other."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            began = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def top_operators(function: Callable[[], object], title: str) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        function()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS)
    return f"torch.profiler, {title} (top {PROFILE_ROWS} by self CPU time)\n{table}"


def prepare_benchmark(folder: Path, benchmark: str, images: int) -> list[str]:
    """Fetch and prepare the synthetic `benchmark` (at least 8 images) under `folder`; returns the data/cache
    overrides."""
    data = [f"data.raw_root={folder}/raw",
            f"data.root={folder}/prepared", f"cache_dir={folder}/cache",
            f"data.synthetic.val_images={max(8, images)}"]
    for stage in (fetch, prepare):
        if stage.main([*data, "--datasets", benchmark]) != 0:
            raise RuntimeError(f"{stage.__name__} failed for the synthetic {benchmark}")
    return data


def with_max_images(cfg: ExperimentConfig, count: int) -> ExperimentConfig:
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, max_images=count))


def with_loader_workers(cfg: ExperimentConfig, workers: int) -> ExperimentConfig:
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))


@torch.no_grad()
def loop_vs_model(setup: Setup, data: list[str], benchmark: str, images: int, repeats: int, with_profile: bool) -> dict:
    cfg = compose_config([*setup.overrides, *data])
    spec = SPECS[benchmark]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.head).eval()
    cache = TextBankCache(paths.text_cache_dir(cfg), cfg.backbone.arch)
    prompts = read_class_names(cfg.data.root, spec)
    text_bank = cache.get(model.backbone, prompts, cfg.text)  # [C, D]; fills the cache the loop then reads
    settings = InferenceSettings.from_config(
        cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss, model.backbone.patch_size
    )
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    count = min(images, len(dataset))
    views = [model_views(dataset[index].image, settings) for index in range(count)]  # each [V, 3, s, s]

    def model_only() -> None:
        for image_views in views:
            model(image_views, text_bank)

    batch = cfg.eval.batch_images
    batched_views = [torch.cat(views[i : i + batch]) for i in range(0, count, batch)]  # [batch x V, 3, s, s]

    def model_batched() -> None:
        for group in batched_views:
            model(group, text_bank)

    def loop(images: int = count) -> None:
        evaluate_benchmark(
            model, with_max_images(cfg, images), spec, cache, CPU, "benchmarks/throughput.py", progress=False
        )

    def loop_with_a_loader_worker() -> None:
        evaluate_benchmark(model, with_loader_workers(with_max_images(cfg, count), 1), spec, cache, CPU,
                           "benchmarks/throughput.py", progress=False)

    def loop_flushing_denormals() -> None:
        torch.set_flush_denormal(True)  # process-wide; off is torch's default
        try:
            loop()
        finally:
            torch.set_flush_denormal(False)

    model(views[0], text_bank)  # warm-up
    loop(1)
    functions = {
        "model": model_only,
        "model_batched": model_batched,
        "loop": loop,
        "loop_flushed": loop_flushing_denormals,
        "loop_worker": loop_with_a_loader_worker,
        "text_bank_lookup": lambda: cache.get(model.backbone, prompts, cfg.text),
        "environment_stamp": lambda: environment_stamp(CPU),
    }
    if not FLUSH_DENORMAL_SUPPORTED:
        del functions["loop_flushed"]
    seconds = timed(functions, repeats)
    profiled = top_operators(lambda: loop(1), f"{cfg.backbone.arch}, one loop image") if with_profile else None
    return {
        **seconds,
        "images": count,
        "batch_images": batch,
        "views": len(views[0]),
        "classes": len(prompts),
        "arch": cfg.backbone.arch,
        "profile": profiled,
    }


@torch.no_grad()
def head_overhead(setup: Setup, variants: list[str], repeats: int, with_profile: bool) -> dict:
    cfg = compose_config(list(setup.overrides))
    backbone = build_backbone(cfg.backbone).eval()
    models = {}
    for variant in ["zero_shot", *variants]:
        torch.manual_seed(cfg.seed)
        models[variant] = build_head(backbone, with_variant(cfg, variant).head).eval()
    size = cfg.backbone.image_size
    view = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))  # [1, 3, S, S]
    bank = torch.randn(HEAD_CLASSES, backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    bank = F.normalize(bank, dim=-1)  # [C, D]
    functions = {"encode_image": lambda: backbone.encode_image(view)}
    functions |= {variant: (lambda m=model: m(view, bank)) for variant, model in models.items()}
    for function in functions.values():  # warm-up
        function()
    seconds = timed(functions, repeats)
    profiled = (
        top_operators(
            lambda: models[variants[0]](view, bank),
            f"{cfg.backbone.arch} at {size}, {variants[0]} forward, C={HEAD_CLASSES}",
        )
        if with_profile
        else None
    )
    return {"seconds": seconds, "arch": cfg.backbone.arch, "size": size, "profile": profiled}


def report(args: argparse.Namespace, loops: dict[str, dict], head: dict, load: tuple[float, float]) -> str:
    lines = [
        f"device {device_name(CPU)}, torch {torch.__version__}, random weights, median of {args.repeats} after "
        f"a warm-up; 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after (above {os.cpu_count()}: "
        "other processes competed for the cores)",
        "",
        f"(a) evaluation loop vs model alone, variant full, synthetic {SPECS[args.benchmark].title} (96x128 images)",
        "",
        "| setup | geometry | images | views/image | classes | eval.batch_images |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in loops.items():
        lines.append(
            f"| {name} ({row['arch']}) | {SETUPS[name].geometry} | {row['images']} | {row['views']} | "
            f"{row['classes']} | {row['batch_images']} |"
        )
    lines += ["", "| setup | path | s/image | images/s | rate / model rate |", "|---|---|---|---|---|"]
    paths_ = {
        "model": "model alone (views prebuilt), one image per forward",
        "model_batched": "model alone, eval.batch_images images per forward (as the loop runs it)",
        "loop": "evaluation loop (evaluate_benchmark)",
        "loop_flushed": "evaluation loop, denormals flushed to zero",
        "loop_worker": "evaluation loop, 1 loader worker decoding ahead (data.num_workers=1; start-up included)",
        "loop_per_image": "evaluation loop less its fixed per-benchmark costs (a long benchmark's rate)",
    }
    for name, row in loops.items():
        row = {**row, "loop_per_image": row["loop"] - row["text_bank_lookup"] - row["environment_stamp"]}
        for key, label in paths_.items():
            if key in row:
                per_image = row[key] / row["images"]
                lines.append(
                    f"| {name} | {label} | {per_image:.3f} | {1 / per_image:.2f} | {row['model'] / row[key]:.2f} |"
                )
        lines.append(
            f"| {name} | of the loop, fixed per benchmark: text bank lookup + environment stamp | "
            f"{row['text_bank_lookup']:.3f} + {row['environment_stamp']:.3f} s | | |"
        )
    seconds = head["seconds"]
    lines += [
        "",
        f"(b) head overhead, {head['arch']} at {head['size']}x{head['size']}, 1 view, C={HEAD_CLASSES}, no grad",
        "",
        "| forward | s/view | ratio to zero_shot |",
        "|---|---|---|",
    ]
    for name, value in seconds.items():
        label = "encode_image alone" if name == "encode_image" else name
        lines.append(f"| {label} | {value:.3f} | {value / seconds['zero_shot']:.2f} |")
    lines += [""] + [row["profile"] for row in (*loops.values(), head) if row["profile"]]
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dcpclip-throughput-") as folder:
        data = prepare_benchmark(Path(folder), args.benchmark, args.images or 0)
        loops = {
            name: loop_vs_model(
                SETUPS[name], data, args.benchmark, args.images or SETUPS[name].images, args.repeats, args.profile
            )
            for name in args.setups
        }
    head = head_overhead(SETUPS[args.head_setup], args.head_variants, args.repeats, args.profile)
    print(report(args, loops, head, (load_before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
