"""Pre-norm cross-attention block (queries attend to a context set), the layer behind both interaction
directions of DCP-CLIP: class embeddings -> image (dynamic text) and image tokens -> classes (coarse
segmentation). A standard transformer block (Vaswani et al. 2017) with `F.scaled_dot_product_attention`,
so FLOP counters see the attention as one kernel (see `dcpclip.flops`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttentionBlock(nn.Module):
    """x + Attn(LN(x), LN(context)), then + MLP(LN(x)). Attention and MLP run at `inner_dim`."""

    def __init__(self, dim: int, inner_dim: int, num_heads: int):
        super().__init__()
        if inner_dim % num_heads:
            raise ValueError(f"head.hidden_dim {inner_dim} is not divisible by head.num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim)
        self.to_k = nn.Linear(dim, inner_dim)
        self.to_v = nn.Linear(dim, inner_dim)
        self.to_out = nn.Linear(inner_dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU(), nn.Linear(inner_dim, dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)  # [B, heads, L, inner/heads]

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x [B, N, dim] attends to context [B, M, dim] -> [B, N, dim]."""
        query = self.norm_query(x)
        ctx = self.norm_context(context)
        q, k, v = self._heads(self.to_q(query)), self._heads(self.to_k(ctx)), self._heads(self.to_v(ctx))
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, inner/heads]
        x = x + self.to_out(attended.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm_mlp(x))
