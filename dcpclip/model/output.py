"""What every segmenter returns: the contract the losses, the evaluator and the FLOP counter code against."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class SegmenterOutput:
    logits: torch.Tensor  # [B, C, H, W] full vocabulary at input resolution; pruned classes at pruned_logit
    kept: torch.Tensor  # [B, K] long, ascending vocabulary indices processed (K = C when nothing is pruned)
    kept_logits: torch.Tensor  # [B, K, H/4, W/4] fine logits of the kept classes (the loss input)
    presence_logits: torch.Tensor | None  # [B, C] calibrated class-presence scores (pruning loss input)
    # [B] share of the image's ground-truth classes in the pruner's own top-K choice (given targets):
    # at evaluation this is exactly the share kept; in training, classes forced in are not counted.
    # NaN for an image without labelled pixels.
    recall: torch.Tensor | None
    coarse_logits: torch.Tensor | None = None  # [B, K, h, w] coarse class maps on the token grid (aux loss)
