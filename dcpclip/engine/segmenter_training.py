"""Train one DCP-CLIP run of an `ExperimentConfig`: the variant's model with its trainable CLIP parameters
(`dcpclip.model.trainable`), the prepared training set, the 171-name text bank and the segmentation losses,
through the generic loop `dcpclip.engine.trainer.fit`."""

from __future__ import annotations

import open_clip
import torch

from dcpclip import paths
from dcpclip.config import ExperimentConfig
from dcpclip.data.datasets import read_class_names, training_dataset
from dcpclip.data.specs import SPECS
from dcpclip.engine.checkpoint import run_status
from dcpclip.engine.trainer import MetricsSink, TrainingResult, fit, training_device
from dcpclip.model.build import run_model
from dcpclip.model.losses import segmentation_losses
from dcpclip.model.text_bank import encode_tokens, tokenize_vocabulary


def train_experiment(
    cfg: ExperimentConfig,
    *,
    device: torch.device | str | None = None,
    sink: MetricsSink | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train the run of `cfg` into `dcpclip.paths.run_dir(cfg)`: skip it when done (before anything is built
    or loaded), resume it when interrupted, retrain it from scratch when it holds another training identity.

    The model is DCP-CLIP of `cfg.variant` with `head.clip_trainable` CLIP parameters; the data is the
    prepared training set `cfg.data.train_dataset` with its full vocabulary (171 COCO-Stuff names)."""
    if not cfg.trains:
        raise ValueError(f"variant {cfg.variant!r} is training-free: it has no training run")
    identity = paths.training_identity(cfg)
    folder = paths.run_dir(cfg)
    if run_status(folder, paths.fingerprint(identity)) == "done":
        return TrainingResult("skipped", folder, paths.fingerprint(identity), cfg.train.iterations,
                              cfg.train.iterations, 0.0)
    device = training_device(cfg.train, device)

    spec = SPECS[cfg.data.train_dataset]
    names = read_class_names(cfg.data.root, spec)
    dataset = training_dataset(cfg.data.root, spec, cfg.train.crop_size, cfg.seed)
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    vocabulary = tokenize_vocabulary(open_clip.get_tokenizer(cfg.backbone.arch), names, cfg.text)
    text_trains = any(p.requires_grad for p in model.backbone.text_parameters())
    return fit(
        model,
        model.backbone,
        dataset,
        lambda: encode_tokens(model.backbone, vocabulary, cfg.text.batch_size),  # [171, D]
        lambda output, targets: segmentation_losses(output, targets, cfg.head),
        cfg.train,
        seed=cfg.seed,
        run_dir=folder,
        identity=identity,
        text_bank_trains=text_trains,
        device=device,
        sink=sink,
        num_workers=cfg.data.num_workers,
        progress=progress,
    )
