"""Step 3 of DCP-CLIP: dynamic textual features. Each kept class embedding attends to the image's dense
visual embeddings, so the textual guidance becomes image-specific (text-side conditioning as in
DenseCLIP's context-aware prompting, Rao et al., CVPR 2022). `StaticText` is the `static_text`
ablation: the fixed CLIP text embeddings pass through."""

from __future__ import annotations

import torch
from torch import nn

from dcpclip.model.cross_attention import CrossAttentionBlock


class DynamicText(nn.Module):
    def __init__(self, dim: int, inner_dim: int, num_heads: int, layers: int):
        super().__init__()
        if layers < 1:
            raise ValueError(f"head.dynamic_text_layers must be >= 1, got {layers}")
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, inner_dim, num_heads) for _ in range(layers))

    def forward(self, text: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """text [B, K, D] kept class embeddings, dense [B, D, h, w] -> [B, K, D] image-specific."""
        visual = dense.flatten(2).transpose(1, 2)  # [B, h*w, D]
        for block in self.blocks:
            text = block(text, visual)
        return text


class StaticText(nn.Module):
    def forward(self, text: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """text [B, K, D] -> the same tensor: independent of the image."""
        return text
