"""Step 7 of DCP-CLIP: the kept classes' logits at input resolution, and (only where a caller asks for
it) back into the full vocabulary. Nothing else in the forward pass grows with C x H x W."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# kept logits are floored at pruned_logit + KEPT_MARGIN: the argmax never picks a pruned class
KEPT_MARGIN = 1.0


def upsample_kept(kept_logits: torch.Tensor, size: tuple[int, int], pruned_logit: float) -> torch.Tensor:
    """kept_logits [B, K, h, w] -> [B, K, *size], floored at pruned_logit + KEPT_MARGIN (the floor only
    touches logits below it; losses use the unfloored kept_logits)."""
    upsampled = F.interpolate(kept_logits, size=size, mode="bilinear", align_corners=False)  # [B, K, H, W]
    return upsampled.clamp_min(pruned_logit + KEPT_MARGIN)


def scatter_to_vocabulary(
    kept_logits: torch.Tensor, kept: torch.Tensor, num_classes: int, pruned_logit: float
) -> torch.Tensor:
    """kept_logits [B, K, H, W] at input resolution, kept [B, K] -> [B, C, H, W]; classes not kept get
    `pruned_logit`. O(C x H x W): for losses over all C and tests, never on the inference path."""
    batch, _, height, width = kept_logits.shape
    full = kept_logits.new_full((batch, num_classes, height, width), pruned_logit)
    return full.scatter_(1, kept[:, :, None, None].expand_as(kept_logits), kept_logits)
