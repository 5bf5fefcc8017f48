"""Pre-train a random-init CLIP on the training set (`pretrain.enabled`, the offline profile), so that the
segmentation runs start from a CLIP that recognises the training classes, as they would from OpenAI's.

The objective is `dcpclip.model.recognition`; the loop is the segmentation trainer's `fit` (same recipe
code, exact resume, refusal of a folder of another config), run in `<pretrain.dir>/run` with every CLIP
parameter trainable and the text bank of the 171 training names recomputed with gradients each step.
The data order and the initialisation are seeded by `backbone.init_seed`: every segmentation seed starts
from the same pre-trained CLIP, as every paper run starts from the same OpenAI weights.

The result is exported as a plain open_clip state dict to `<pretrain.dir>/clip.pt` (what
`backbone.pretrained` names, loaded by `open_clip.create_model`) with `clip.json` beside it: its
pre-training identity and fingerprint, its sha256 and its steps. The export is redone from the final checkpoint
whenever the record does not match, so deleting either file and rerunning restores both without training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import open_clip
import torch

from dcpclip import paths
from dcpclip.atomic import atomic_file, write_text
from dcpclip.config import ExperimentConfig, pretrained_clip_file
from dcpclip.data.datasets import read_class_names, training_dataset
from dcpclip.data.specs import SPECS
from dcpclip.engine.checkpoint import load_checkpoint, load_trainable_state, run_status
from dcpclip.engine.trainer import MetricsSink, TrainingResult, fit, training_device
from dcpclip.model.backbone import build_backbone
from dcpclip.model.recognition import ClipRecognition, recognition_losses
from dcpclip.model.text_bank import encode_tokens, tokenize_vocabulary

RECORD_KIND = "pretrained-clip"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exported_record(cfg: ExperimentConfig) -> dict | None:
    """The record of `<pretrain.dir>/clip.pt` when it is this config's finished export, else None."""
    record_path, weights = paths.pretrained_clip_record_path(cfg), Path(pretrained_clip_file(cfg.pretrain))
    try:
        record = json.loads(record_path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    fingerprint = paths.fingerprint(paths.pretrain_identity(cfg))
    if record.get("fingerprint") != fingerprint or not record.get("pretrained_here"):  # another config or format
        return None
    if not weights.is_file() or sha256_of(weights) != record.get("sha256"):
        return None
    return record


def pretrain_status(cfg: ExperimentConfig) -> str:
    """"exported" (clip.pt and its record match this config), or the run folder's status: "fresh",
    "resumable", "done" (trained, not exported), "mismatch" (a run of another identity, retrained from scratch)."""
    if exported_record(cfg) is not None:
        return "exported"
    return run_status(paths.pretrain_run_dir(cfg), paths.fingerprint(paths.pretrain_identity(cfg)))


def pretrain_clip(
    cfg: ExperimentConfig,
    *,
    device: torch.device | str | None = None,
    sink: MetricsSink | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Pre-train (or resume, or skip) the CLIP of `cfg` and export it; see the module docstring."""
    if not cfg.pretrain.enabled:
        raise ValueError("pretrain.enabled is false: this config loads its CLIP weights, it does not pre-train one")
    identity = paths.pretrain_identity(cfg)
    folder = paths.pretrain_run_dir(cfg)
    if pretrain_status(cfg) == "exported":
        steps = cfg.pretrain.train.iterations
        return TrainingResult("skipped", folder, paths.fingerprint(identity), steps, steps, 0.0)
    train_cfg = cfg.pretrain.train
    device = training_device(train_cfg, device)

    backbone = build_backbone(dataclasses.replace(cfg.backbone, pretrained=None))  # seeded by init_seed
    backbone.requires_grad_(True)
    model = ClipRecognition(backbone)
    spec = SPECS[cfg.data.train_dataset]
    names = read_class_names(cfg.data.root, spec)
    vocabulary = tokenize_vocabulary(open_clip.get_tokenizer(cfg.backbone.arch), names, cfg.text)
    result = fit(
        model,
        backbone,
        training_dataset(cfg.data.root, spec, train_cfg.crop_size, cfg.backbone.init_seed),
        lambda: encode_tokens(backbone, vocabulary, cfg.text.batch_size),  # [171, D]
        lambda output, targets: recognition_losses(output, targets, cfg.pretrain.dense_loss_weight),
        train_cfg,
        seed=cfg.backbone.init_seed,
        run_dir=folder,
        identity=identity,
        text_bank_trains=True,
        device=device,
        sink=sink,
        progress=progress,
    )
    export(cfg, model)
    return result


def export(cfg: ExperimentConfig, model: ClipRecognition) -> None:
    """Write the final checkpoint's CLIP as `<pretrain.dir>/clip.pt` and its record `clip.json`."""
    folder = paths.pretrain_run_dir(cfg)
    checkpoint = load_checkpoint(folder)
    load_trainable_state(model, checkpoint["model"], folder)
    weights = Path(pretrained_clip_file(cfg.pretrain))
    with atomic_file(weights) as out:
        torch.save(model.backbone.clip.state_dict(), out)
    record = {
        "kind": RECORD_KIND,
        "arch": cfg.backbone.arch,
        "pretrained_here": True,
        "file": weights.name,
        "sha256": sha256_of(weights),
        "fingerprint": paths.fingerprint(paths.pretrain_identity(cfg)),
        "identity": paths.pretrain_identity(cfg),
        "steps": checkpoint["step"],
    }
    write_text(paths.pretrained_clip_record_path(cfg), json.dumps(record, indent=2) + "\n")
