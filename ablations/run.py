"""Run one variant end to end: fetch and prepare the data (skipped when already there), pre-train the
offline profile's tiny CLIP (skipped when done), train each seed
(if the variant trains; a finished run is reused, an interrupted one resumed), evaluate on the
benchmarks, count GMACs, and write the same records into the same layout as `dvc repro`, so the report
picks them up.

    python ablations/run.py --variant no_dual
    python ablations/run.py --variant no_prune+static_text --seeds 0 1 2 --benchmarks a150 pc59
    python ablations/run.py --variant full --profile paper backbone.pretrained=/ckpt/ViT-B-16.bin

Variants: the registry of dcpclip/model/variants.py (names combine with "+"). Extra arguments are Hydra
overrides of experiments/conf (e.g. head.top_k=16 train.iterations=1000).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from dcpclip.data.config import BENCHMARKS
from dcpclip.engine.evaluate import evaluate_run
from dcpclip.model.variants import VARIANTS, check_variant_name, variant_override, variant_trains
from experiments import fetch, prepare, pretrain
from experiments.compose import compose_variant
from experiments.failures import failed
from experiments.flops import count
from experiments.train import describe_start, train


def variant_name(value: str) -> str:
    try:
        check_variant_name(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, type=variant_name,
                        help=f"one of: {', '.join(VARIANTS)}; '+' combines (e.g. no_prune+static_text)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--profile", choices=["offline", "paper"], default="offline",
                        help="offline: tiny CLIP on synthetic data, CPU (default); paper: ViT-B/16, real data")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
                        help="benchmarks to evaluate (default: all six)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. head.top_k=16 (anywhere)")
    # an override (key=value) may follow --seeds or --benchmarks, whose lists would otherwise swallow it
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in argv if a not in overrides])
    args.overrides = [*overrides, *args.overrides]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_without_variant = [f"profile={args.profile}", f"data.benchmarks=[{','.join(args.benchmarks)}]",
                            *args.overrides]
    base = [*base_without_variant, variant_override(args.variant)]
    command = shlex.join(["python", "ablations/run.py", *(argv if argv is not None else sys.argv[1:])])
    try:
        for stage in (fetch, prepare, pretrain):
            status = stage.main(base)  # a failure has printed its error line already
            if status != 0:
                return status
        trains = variant_trains(args.variant)
        for seed in args.seeds:
            cfg = compose_variant([*base_without_variant, f"seed={seed}"], args.variant)
            if trains:
                print(describe_start(cfg), flush=True)
                outcome = train(cfg, progress=sys.stderr.isatty())
                print(f"train {outcome['run_dir']}: {outcome['status']}", flush=True)
            for key, value in evaluate_run(cfg, command, command, progress=sys.stderr.isatty()).items():
                shown = value if isinstance(value, str) else f"mIoU {value:.2f}%"
                print(f"evaluate {args.variant} seed{seed} {key}: {shown}", flush=True)
        cfg = compose_variant(base_without_variant, args.variant)
        for arch, counts in count(cfg, cfg.count_paper_arch, command).items():
            print(f"flops {args.variant} {arch} (GMACs/image): "
                  + ", ".join(f"{key} {value}" for key, value in counts.items()), flush=True)
    except Exception as err:
        return failed(err, command)
    print(f"done: records under {cfg.results_dir}/eval/{cfg.profile} and {cfg.results_dir}/flops; "
          "`dvc repro report` (or python -m experiments.report) renders them", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
