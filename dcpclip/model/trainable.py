"""Which parameters train. The head always trains (except in the training-free `zero_shot`); of CLIP,
`head.clip_trainable` picks none, all, or (default, as CAT-Seg fine-tunes) the query and value
projections of every attention block in both towers.

open_clip packs the q, k and v projections into one `in_proj_weight` [3E, E] (and `in_proj_bias` [3E]),
both in `nn.MultiheadAttention` and in its own `Attention`. Rather than patch or re-parametrise open_clip's
modules (which would change their state-dict keys), the packed tensors are marked trainable and a gradient
hook zeroes the key rows [E:2E]: Adam then leaves those rows unchanged (zero moments give a zero step).
AdamW's decoupled weight decay would still shrink them (by lr * weight_decay per step), so the optimiser
puts them back after each step (`dcpclip.engine.optim.hold_key_rows`): they stay bit-identical.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from dcpclip.model.config import HeadConfig

# id(parameter) -> (weak reference to it, hook handle); tensors cannot be dictionary keys themselves
_KEY_MASK_HOOKS: dict[int, tuple[weakref.ref, torch.utils.hooks.RemovableHandle]] = {}


def has_key_mask(param: nn.Parameter) -> bool:
    entry = _KEY_MASK_HOOKS.get(id(param))
    return entry is not None and entry[0]() is param


def packed_projections(module: nn.Module) -> list[nn.Parameter]:
    """The packed q/k/v projection tensors of every attention block (first dim 3E)."""
    found = []
    for block in module.modules():
        for name in ("in_proj_weight", "in_proj_bias"):
            param = getattr(block, name, None)
            if isinstance(param, nn.Parameter):
                found.append(param)
    return found


def key_rows(tensor: torch.Tensor) -> slice:
    """The key rows [E:2E] of a packed [3E, ...] q/k/v projection (or of its gradient)."""
    embed = tensor.shape[0] // 3
    return slice(embed, 2 * embed)


def _zero_key_rows(grad: torch.Tensor) -> torch.Tensor:
    """grad of a packed [3E, ...] projection -> same with the key rows [E:2E] zeroed."""
    grad = grad.clone()
    grad[key_rows(grad)] = 0
    return grad


def set_trainable(model: nn.Module, head_cfg: HeadConfig) -> None:
    """Set `requires_grad` on every parameter of a segmenter (one with `.backbone`) for `head_cfg`.
    Calling it again replaces the previous choice, hooks included."""
    for param in model.parameters():
        if has_key_mask(param):
            _KEY_MASK_HOOKS.pop(id(param))[1].remove()
    clip_ids = {id(p) for p in model.backbone.parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) not in clip_ids and not head_cfg.zero_shot)
    if head_cfg.zero_shot or head_cfg.clip_trainable == "none":
        return
    if head_cfg.clip_trainable == "all":
        model.backbone.requires_grad_(True)
        return
    if head_cfg.clip_trainable != "attn_qv":
        raise ValueError(
            f"head.clip_trainable must be 'attn_qv', 'none' or 'all', got {head_cfg.clip_trainable!r}"
        )
    projections = packed_projections(model.backbone)
    if not projections:
        raise ValueError(
            "head.clip_trainable='attn_qv': the backbone has no packed in_proj attention weights"
        )
    for param in projections:
        param.requires_grad_(True)
        _KEY_MASK_HOOKS[id(param)] = (weakref.ref(param), param.register_hook(_zero_key_rows))


def trainable_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """{"clip": trainable backbone parameters, "head": trainable others} (for the CLIP lr multiplier)."""
    clip_ids = {id(p) for p in model.backbone.parameters()}
    groups: dict[str, list[nn.Parameter]] = {"clip": [], "head": []}
    for param in model.parameters():
        if param.requires_grad:
            groups["clip" if id(param) in clip_ids else "head"].append(param)
    return groups


def trainable_count(model: nn.Module) -> int:
    """Number of scalars that train: parameters with requires_grad, less the masked key rows."""
    total = 0
    for param in model.parameters():
        if param.requires_grad:
            total += param.numel() - (param.numel() // 3 if has_key_mask(param) else 0)
    return total
