"""Training losses of DCP-CLIP: per-pixel segmentation loss over the kept classes, the pruner's
multi-label presence BCE, and an optional auxiliary loss on the coarse class maps.

The segmentation loss follows CAT-Seg (Cho et al., CVPR 2024): fine logits are upsampled bilinearly to
the label resolution, then cross-entropy (or per-class binary cross-entropy) with the ignore index.
Targets hold vocabulary indices; they are remapped to positions in the kept set. A labelled class that
was not kept (possible only outside training, where ground-truth classes are not forced in) is ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcpclip.model.config import HeadConfig
from dcpclip.model.output import SegmenterOutput
from dcpclip.model.pruning import class_presence


def remap_to_kept(
    targets: torch.Tensor, kept: torch.Tensor, num_classes: int, ignore_index: int
) -> torch.Tensor:
    """targets [B, H, W] vocabulary indices, kept [B, K] -> [B, H, W] positions in kept; labels not kept
    and ignored pixels -> ignore_index."""
    batch, num_kept = kept.shape
    if 0 <= ignore_index < num_kept:
        raise ValueError(f"ignore_index {ignore_index} collides with kept-class positions 0..{num_kept - 1}")
    valid = targets != ignore_index
    labels = targets.where(valid, 0).reshape(batch, -1)  # [B, H*W]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.max()) if labels.max() >= num_classes else int(labels.min())
        raise ValueError(
            f"targets hold label {bad}, outside the vocabulary 0..{num_classes - 1} "
            f"and not the ignore index {ignore_index}"
        )
    lookup = kept.new_full((batch, num_classes), ignore_index)  # vocabulary index -> kept position
    lookup.scatter_(1, kept, torch.arange(num_kept, device=kept.device).expand(batch, num_kept))
    return lookup.gather(1, labels).view_as(targets).where(valid, ignore_index)


def pixel_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, ignore_index: int) -> torch.Tensor:
    """logits [B, K, H, W], labels [B, H, W] kept positions -> mean loss over labelled pixels
    (0, still attached to the graph, when no pixel is labelled)."""
    valid = labels != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    if kind == "ce":
        return F.cross_entropy(logits, labels, ignore_index=ignore_index)
    if kind == "bce":  # one binary problem per class at each labelled pixel, averaged over both
        per_pixel = logits.permute(0, 2, 3, 1)[valid]  # [N, K]
        one_hot = F.one_hot(labels[valid], logits.shape[1]).to(per_pixel.dtype)
        return F.binary_cross_entropy_with_logits(per_pixel, one_hot)
    raise ValueError(f"head.seg_loss must be 'ce' or 'bce', got {kind!r}")


def segmentation_losses(
    output: SegmenterOutput, targets: torch.Tensor, head_cfg: HeadConfig, ignore_index: int = 255
) -> dict[str, torch.Tensor]:
    """-> {"seg", ["prune"], ["aux"], "total"}: the active terms and their weighted sum."""
    size = tuple(targets.shape[-2:])
    labels = remap_to_kept(targets, output.kept, output.num_classes, ignore_index)  # [B, H, W]
    fine = F.interpolate(output.kept_logits, size=size, mode="bilinear", align_corners=False)
    losses = {"seg": pixel_loss(fine, labels, head_cfg.seg_loss, ignore_index)}
    total = losses["seg"]
    if output.presence_logits is not None and head_cfg.prune_loss_weight > 0:
        present = class_presence(targets, output.presence_logits.shape[1], ignore_index)  # [B, C]
        losses["prune"] = F.binary_cross_entropy_with_logits(output.presence_logits, present.float())
        total = total + head_cfg.prune_loss_weight * losses["prune"]
    if output.coarse_logits is not None and head_cfg.aux_loss_weight > 0:
        coarse = F.interpolate(output.coarse_logits, size=size, mode="bilinear", align_corners=False)
        losses["aux"] = pixel_loss(coarse, labels, head_cfg.seg_loss, ignore_index)
        total = total + head_cfg.aux_loss_weight * losses["aux"]
    losses["total"] = total
    return losses
