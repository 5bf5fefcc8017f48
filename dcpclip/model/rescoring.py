"""Step 6 of DCP-CLIP: vision -> text re-scoring. Visual features are pooled inside each class's soft
mask (the softmax of the fine logits over the kept classes), and a small MLP on (pooled feature, textual
feature) gives a per-class score added to that class's logits: spatial evidence from the segmentation
refines the category prediction of each mask (mask-pooled segment features as in ZegFormer's segment
classification, Ding et al., CVPR 2022, used here as a residual correction of the class logits).
`NoRescoring` is the `no_dual` ablation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskPooledRescorer(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 1))

    def scores(self, fine_logits: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """fine_logits [B, K, H/4, W/4], visual [B, D, h, w], text [B, K, D] -> [B, K] score per class."""
        masks = F.adaptive_avg_pool2d(fine_logits.softmax(dim=1), visual.shape[-2:]).flatten(2)  # [B, K, h*w]
        pooled = torch.einsum("bkn,bdn->bkd", masks, visual.flatten(2))  # [B, K, D]
        pooled = pooled / masks.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        pair = torch.cat([F.normalize(pooled, dim=-1), F.normalize(text, dim=-1)], dim=-1)  # [B, K, 2D]
        return self.mlp(pair).squeeze(-1)

    def forward(self, fine_logits: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return fine_logits + self.scores(fine_logits, visual, text)[..., None, None]


class NoRescoring(nn.Module):
    def forward(self, fine_logits: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return fine_logits
