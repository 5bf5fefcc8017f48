"""Image-text recognition: the objective that pre-trains a random-init CLIP on segmentation labels.

DCP-CLIP's coarse step assumes a CLIP that already recognises categories (OpenAI's weights, trained on
web image-caption pairs). The offline profile's tiny CLIP starts from random weights, so it is first
pre-trained the way CLIP is, contrastively, with the training set's labels as captions: each crop's
global embedding is scored against the text embeddings of every training class (all of the vocabulary
as negatives, so no in-batch false negatives), and the target is the share of the crop's labelled
pixels each class covers (a soft label; a one-class crop gives CLIP's usual one-hot target).

An optional dense term applies the same objective to every patch embedding against its cell's class
shares. CLIP itself never sees dense labels, so the offline profile leaves it off (weight 0): with it,
the training-free dense baseline would read the synthetic classes off the patches and outscore every
trained variant, which no real CLIP does.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from dcpclip.model.backbone import ClipBackbone

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp of its learnt temperature


@dataclasses.dataclass
class RecognitionOutput:
    image_logits: torch.Tensor  # [B, C] scaled cosine of the global embedding with each class
    dense_logits: torch.Tensor  # [B, C, h, w] scaled cosine of each patch embedding with each class


class ClipRecognition(nn.Module):
    """CLIP scoring images against a vocabulary, with the model contract of `dcpclip.engine.trainer.fit`."""

    def __init__(self, backbone: ClipBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor, text_bank: torch.Tensor, targets: torch.Tensor | None = None):
        """images [B, 3, S, S] CLIP-normalised, text_bank [C, D] L2-normalised; targets unused."""
        features = self.backbone.encode_image(images)
        scale = self.backbone.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        image = F.normalize(features.global_embedding, dim=-1)  # [B, D]
        dense = F.normalize(features.dense, dim=1)  # [B, D, h, w]
        return RecognitionOutput(
            image_logits=scale * image @ text_bank.T,  # [B, C]
            dense_logits=scale * torch.einsum("bdhw,cd->bchw", dense, text_bank),  # [B, C, h, w]
        )


def class_shares(
    targets: torch.Tensor, num_classes: int, grid: tuple[int, int], ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """targets [B, H, W] labels, cut into a grid of gh x gw cells (H, W multiples of gh, gw) ->
    (shares [B, C, gh, gw]: each class's share of the cell's labelled pixels, 0 where none is labelled;
     labelled [B, gh, gw]: the share of the cell's pixels that carry a label)."""
    batch, height, width = targets.shape
    rows, cols = grid
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} label map does not split into a {rows}x{cols} grid")
    valid = targets != ignore_index
    labels = targets.where(valid, 0)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"targets hold labels outside 0..{num_classes - 1} that are not the ignore index")
    row = torch.arange(height, device=targets.device) // (height // rows)  # [H]
    col = torch.arange(width, device=targets.device) // (width // cols)  # [W]
    image = torch.arange(batch, device=targets.device)
    cell = (image[:, None, None] * rows + row[None, :, None]) * cols + col[None, None, :]  # [B, H, W]
    counts = torch.bincount((cell * num_classes + labels)[valid], minlength=batch * rows * cols * num_classes)
    counts = counts.view(batch, rows, cols, num_classes).permute(0, 3, 1, 2).float()  # [B, C, gh, gw]
    labelled = counts.sum(dim=1)  # [B, gh, gw]
    shares = counts / labelled.clamp_min(1.0)[:, None]
    return shares, labelled / ((height // rows) * (width // cols))


def soft_cross_entropy(logits: torch.Tensor, shares: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """logits, shares [N, C]; keep [N] bool -> mean over kept rows of -sum_c share_c log softmax_c
    (0, still attached to the graph, when no row is kept)."""
    if not keep.any():
        return logits.sum() * 0.0
    return -(shares[keep] * logits[keep].log_softmax(dim=1)).sum(dim=1).mean()


def recognition_losses(
    output: RecognitionOutput, targets: torch.Tensor, dense_weight: float, ignore_index: int = 255
) -> dict[str, torch.Tensor]:
    """-> {"image", ["dense" when dense_weight > 0], "total"}; targets [B, S, S] training labels."""
    num_classes = output.image_logits.shape[1]
    image_shares, image_labelled = class_shares(targets, num_classes, (1, 1), ignore_index)  # [B, C, 1, 1]
    losses = {"image": soft_cross_entropy(output.image_logits, image_shares.flatten(1), image_labelled.flatten() > 0)}
    total = losses["image"]
    if dense_weight > 0:
        grid = tuple(output.dense_logits.shape[-2:])
        shares, labelled = class_shares(targets, num_classes, grid, ignore_index)  # [B, C, h, w], [B, h, w]
        logits = output.dense_logits.permute(0, 2, 3, 1).flatten(0, 2)  # [B*h*w, C]
        keep = labelled.flatten() >= 0.5  # cells at least half labelled (padding is unlabelled)
        losses["dense"] = soft_cross_entropy(logits, shares.permute(0, 2, 3, 1).flatten(0, 2), keep)
        total = total + dense_weight * losses["dense"]
    losses["total"] = total
    return losses
