"""Step 5 of DCP-CLIP: coarse-to-fine refinement of the per-class maps with skip features from two
intermediate encoder blocks, at 1/8 and then 1/4 of the input size (the upsampling decoder of CAT-Seg,
Cho et al., CVPR 2024, with additive instead of concatenated guidance, which keeps the per-class cost low).

The refinement is residual: the fine logits are the coarse logits upsampled plus a correction predicted
from the refined class features, so the coarse maps stay a segmentation in their own right (and the
optional auxiliary loss supervises them directly). The skip features are computed once per image and
broadcast over the K classes; the deeper block guides the 1/8 stage and the shallower one the 1/4 stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcpclip.model.conv_block import ResidualConvBlock

STAGE_STRIDES = (8, 4)  # output stride of each refinement stage, relative to the input


class SkipProjection(nn.Module):
    """Raw encoder tokens [B, W, h, w] -> LayerNorm -> linear to `dim` -> bilinear resize."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        batch, _, height, width = tokens.shape
        x = self.proj(self.norm(tokens.flatten(2).transpose(1, 2)))  # [B, h*w, dim]
        x = x.transpose(1, 2).reshape(batch, -1, height, width)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # [B, dim, *size]


class CoarseToFineDecoder(nn.Module):
    def __init__(self, hidden_dim: int, vision_width: int, stage_dims: tuple[int, ...]):
        super().__init__()
        if len(stage_dims) != len(STAGE_STRIDES):
            raise ValueError(
                f"head.decoder_dims {list(stage_dims)}: need one width per refinement stage "
                f"(strides {list(STAGE_STRIDES)})"
            )
        in_dims = (hidden_dim, *stage_dims[:-1])
        self.skips = nn.ModuleList(SkipProjection(vision_width, d) for d in stage_dims)
        self.reduce = nn.ModuleList(
            nn.Conv2d(i, d, kernel_size=1) for i, d in zip(in_dims, stage_dims, strict=True)
        )
        self.fuse = nn.ModuleList(ResidualConvBlock(d) for d in stage_dims)
        self.to_logit = nn.Conv2d(stage_dims[-1], 1, kernel_size=1)

    def forward(
        self,
        class_features: torch.Tensor,
        coarse_logits: torch.Tensor,
        intermediates: list[torch.Tensor],
        image_size: tuple[int, int],
    ) -> torch.Tensor:
        """class_features [B, K, hidden, h, w], coarse_logits [B, K, h, w], intermediates (shallow..deep)
        each [B, W, h, w] -> fine logits [B, K, H/4, W/4]."""
        if len(intermediates) != len(STAGE_STRIDES):
            raise ValueError(
                f"the decoder needs {len(STAGE_STRIDES)} intermediate encoder maps "
                f"(backbone.intermediate_blocks), got {len(intermediates)}"
            )
        batch, num_kept = class_features.shape[:2]
        x = class_features.flatten(0, 1)  # [B*K, hidden, h, w]
        for stride, skip, reduce, fuse, tokens in zip(
            STAGE_STRIDES, self.skips, self.reduce, self.fuse, reversed(intermediates), strict=True
        ):
            size = (image_size[0] // stride, image_size[1] // stride)
            guidance = skip(tokens, size)  # [B, d, *size], once per image
            x = F.interpolate(reduce(x), size=size, mode="bilinear", align_corners=False)  # [B*K, d, *size]
            x = (x.view(batch, num_kept, *x.shape[1:]) + guidance[:, None]).flatten(0, 1)
            x = fuse(x)
        correction = self.to_logit(F.gelu(x)).view(batch, num_kept, *x.shape[-2:])  # [B, K, H/4, W/4]
        coarse = F.interpolate(coarse_logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return coarse + correction
