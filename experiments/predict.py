"""Segment images with any vocabulary (installed as `dcpclip-predict`).

    python -m experiments.predict IMAGE_OR_FOLDER... --vocab VOCAB --out DIR [--run RUN_DIR | --zero-shot]
        [hydra overrides...]

For example:

    python -m experiments.predict photos/ --vocab "cat, dog, sky, grass" --out predictions --zero-shot
    python -m experiments.predict street.jpg --vocab a150 --out predictions profile=paper eval.mode=whole

VOCAB is names separated by commas, a text file with one name per line, or a benchmark key (a847, pc459,
a150, pc59, pas20, pas20b: the prompt names of its prepared classes.json). The model is the trained run of
the composed config (or --run), or the training-free dense-CLIP baseline with --zero-shot. Positional
arguments that are existing paths are images; the others holding "=" are Hydra overrides.
Exit status: 0 done, 2 bad input (image, vocabulary, model source or config), 1 anything else.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dcpclip.predict import collect_images, load_predictor, predict_images, read_vocabulary
from experiments.compose import compose_config
from experiments.failures import entry_point, failed


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """(images, Hydra overrides): an existing path is an image, else an argument with "=" is an override."""
    images, overrides = [], []
    for argument in arguments:
        is_override = "=" in argument and not Path(argument).exists()
        (overrides if is_override else images).append(argument)
    return images, overrides


def describe_source(source: dict) -> str:
    if source["kind"] == "zero-shot":
        return f"zero-shot {source['arch']}"
    unfinished = "" if source["finished"] else ", unfinished"
    return f"run {source['run_dir']} ({source['arch']}, step {source['step']}{unfinished})"


@entry_point("experiments.predict")
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER|OVERRIDE", help="images and overrides")
    parser.add_argument("--vocab", required=True, help="'name, name, ...', a text file, or a benchmark key")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="trained run folder (default: the composed config's run)")
    source.add_argument("--zero-shot", action="store_true", help="training-free dense CLIP baseline")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    args = parser.parse_intermixed_args(argv)
    image_args, overrides = split_arguments(args.inputs)
    if args.zero_shot:
        overrides.append("variant=zero_shot")
    rerun = shlex.join(["python", "-m", "experiments.predict", *(argv if argv is not None else sys.argv[1:])])
    try:
        cfg = compose_config(overrides)
        images = collect_images(image_args)
        vocabulary, vocabulary_source = read_vocabulary(args.vocab, cfg.data.root)
        predictor = load_predictor(cfg, args.run, args.device)
        print(f"predict {len(images)} image(s), {len(vocabulary)} classes ({vocabulary_source}), "
              f"{describe_source(predictor.source)}, {cfg.eval.mode} inference on {predictor.device} "
              f"-> {args.out}", flush=True)
        for record in predict_images(predictor, images, vocabulary, args.out):
            top = ", ".join(f"{c['name']} {100 * c['pixel_share']:.0f}%" for c in record["classes"][:5])
            print(f"{args.out / record['labels']}: {len(record['classes'])} classes ({top})", flush=True)
    except Exception as err:  # bad input: one line naming it, exit 2; a bug: the traceback, exit 1
        return failed(err, rerun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
