"""Step 4 of DCP-CLIP: coarse segmentation by text -> vision interaction.

Visual tokens attend to the K textual features (cross-attention), then the cosine similarity of every
updated token with every textual feature forms the volume [B, K, h, w]. Each class map is aggregated
spatially on its own by a shared convolutional stack (the cost-volume aggregation of CAT-Seg, Cho et
al., CVPR 2024, with convolutions instead of Swin blocks and no class-axis aggregation: classes meet
only in the cross-attention). This is the stage whose cost grows linearly with K.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from dcpclip.model.conv_block import ResidualConvBlock
from dcpclip.model.cross_attention import CrossAttentionBlock


@dataclasses.dataclass
class CoarseMaps:
    visual: torch.Tensor  # [B, D, h, w] visual tokens after attending to the classes
    class_features: torch.Tensor  # [B, K, hidden, h, w] aggregated per-class maps
    logits: torch.Tensor  # [B, K, h, w] coarse class maps


class TextToVisionSegmenter(nn.Module):
    def __init__(
        self,
        dim: int,
        inner_dim: int,
        num_heads: int,
        attention_layers: int,
        hidden_dim: int,
        aggregation_layers: int,
    ):
        super().__init__()
        if attention_layers < 1:
            raise ValueError(f"head.text_to_vision_layers must be >= 1, got {attention_layers}")
        self.attention = nn.ModuleList(
            CrossAttentionBlock(dim, inner_dim, num_heads) for _ in range(attention_layers)
        )
        self.embed = nn.Conv2d(1, hidden_dim, kernel_size=3, padding=1)  # shared over class maps
        self.aggregate = nn.Sequential(*(ResidualConvBlock(hidden_dim) for _ in range(aggregation_layers)))
        self.to_logit = nn.Conv2d(hidden_dim, 1, kernel_size=1)

    def forward(self, dense: torch.Tensor, text: torch.Tensor) -> CoarseMaps:
        """dense [B, D, h, w], text [B, K, D] -> coarse maps of the K classes."""
        batch, dim, height, width = dense.shape
        num_kept = text.shape[1]
        tokens = dense.flatten(2).transpose(1, 2)  # [B, h*w, D]
        for block in self.attention:
            tokens = block(tokens, text)
        visual = tokens.transpose(1, 2).reshape(batch, dim, height, width)  # [B, D, h, w]
        volume = torch.einsum("bkd,bdhw->bkhw", F.normalize(text, dim=-1), F.normalize(visual, dim=1))
        maps = volume.reshape(batch * num_kept, 1, height, width)  # each class map on its own
        features = self.aggregate(self.embed(maps))  # [B*K, hidden, h, w]
        logits = self.to_logit(features).view(batch, num_kept, height, width)
        return CoarseMaps(visual, features.view(batch, num_kept, -1, height, width), logits)
