"""DCP-CLIP (arXiv 2603.13951; this project's reading of the abstract, see docs/model.md):
one model class composed of single-purpose modules. Which module fills each slot is decided by
`dcpclip.model.build.build_model`, never here: `forward` has no variant branches."""

from __future__ import annotations

import torch
from torch import nn

from dcpclip.model.backbone import ClipBackbone
from dcpclip.model.output import SegmenterOutput
from dcpclip.model.pruning import class_presence


def check_inputs(backbone: ClipBackbone, images: torch.Tensor, text_bank: torch.Tensor, targets) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
    if text_bank.dim() != 2 or text_bank.shape[1] != backbone.embed_dim:
        raise ValueError(f"text_bank must be [C, {backbone.embed_dim}], got {list(text_bank.shape)}")
    if targets is not None and targets.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"targets must be [B, H, W] = {[images.shape[0], *images.shape[2:]]}, got {list(targets.shape)}"
        )


class DcpClipSegmenter(nn.Module):
    def __init__(
        self,
        backbone: ClipBackbone,
        pruner: nn.Module,
        text_features: nn.Module,
        coarse: nn.Module,
        decoder: nn.Module,
        rescorer: nn.Module,
        pruned_logit: float,
    ):
        super().__init__()
        self.backbone = backbone
        self.pruner = pruner  # step 2: CategoryPruner | KeepAll
        self.text_features = text_features  # step 3: DynamicText | StaticText
        self.coarse = coarse  # step 4: TextToVisionSegmenter
        self.decoder = decoder  # step 5: CoarseToFineDecoder
        self.rescorer = rescorer  # step 6: MaskPooledRescorer | NoRescoring
        self.pruned_logit = pruned_logit

    def forward(
        self,
        images: torch.Tensor,
        text_bank: torch.Tensor,
        targets: torch.Tensor | None = None,
        ignore_index: int = 255,
    ) -> SegmenterOutput:
        """images [B, 3, H, W] CLIP-normalised; text_bank [C, D] L2-normalised; targets [B, H, W] long.
        In training mode the targets' classes are forced into the kept set."""
        check_inputs(self.backbone, images, text_bank, targets)
        num_classes = text_bank.shape[0]
        size = tuple(images.shape[-2:])
        features = self.backbone.encode_image(images)  # dense [B, D, h, w]
        present = class_presence(targets, num_classes, ignore_index) if targets is not None else None
        selection = self.pruner(features, text_bank, present, force=self.training)
        text = self.text_features(text_bank[selection.kept], features.dense)  # [B, K, D]
        coarse = self.coarse(features.dense, text)  # class_features [B, K, hidden, h, w]
        fine = self.decoder(
            coarse.class_features, coarse.logits, features.intermediates, size
        )  # [B,K,H/4,W/4]
        fine = self.rescorer(fine, coarse.visual, text)  # [B, K, H/4, W/4]
        return SegmenterOutput(  # sparse: the dense [B, C, H, W] only on access to .logits
            kept=selection.kept,
            kept_logits=fine,
            presence_logits=selection.presence_logits,
            recall=selection.recall,
            num_classes=num_classes,
            size=size,
            pruned_logit=self.pruned_logit,
            coarse_logits=coarse.logits,
        )
