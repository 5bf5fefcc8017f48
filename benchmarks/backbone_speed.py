"""What the CLIP backbone costs per image and per vocabulary on this machine, measured side by side.

1. Image tower (`ClipBackbone.encode_image`, no grad, batch 1) at several input sizes: seconds per image in
   fp32 and under bf16 autocast, their ratio, and how far bf16 moves the dense embeddings (minimum cosine
   similarity of a patch embedding with its fp32 value).
2. Text bank of a vocabulary (default: the 847 names of the synthetic A-847 list, CAT-Seg's prompt): open_clip's
   own `encode_text` over the full 77-token context vs `encode_vocabulary`, which cuts each length-sorted batch
   to its longest prompt; the ratio and the largest absolute difference of the class embeddings.
3. `TextBankCache.get`: the first call (encode and save) and a repeated call (a hit: hash the text tower's
   weights, load the bank), with the weight hash alone.

Every time is the median of `--repeats` runs after one warm-up run; paired measurements alternate so that load
from other processes hits both alike. Random weights (time does not depend on them). One torch thread by
default (see --threads); the header states threads, device and the load average around the run.

    python benchmarks/backbone_speed.py [--model vitb16] [--sizes 224 384 640x480] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import open_clip
import torch
import torch.nn.functional as F

from dcpclip.config_schema import from_dict
from dcpclip.data.synthetic_vocabulary import vocabularies
from dcpclip.environment import device_name
from dcpclip.model.backbone import ClipBackbone, build_backbone
from dcpclip.model.config import BackboneConfig
from dcpclip.model.text_bank import (
    TextBankCache,
    TextConfig,
    class_prompts,
    encode_vocabulary,
    text_weights_digest,
)
from experiments.compose import compose_dict

THREADS_HELP = (
    "torch threads (default 1: on a shared 2-core machine two OpenMP threads stall whenever another process "
    "takes a core, which made one text-bank encode vary from 2.7 to 28 s; use 2 on an idle machine)"
)
DEFAULT_SIZES = ("224", "384", "640x480")
WARM_UP_NAMES = 64  # the text paths warm up on this many names (a full 77-token pass costs ~40 s)


def parse_size(text: str) -> tuple[int, int]:
    """ "384" -> (384, 384); "640x480" -> (480, 640): width x height, as image sizes are usually written."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or WxH, e.g. 384 or 640x480") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    raise argparse.ArgumentTypeError(f"size {text!r}: expected N or WxH, e.g. 384 or 640x480")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vitb16", help="option of experiments/conf/model (default vitb16)")
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help="image sizes, N or WxH (default 224 384 640x480)",
    )
    parser.add_argument(
        "--vocabulary",
        type=int,
        default=847,
        help="how many names of the synthetic A-847 list form the text bank (default all 847)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--quick", action="store_true", help="1 repeat, sizes 224 and 384 only")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.sizes = 1, [parse_size(s) for s in DEFAULT_SIZES[:2]]
    if args.repeats < 1 or not 1 <= args.vocabulary <= 847:
        parser.error("--repeats must be >= 1 and --vocabulary in 1..847")
    return args


def timed(
    functions: dict[str, Callable[[], object]], repeats: int, warm_ups: dict[str, Callable[[], object]] | None = None
) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each function over `repeats` rounds after one warm-up call of each (`warm_ups`,
    or the functions themselves), and each function's last result. Every round runs the functions one
    after the other, so they share the machine's load alike."""
    for function in (warm_ups or functions).values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            began = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}, results


@torch.no_grad()
def image_tower(backbone: ClipBackbone, size: tuple[int, int], repeats: int) -> dict:
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))  # [1, 3, H, W]

    def fp32() -> torch.Tensor:
        return backbone.encode_image(images).dense

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return backbone.encode_image(images).dense

    seconds, dense = timed({"fp32": fp32, "bf16": bf16}, repeats)
    cosine = F.cosine_similarity(dense["fp32"], dense["bf16"].float(), dim=1)  # [1, h, w]
    return {**seconds, "min_cosine": float(cosine.min())}


