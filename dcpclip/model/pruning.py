"""Step 2 of DCP-CLIP, coarse category recognition -> top-K pruning, and its ablation `KeepAll`.

Each class is scored from CLIP's own open-vocabulary recognition: the image-level similarity
cos(g, T_c) and the dense maximum max_n cos(P_n, T_c) (which catches small objects), each taken relative
to the image's average over the vocabulary, combined by a learned affine calibration trained with a
multi-label presence BCE (`dcpclip.model.losses`). The centring cannot change which classes are kept (it
shifts every class of an image alike); with the bias starting at the logit of `head.presence_prior`, it
starts the BCE near the prior's entropy instead of where raw cosines put it (all 171 classes near
probability 1 at init: BCE 2.6 in the first offline steps, 0.19 with the centring; offline mIoU of `full`
PAS-20 / PC-59 / A-150 17.6 / 4.9 / 2.9 -> 18.2 / 11.2 / 4.5). The top-K
classes per image are kept. This follows the "category early rejection" of SED (Xie et al., CVPR 2024),
here scored from the CLIP embeddings rather than from decoder features. During training the image's
ground-truth classes are forced into the kept set, so the segmentation loss always sees them.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from dcpclip.model.backbone import ImageFeatures


@dataclasses.dataclass
class Selection:
    kept: torch.Tensor  # [B, K] long, ascending vocabulary indices
    presence_logits: torch.Tensor | None  # [B, C]
    recall: torch.Tensor | None  # [B] share of ground-truth classes in the pruner's own choice (NaN: none)


def class_presence(targets: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """targets [B, H, W] long -> [B, C] bool, whether class c labels at least one pixel of image b."""
    batch = targets.shape[0]
    labels = targets.reshape(batch, -1)
    valid = labels != ignore_index
    bad = labels[valid & ((labels < 0) | (labels >= num_classes))]
    if bad.numel():
        raise ValueError(
            f"targets hold label {int(bad[0])}, outside 0..{num_classes - 1} (vocabulary of {num_classes}) "
            f"and not the ignore index {ignore_index}"
        )
    rows = torch.arange(batch, device=targets.device)[:, None].expand_as(labels)
    flat = (rows * num_classes + labels)[valid]
    counts = torch.bincount(flat, minlength=batch * num_classes)
    return counts.view(batch, num_classes) > 0


def choice_recall(choice: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """choice [B, K] indices, present [B, C] bool -> [B] share of present classes chosen (NaN if none)."""
    hits = present.gather(1, choice).sum(dim=1)
    return hits.float() / present.sum(dim=1).float()


class CategoryPruner(nn.Module):
    def __init__(self, top_k: int, scale_init: float, prior: float):
        super().__init__()
        if top_k < 1:
            raise ValueError(f"head.top_k must be >= 1, got {top_k}")
        if not 0 < prior < 1:
            raise ValueError(f"head.presence_prior must be in (0, 1), got {prior}")
        self.top_k = top_k
        self.calibration = nn.Linear(2, 1)  # (image-level cos, dense max cos), centred -> presence logit
        nn.init.constant_(self.calibration.weight, scale_init)
        nn.init.constant_(self.calibration.bias, math.log(prior / (1 - prior)))

    def presence_logits(self, features: ImageFeatures, text_bank: torch.Tensor) -> torch.Tensor:
        """-> [B, C] calibrated presence scores, fp32 even under autocast: top-K ranks them, and bf16 spaces
        cosines ~0.004 apart, so near-equal classes would tie; text_bank [C, D] L2-normalised."""
        with torch.autocast(text_bank.device.type, enabled=False):
            text_bank = text_bank.float()
            image = F.normalize(features.global_embedding.float(), dim=-1)  # [B, D]
            dense = F.normalize(features.dense.flatten(2).float(), dim=1)  # [B, D, h*w]
            image_similarity = image @ text_bank.T  # [B, C]
            dense_similarity = torch.einsum("cd,bdn->bcn", text_bank, dense).amax(dim=-1)  # [B, C]
            cues = torch.stack([image_similarity, dense_similarity], dim=-1)  # [B, C, 2]
            cues = cues - cues.mean(dim=1, keepdim=True)  # relative to the image's average class
            return self.calibration(cues).squeeze(-1)

    def forward(
        self, features: ImageFeatures, text_bank: torch.Tensor, present: torch.Tensor | None, force: bool
    ) -> Selection:
        """present [B, C] bool (ground-truth classes) or None; force: keep every present class."""
        scores = self.presence_logits(features, text_bank)  # [B, C]
        num_classes = scores.shape[1]
        k = min(self.top_k, num_classes)
        choice = scores.detach().topk(k, dim=1).indices  # [B, k] the pruner's own choice
        recall = choice_recall(choice, present) if present is not None else None
        if force and present is not None:
            forced = scores.detach().masked_fill(present, float("inf"))
            k = min(num_classes, max(k, int(present.sum(dim=1).max())))
            choice = forced.topk(k, dim=1).indices  # [B, K] every ground-truth class first
        return Selection(choice.sort(dim=1).values, scores, recall)


class KeepAll(nn.Module):
    """No pruning (the `no_prune` ablation and the training-free baseline): K = C."""

    def forward(
        self, features: ImageFeatures, text_bank: torch.Tensor, present: torch.Tensor | None, force: bool
    ) -> Selection:
        batch, num_classes = features.dense.shape[0], text_bank.shape[0]
        kept = torch.arange(num_classes, device=text_bank.device).expand(batch, num_classes)  # [B, C]
        recall = choice_recall(kept, present) if present is not None else None
        return Selection(kept, None, recall)
