"""The training-free baseline (`zero_shot`): dense CLIP. Every patch embedding (the patch tokens through
CLIP's final norm and projection) is compared with every class embedding by cosine similarity, scaled by
CLIP's own logit scale and upsampled bilinearly. The naive dense-CLIP baseline that MaskCLIP (Zhou et al.,
ECCV 2022) starts from; no parameter is learned."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcpclip.model.backbone import ClipBackbone
from dcpclip.model.output import SegmenterOutput
from dcpclip.model.pruning import KeepAll, class_presence
from dcpclip.model.segmenter import check_inputs


class DenseClipSegmenter(nn.Module):
    def __init__(self, backbone: ClipBackbone):
        super().__init__()
        self.backbone = backbone
        self.pruner = KeepAll()

    def forward(
        self,
        images: torch.Tensor,
        text_bank: torch.Tensor,
        targets: torch.Tensor | None = None,
        ignore_index: int = 255,
    ) -> SegmenterOutput:
        check_inputs(self.backbone, images, text_bank, targets)
        num_classes = text_bank.shape[0]
        height, width = images.shape[-2:]
        features = self.backbone.encode_image(images)
        present = class_presence(targets, num_classes, ignore_index) if targets is not None else None
        selection = self.pruner(features, text_bank, present, force=False)
        dense = F.normalize(features.dense, dim=1)  # [B, D, h, w]
        scale = self.backbone.clip.logit_scale.exp()
        similarity = scale * torch.einsum("cd,bdhw->bchw", text_bank, dense)  # [B, C, h, w]
        return SegmenterOutput(
            kept=selection.kept,
            kept_logits=F.interpolate(
                similarity, size=(height // 4, width // 4), mode="bilinear", align_corners=False
            ),
            presence_logits=None,
            recall=selection.recall,
            num_classes=num_classes,
            size=(height, width),
            pruned_logit=-100.0,  # KeepAll keeps every class: no logit takes this value
            coarse_logits=similarity,
            input_logits=F.interpolate(similarity, size=(height, width), mode="bilinear", align_corners=False),
        )