def full_context_bank(backbone: ClipBackbone, tokenizer, names: list[str], cfg: TextConfig) -> torch.Tensor:
    """The reference: open_clip's `encode_text` over the whole 77-token context, prompts in vocabulary
    order, same batch size and the same averaging over a class's prompts -> [C, D]."""
    prompts, owner = [], []
    for index, name in enumerate(names):
        for prompt in class_prompts(name, cfg):
            prompts.append(prompt)
            owner.append(index)
    tokens = tokenizer(prompts)  # [P, 77]
    embeddings = torch.cat(
        [
            F.normalize(backbone.clip.encode_text(tokens[start : start + cfg.batch_size]), dim=-1)
            for start in range(0, len(prompts), cfg.batch_size)
        ]
    )  # [P, D]
    sums = embeddings.new_zeros(len(names), embeddings.shape[1]).index_add(0, torch.tensor(owner), embeddings)
    return F.normalize(sums, dim=-1)  # [C, D]


@torch.no_grad()
def text_bank(backbone: ClipBackbone, arch: str, names: list[str], repeats: int) -> dict:
    cfg = TextConfig()
    tokenizer = open_clip.get_tokenizer(arch)
    lengths = tokenizer([p for n in names for p in class_prompts(n, cfg)]).argmax(dim=-1) + 1
    few = names[:WARM_UP_NAMES]
    seconds, banks = timed(
        {
            "full": lambda: full_context_bank(backbone, tokenizer, names, cfg),
            "cut": lambda: encode_vocabulary(backbone, tokenizer, names, cfg),
        },
        repeats,
        warm_ups={
            "full": lambda: full_context_bank(backbone, tokenizer, few, cfg),
            "cut": lambda: encode_vocabulary(backbone, tokenizer, few, cfg),
        },
    )
    difference = (banks["full"] - banks["cut"]).abs().max()
    with tempfile.TemporaryDirectory() as folder:
        cache = TextBankCache(folder, arch)
        began = time.perf_counter()
        cache.get(backbone, names, cfg)
        miss = time.perf_counter() - began
        cached, _ = timed(
            {"hit": lambda: cache.get(backbone, names, cfg), "digest": lambda: text_weights_digest(backbone)}, repeats
        )
    return {
        **seconds,
        "max_abs_diff": float(difference),
        "miss": miss,
        **cached,
        "prompts": len(lengths),
        "max_tokens": int(lengths.max()),
        "mean_tokens": float(lengths.float().mean()),
    }


def report(args: argparse.Namespace, arch: str, towers: dict, text: dict, load: tuple[float, float]) -> str:
    lines = [
        f"backbone {arch} (random init), device {device_name('cpu')}, torch {torch.__version__}, "
        f"median of {args.repeats} after 1 warm-up; 1-minute load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after (above {os.cpu_count()}: other processes competed for the cores)",
        "",
        "Image tower, batch 1, no grad (encode_image: dense + intermediates)",
        "",
        "| input (WxH) | s/image fp32 | s/image bf16 autocast | fp32/bf16 | min cosine bf16 vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for (height, width), row in towers.items():
        lines.append(
            f"| {width}x{height} | {row['fp32']:.3f} | {row['bf16']:.3f} | "
            f"{row['fp32'] / row['bf16']:.2f} | {row['min_cosine']:.4f} |"
        )
    lines += [
        "",
        f"Text bank, {args.vocabulary} synthetic A-847 names, {text['prompts']} prompts (CAT-Seg template), "
        f"{text['max_tokens']} tokens longest, {text['mean_tokens']:.1f} mean, batches of {TextConfig().batch_size}",
        "",
        "| encoding | seconds | ratio to cut |",
        "|---|---|---|",
        f"| full 77-token context (open_clip encode_text) | {text['full']:.3f} | {text['full'] / text['cut']:.2f} |",
        f"| cut to longest per length bucket (encode_vocabulary) | {text['cut']:.3f} | 1.00 |",
        f"| TextBankCache.get, first call (encode + save) | {text['miss']:.3f} | {text['miss'] / text['cut']:.2f} |",
        f"| TextBankCache.get, cached (hash weights + load) | {text['hit']:.3f} | {text['hit'] / text['cut']:.3f} |",
        f"| of which text_weights_digest | {text['digest']:.3f} | {text['digest'] / text['cut']:.3f} |",
        "",
        f"max |full - cut| over the class embeddings: {text['max_abs_diff']:.1e}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    composed = compose_dict([f"model={args.model}", "backbone.pretrained=null"])
    backbone_cfg = from_dict(BackboneConfig, composed["backbone"], "backbone")
    backbone = build_backbone(backbone_cfg).eval()
    names = list(vocabularies()["ade847"][: args.vocabulary])
    load_before = os.getloadavg()[0]
    towers = {size: image_tower(backbone, size, args.repeats) for size in args.sizes}
    text = text_bank(backbone, backbone_cfg.arch, names, args.repeats)
    print(report(args, backbone_cfg.arch, towers, text, (load_before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
