"""What every segmenter returns: the contract the losses, the evaluator and the FLOP counter code against.
The output is sparse: the logits of the K kept classes; the dense [B, C, H, W] tensor is built only on
access to `logits`."""

from __future__ import annotations

import dataclasses

import torch

from dcpclip.model.vocabulary import scatter_to_vocabulary, upsample_kept


@dataclasses.dataclass
class SegmenterOutput:
    kept: torch.Tensor  # [B, K] long, ascending vocabulary indices processed (K = C when nothing is pruned)
    kept_logits: torch.Tensor  # [B, K, H/4, W/4] fine logits of the kept classes (the loss input)
    presence_logits: torch.Tensor | None  # [B, C] calibrated class-presence scores (pruning loss input)
    # [B] share of the image's ground-truth classes in the pruner's own top-K choice (given targets):
    # at evaluation this is exactly the share kept; in training, classes forced in are not counted.
    # NaN for an image without labelled pixels.
    recall: torch.Tensor | None
    num_classes: int  # C, the vocabulary size
    size: tuple[int, int]  # (H, W), the input resolution
    pruned_logit: float  # the logit of every class not kept
    coarse_logits: torch.Tensor | None = None  # [B, K, h, w] coarse class maps on the token grid (aux loss)
    # [B, K, H, W] the kept classes at input resolution when the model makes them itself (zero_shot);
    # None: upsampled from kept_logits
    input_logits: torch.Tensor | None = None

    def kept_logits_at_input(self) -> torch.Tensor:
        """[B, K, H, W]: the kept classes' logits at input resolution (what inference merges and argmaxes)."""
        if self.input_logits is not None:
            return self.input_logits
        return upsample_kept(self.kept_logits, self.size, self.pruned_logit)

    @property
    def logits(self) -> torch.Tensor:
        """[B, C, H, W] the full vocabulary, pruned classes at pruned_logit: O(C x H x W), built per access."""
        return scatter_to_vocabulary(self.kept_logits_at_input(), self.kept, self.num_classes, self.pruned_logit)
