"""Segment any image with any vocabulary, with a trained run or the training-free dense-CLIP baseline.

The image goes through exactly the evaluation path: the protocol's resize (`EvalResize`), the inference of
`EvalConfig.mode` (`dcpclip.engine.inference.predict_labels`: sliding windows or one whole-image pass) and
the label map at the original size; class names go through the same cached text banks
(`dcpclip.paths.text_cache_dir`). A trained run is rebuilt as evaluation rebuilds it: the frozen CLIP from
the config, the trained state from the run's checkpoint, after checking that the run was trained with the
model config composed here (same backbone and variant-resolved head).

Per image, three files in the output folder, each written atomically:
    <stem>_labels.png    label map, indices into the vocabulary (uint8 for C <= 256, else uint16)
    <stem>_overlay.png   the label colours blended with the image, and a legend of the classes present
    <stem>.json          pixel shares of the classes present, the vocabulary, the classes the pruner kept
                         (union over the inference views), image size, model source, inference settings
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image

from dcpclip.atomic import atomic_path, write_text
from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import to_dict
from dcpclip.data.datasets import read_class_names, read_image
from dcpclip.data.specs import SPECS
from dcpclip.data.transforms import EvalResize
from dcpclip.engine.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_identity,
    load_checkpoint,
    load_trainable_state,
    run_status,
    trainable_state,
)
from dcpclip.engine.inference import InferenceSettings, predict_labels
from dcpclip.errors import ExpectedError
from dcpclip.model.build import run_model
from dcpclip.model.text_bank import TextBankCache
from dcpclip.overlay import LegendEntry, draw_overlay, legend_entries
from dcpclip.paths import head_identity, text_cache_dir
from dcpclip.paths import run_dir as default_run_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
UINT8_CLASSES = 256  # label maps of vocabularies up to this size are uint8 PNGs, larger ones uint16


class PredictInputError(ExpectedError, ValueError):
    """Bad input to prediction (image, vocabulary or model source); the message names it."""


# ---- inputs ---------------------------------------------------------------------------------------------
def collect_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Image files, and the images directly inside folders (sorted), in the order given. Each output is
    named after its image's stem, so two images with one stem are refused."""
    if not inputs:
        raise PredictInputError("no input images given")
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PredictInputError(f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif item.is_file():
            images.append(item)
        else:
            raise PredictInputError(f"{item}: image file or folder not found")
    first_with_stem: dict[str, Path] = {}
    for path in images:
        other = first_with_stem.setdefault(path.stem, path)
        if other != path:
            raise PredictInputError(
                f"{other} and {path} share the name {path.stem!r}: their outputs would overwrite each other"
            )
    return images


def read_vocabulary(spec: str, data_root: str | os.PathLike) -> tuple[list[str], str]:
    """A vocabulary from `spec` -> (class names, where they came from):
    - a text file (an existing path, or anything with a folder or a file extension): one name per line;
    - a benchmark key (`a150`, `pc59`, ...): the prompt names of its prepared `classes.json`;
    - otherwise names separated by commas ("cat, dog, sky"; a name listing synonyms needs a file).
    Blank entries are skipped. Names given by the user must be distinct (case and spacing ignored, as
    CLIP's tokenizer ignores them); a benchmark's list is taken as the protocol pins it."""
    path = Path(spec)
    if path.is_file() or ("," not in spec and (path.suffix or os.sep in spec)):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PredictInputError(f"vocabulary file {path} not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise PredictInputError(f"vocabulary file {path}: unreadable ({err})") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        return check_names(names, f"vocabulary file {path}"), str(path)
    if spec in SPECS:
        return read_class_names(data_root, SPECS[spec]), f"benchmark {spec}"
    if "," not in spec:
        raise PredictInputError(
            f"unknown benchmark key {spec!r} (known: {', '.join(SPECS)}); separate class names with commas "
            "or pass a text file with one name per line"
        )
    names = [name.strip() for name in spec.split(",") if name.strip()]
    return check_names(names, f"vocabulary {spec!r}"), "command line"


def check_names(names: list[str], source: str) -> list[str]:
    if not names:
        raise PredictInputError(f"{source}: the vocabulary is empty")
    seen: dict[str, str] = {}
    duplicates = []
    for name in names:
        key = " ".join(name.casefold().split())
        if key in seen:
            duplicates.append(f"{seen[key]!r} and {name!r}" if seen[key] != name else repr(name))
        else:
            seen[key] = name
    if duplicates:
        raise PredictInputError(f"{source}: duplicate class names {', '.join(duplicates)}")
    return names


# ---- model ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Predictor:
    """A segmenter in eval mode on its device, with the settings evaluation uses for it."""

    model: torch.nn.Module
    settings: InferenceSettings
    resize: EvalResize
    text_banks: TextBankCache
    cfg: ExperimentConfig
    device: torch.device
    source: dict[str, Any]  # model source, as recorded in each prediction's JSON

    def text_bank(self, names: list[str]) -> torch.Tensor:
        """[C, D] class embeddings (cached on disk per vocabulary and text weights)."""
        return self.text_banks.get(self.model.backbone, names, self.cfg.text).to(self.device)


def load_predictor(
    cfg: ExperimentConfig, run: str | os.PathLike | None = None, device: str | torch.device | None = None
) -> Predictor:
    """The model of `cfg`: training-free (`variant=zero_shot`) or trained in `run` (default: the run folder
    of `cfg`, `dcpclip.paths.run_dir`). Runs on CUDA when available unless `device` says otherwise."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone_source = {"arch": cfg.backbone.arch, "pretrained": cfg.backbone.pretrained}
    if cfg.trains:
        folder = Path(run) if run is not None else default_run_dir(cfg)
        stored_fingerprint, step = check_run(folder, cfg)
        model = run_model(cfg.backbone, cfg.head, cfg.seed)  # the layout its checkpoint holds
        load_run_state(model, folder)
        source = {"kind": "run", "run_dir": str(folder), "step": step, "fingerprint": stored_fingerprint,
                  "finished": run_status(folder, stored_fingerprint) == "done", "variant": cfg.variant,
                  **backbone_source}
    elif run is not None:
        raise PredictInputError(f"variant {cfg.variant!r} is training-free: it has no run to load ({run})")
    else:
        model = run_model(cfg.backbone, cfg.head, cfg.seed)
        source = {"kind": "zero-shot", "variant": cfg.variant, **backbone_source}
    model.to(device).eval()
    patch_size = model.backbone.patch_size
    return Predictor(
        model=model,
        settings=InferenceSettings.from_config(cfg.eval, cfg.backbone.image_size, cfg.head.seg_loss, patch_size),
        resize=EvalResize(cfg.eval.short_side, cfg.eval.max_long_side),
        text_banks=TextBankCache(text_cache_dir(cfg), cfg.backbone.arch),
        cfg=cfg,
        device=device,
        source=source,
    )


def check_run(folder: Path, cfg: ExperimentConfig) -> tuple[str, int]:
    """Refuse a run folder without a checkpoint, or one trained with another backbone or head than `cfg`
    composes (the frozen CLIP is rebuilt from `cfg`, so it must be the run's). -> (fingerprint, step)."""
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        raise PredictInputError(
            f"run folder {folder}: no {CHECKPOINT_NAME}; train it first (python -m experiments.train with "
            "the same overrides), pass --run with a trained run folder, or --zero-shot"
        )
    try:
        fingerprint, identity, step = checkpoint_identity(folder)
        trained = {"backbone": identity["backbone"], "head": identity["head"]}
    except (KeyError, TypeError, RuntimeError, OSError) as err:
        raise PredictInputError(
            f"{path}: not a readable training checkpoint ({type(err).__name__}: {err})"
        ) from None
    composed = {"backbone": to_dict(cfg.backbone), "head": head_identity(cfg.head)}
    differences = [
        f"{section}.{key}: {trained[section].get(key, '<absent>')!r} (run) vs {value!r} (composed)"
        for section in composed
        for key, value in composed[section].items()
        if trained[section].get(key, "<absent>") != value
    ]
    if differences:
        run_dim, composed_dim = (_embed_dim(tree["backbone"]["arch"]) for tree in (trained, composed))
        dims = f" (embedding dimension {run_dim} vs {composed_dim})" if run_dim != composed_dim else ""
        raise PredictInputError(
            f"run {folder} was trained with another model than the config composed here{dims}: "
            f"{'; '.join(differences)}. Pass the overrides the run was trained with (e.g. profile=..., "
            "model=..., variant=...)."
        )
    return fingerprint, step


def _embed_dim(arch: str) -> int | str:
    config = open_clip.get_model_config(arch)
    return config["embed_dim"] if config else f"unknown (architecture {arch!r} is not registered)"


def load_run_state(model: torch.nn.Module, folder: Path) -> None:
    """Copy the run's trained state into `model`, explaining any tensor that does not fit."""
    path = folder / CHECKPOINT_NAME
    state = load_checkpoint(folder)["model"]  # an unreadable one: CorruptCheckpointError, naming it
    expected = trainable_state(model)
    misfits = [
        f"{name} {list(state[name].shape)} (checkpoint) vs {list(tensor.shape)} (model)"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if misfits:
        raise PredictInputError(
            f"{path}: {len(misfits)} trained tensors do not fit the model built from this config, so the run "
            f"comes from another architecture or embedding dimension: {'; '.join(misfits[:3])}"
        )
    try:
        load_trainable_state(model, state, path)
    except ValueError as err:
        raise PredictInputError(str(err)) from None


# ---- prediction -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Segmentation:
    image: np.ndarray  # [H, W, 3] uint8
    labels: np.ndarray  # [H, W] int64 vocabulary indices
    kept: np.ndarray | None  # [C] bool, kept by the pruner in at least one view
    views: int
    input_size: tuple[int, int]  # (h, w) after the protocol's resize


def segment(predictor: Predictor, path: Path, text_bank: torch.Tensor) -> Segmentation:
    """One image file -> its label map at the original size, through the evaluation path."""
    image = read_image(path)  # [H, W, 3]
    prepared = predictor.resize(image).to(predictor.device)  # [3, h, w]
    prediction = predict_labels(predictor.model, prepared, text_bank, predictor.settings, image.shape[:2])
    kept = prediction.kept.cpu().numpy() if prediction.kept is not None else None
    labels = prediction.labels.cpu().numpy()  # [H, W]
    return Segmentation(image, labels, kept, prediction.views, tuple(prepared.shape[-2:]))


def output_paths(out_dir: str | os.PathLike, image: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {
        "labels": out_dir / f"{image.stem}_labels.png",
        "overlay": out_dir / f"{image.stem}_overlay.png",
        "record": out_dir / f"{image.stem}.json",
    }


def write_png(path: Path, picture: Image.Image) -> None:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def write_prediction(
    predictor: Predictor, path: Path, result: Segmentation, vocabulary: list[str], out_dir: str | os.PathLike
) -> dict[str, Any]:
    """Write the label map, overlay and JSON record of one image; returns the record."""
    files = output_paths(out_dir, path)
    dtype = np.uint8 if len(vocabulary) <= UINT8_CLASSES else np.uint16
    write_png(files["labels"], Image.fromarray(result.labels.astype(dtype)))
    entries = legend_entries(result.labels, vocabulary)
    write_png(files["overlay"], draw_overlay(result.image, result.labels, entries, len(vocabulary)))
    settings = predictor.settings
    kept = None if result.kept is None else [n for n, k in zip(vocabulary, result.kept, strict=True) if k]
    record = {
        "image": str(path),
        "image_size": {"height": result.labels.shape[0], "width": result.labels.shape[1]},
        "labels": files["labels"].name,
        "overlay": files["overlay"].name,
        "classes": [entry_record(e) for e in entries],
        "vocabulary": vocabulary,
        "pruned_vocabulary": kept,
        "model": predictor.source,
        "inference": {
            "mode": settings.mode,
            "window": settings.window,
            "stride": settings.stride,
            "views": result.views,
            "short_side": predictor.resize.short_side,
            "max_long_side": predictor.resize.max_long_side,
            "input_size": {"height": result.input_size[0], "width": result.input_size[1]},
            "device": str(predictor.device),
        },
    }
    write_text(files["record"], json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return record


def entry_record(entry: LegendEntry) -> dict[str, Any]:
    share = round(entry.share, 6)
    return {"index": entry.index, "name": entry.name, "pixel_share": share, "color": list(entry.color)}


def predict_images(
    predictor: Predictor, images: list[Path], vocabulary: list[str], out_dir: str | os.PathLike
) -> Iterator[dict[str, Any]]:
    """Segment each image with `vocabulary` and write its three outputs; yields each JSON record once
    its files are written."""
    text_bank = predictor.text_bank(vocabulary)  # [C, D]
    for path in images:
        yield write_prediction(predictor, path, segment(predictor, path, text_bank), vocabulary, out_dir)
