"""Step 7 of DCP-CLIP: the kept classes' logits back into the full vocabulary at input resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# kept logits are floored at pruned_logit + KEPT_MARGIN: the argmax never picks a pruned class
KEPT_MARGIN = 1.0


def scatter_to_vocabulary(
    kept_logits: torch.Tensor,
    kept: torch.Tensor,
    num_classes: int,
    size: tuple[int, int],
    pruned_logit: float,
) -> torch.Tensor:
    """kept_logits [B, K, h, w], kept [B, K] -> [B, C, *size]; classes not kept get `pruned_logit`.
    The floor only touches logits below pruned_logit + KEPT_MARGIN; losses use the unfloored kept_logits."""
    upsampled = F.interpolate(kept_logits, size=size, mode="bilinear", align_corners=False)  # [B, K, H, W]
    upsampled = upsampled.clamp_min(pruned_logit + KEPT_MARGIN)
    batch = kept_logits.shape[0]
    full = upsampled.new_full((batch, num_classes, *size), pruned_logit)
    return full.scatter_(1, kept[:, :, None, None].expand_as(upsampled), upsampled)  # in place: no 2nd copy
