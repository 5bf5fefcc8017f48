"""Residual 3x3 convolution block used per class map (spatial aggregation and refinement). Group
normalisation with one group normalises each sample on its own, so a class's features never depend on
which other classes share the batch (unlike batch normalisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvBlock(nn.Module):
    """x + Conv3x3(GELU(GroupNorm(x))), channels unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, channels, h, w] -> same shape."""
        return x + self.conv(F.gelu(self.norm(x)))
