"""How the per-image cost of each variant grows with the vocabulary, measured at the paper architecture.

Builds each registry variant on the architecture of a model config (default `vitb16`: OpenAI ViT-B/16 at
384x384, decoder skips from blocks 3 and 7, the head widths of experiments/conf/model/vitb16.yaml) with
random weights (GMACs do not depend on the weights), counts GMACs with `dcpclip.flops.count_gmacs` for
each vocabulary size, and prints one table: GMACs per image (fvcore multiply-adds, 1 view, text encoder
excluded: the text bank is cached per vocabulary) and the ratio GMACs(largest C) / GMACs(smallest C).

    python benchmarks/vocab_scaling.py [--model vitb16] [--classes 20 59 150 171 459 847] [--variants ...]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dcpclip.config import with_variant
from dcpclip.flops import count_gmacs
from dcpclip.model.build import build_model
from dcpclip.model.trainable import set_trainable
from dcpclip.model.variants import variant_names
from experiments.compose import compose_config

BENCHMARK_VOCABULARIES = (
    20,
    59,
    150,
    171,
    459,
    847,
)  # PAS-20, PC-59 (and PAS-20b), A-150, COCO, PC-459, A-847


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vitb16", help="option of experiments/conf/model (default vitb16)")
    parser.add_argument("--classes", type=int, nargs="+", default=list(BENCHMARK_VOCABULARIES))
    parser.add_argument("--variants", nargs="+", default=variant_names())
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def measure(model_option: str, variants: list[str], classes: list[int]) -> dict[str, dict]:
    cfg = compose_config(["profile=paper", f"model={model_option}", "backbone.pretrained=null"])
    size = cfg.backbone.image_size
    rows = {}
    for variant in variants:
        head = with_variant(cfg, variant).head
        torch.manual_seed(0)
        model = build_model(cfg.backbone, head)
        set_trainable(model, head)
        views = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        counts = {}
        for num_classes in classes:
            bank = torch.randn(
                num_classes, model.backbone.embed_dim, generator=torch.Generator().manual_seed(1)
            )
            counts[num_classes] = count_gmacs(model, views, F.normalize(bank, dim=-1))
        rows[variant] = counts
    return {"arch": cfg.backbone.arch, "size": size, "blocks": cfg.backbone.intermediate_blocks, "rows": rows}


def table(result: dict, classes: list[int]) -> str:
    first, last = classes[0], classes[-1]
    header = [
        "variant",
        *(f"C={c}" for c in classes),
        f"ratio {last}/{first}",
        "K at C=" + str(last),
        "params total",
        "params trainable",
        "matmul vs FlopCounterMode",
    ]
    lines = [
        "GMACs per image (fvcore multiply-adds / 1e9), "
        f"{result['arch']} at {result['size']}x{result['size']}, "
        f"1 view, decoder skips from blocks {list(result['blocks'])}, random weights, text encoder excluded "
        "(text bank cached per vocabulary)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for variant, counts in result["rows"].items():
        largest = counts[last]
        worst = max(abs(c.matmul_gmacs / c.flop_counter_gmacs - 1) for c in counts.values())
        cells = [
            variant,
            *(f"{counts[c].gmacs:.2f}" for c in classes),
            f"{counts[last].gmacs / counts[first].gmacs:.3f}",
            str(largest.kept_classes),
            f"{largest.params_total:,}",
            f"{largest.params_trainable:,}",
            f"max rel. diff {worst:.1e}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    skipped = sorted(
        {op for counts in result["rows"].values() for c in counts.values() for op in c.costly_skipped_ops}
    )
    lines += ["", f"skipped operators with multiply-add cost: {', '.join(skipped) or 'none'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    classes = sorted(args.classes)
    print(table(measure(args.model, args.variants, classes), classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
