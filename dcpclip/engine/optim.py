"""AdamW with CAT-Seg's parameter groups and a cosine schedule without warmup.

CAT-Seg (KU-CVLAB/CAT-Seg, `train_net.py` build_optimizer, detectron2 conventions): every trainable CLIP
parameter runs at `lr * clip_lr_multiplier`; parameters of normalisation layers and embeddings get
`weight_decay_norm` (0 in the recipe) instead of `weight_decay`; the learning rate follows
lr * (1 + cos(pi * step / iterations)) / 2, reaching 0 at the last step. Gradient clipping by the total
norm of all trainable parameters is applied by the training loop (`trainer.py`), before each step.
The frozen key rows of packed q/k/v projections are held fixed through each step (`hold_key_rows`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dcpclip.engine.config import TrainConfig
from dcpclip.model.trainable import has_key_mask, key_rows

NORM_MODULES = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LocalResponseNorm,
    nn.Embedding,
)


def parameter_groups(model: nn.Module, clip: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters of `model` in up to four AdamW groups: (CLIP | head) x (weights | norms).

    `clip` is the CLIP submodule of `model` (its parameters get the multiplier). Each group carries a
    `name` ("head", "head_norm", "clip", "clip_norm"; "_norm": normalisation and embedding parameters)
    so logs and tests can find it."""
    clip_ids = {id(p) for p in clip.parameters()}
    norm_ids = {
        id(p) for m in model.modules() if isinstance(m, NORM_MODULES) for p in m.parameters(recurse=False)
    }
    groups: dict[str, dict] = {}
    for param in model.parameters():  # each shared parameter once
        if not param.requires_grad:
            continue
        tower = "clip" if id(param) in clip_ids else "head"
        is_norm = id(param) in norm_ids
        name = f"{tower}_norm" if is_norm else tower
        if name not in groups:
            groups[name] = {
                "name": name,
                "params": [],
                "lr": cfg.lr * (cfg.clip_lr_multiplier if tower == "clip" else 1.0),
                "weight_decay": cfg.weight_decay_norm if is_norm else cfg.weight_decay,
            }
        groups[name]["params"].append(param)
    if not groups:
        raise ValueError("the model has no trainable parameters: nothing to optimise")
    order = ("head", "head_norm", "clip", "clip_norm")
    return [groups[n] for n in order if n in groups]


def build_optimizer(model: nn.Module, clip: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    optimizer = torch.optim.AdamW(parameter_groups(model, clip, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hold_key_rows(optimizer)
    return optimizer


def hold_key_rows(optimizer: torch.optim.Optimizer) -> None:
    """Keep the masked key rows of packed q/k/v projections (`dcpclip.model.trainable`) exactly where they
    are: their gradient is zero, but AdamW's decoupled weight decay shrinks every element it is given.
    Each step saves those rows first and writes them back after."""
    held = [p for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]
            if has_key_mask(p)]
    if not held:
        return
    saved: list[torch.Tensor] = []

    def save(*_) -> None:
        saved[:] = [p.detach()[key_rows(p)].clone() for p in held]

    def restore(*_) -> None:
        with torch.no_grad():
            for param, rows in zip(held, saved, strict=True):
                param[key_rows(param)] = rows
        saved.clear()

    optimizer.register_step_pre_hook(save)
    optimizer.register_step_post_hook(restore)


def cosine_factor(step: int, iterations: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based): 1 at step 0, -> 0 at `iterations`."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, iterations) / iterations))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step cosine decay of every group's learning rate (call `.step()` after each optimiser step)."""
    iterations = cfg.iterations
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, iterations))
