"""`build_model`: the only place where configuration flags choose the model's components. The
defaults of `HeadConfig` are the full model; a variant's delta is composed into the config before it gets here.
`run_model`: the model of one run as its checkpoint holds it, shared by training, evaluation, prediction and
FLOP counting, so all four look at the same module."""

from __future__ import annotations

import torch
from torch import nn

from dcpclip.model.backbone import ClipBackbone, build_backbone
from dcpclip.model.coarse_segmentation import TextToVisionSegmenter
from dcpclip.model.config import BackboneConfig, HeadConfig, has_pruner
from dcpclip.model.dynamic_text import DynamicText, StaticText
from dcpclip.model.pruning import CategoryPruner, KeepAll
from dcpclip.model.refinement import CoarseToFineDecoder
from dcpclip.model.rescoring import MaskPooledRescorer, NoRescoring
from dcpclip.model.segmenter import DcpClipSegmenter
from dcpclip.model.trainable import set_trainable
from dcpclip.model.zero_shot import DenseClipSegmenter


def build_head(backbone: ClipBackbone, head: HeadConfig) -> nn.Module:
    """Assemble a segmenter around an existing backbone; `head` already has its variant applied."""
    if head.zero_shot:
        return DenseClipSegmenter(backbone)
    if len(backbone.intermediate_blocks) != len(head.decoder_dims):
        raise ValueError(
            f"backbone.intermediate_blocks {list(backbone.intermediate_blocks)} and head.decoder_dims "
            f"{list(head.decoder_dims)}: need one intermediate block per decoder stage"
        )
    dim, inner, heads = backbone.embed_dim, head.hidden_dim, head.num_heads
    pruner = (CategoryPruner(head.top_k, head.presence_scale_init, head.presence_prior) if has_pruner(head)
              else KeepAll())
    text = DynamicText(dim, inner, heads, head.dynamic_text_layers) if head.dynamic_text else StaticText()
    rescorer = MaskPooledRescorer(dim, inner) if head.dual else NoRescoring()
    return DcpClipSegmenter(
        backbone=backbone,
        pruner=pruner,
        text_features=text,
        coarse=TextToVisionSegmenter(
            dim, inner, heads, head.text_to_vision_layers, head.hidden_dim, head.aggregation_layers
        ),
        decoder=CoarseToFineDecoder(head.hidden_dim, backbone.vision_width, tuple(head.decoder_dims)),
        rescorer=rescorer,
        pruned_logit=head.pruned_logit,
    )


def build_model(backbone_cfg: BackboneConfig, head_cfg: HeadConfig) -> nn.Module:
    """Backbone (random init, open_clip tag or local checkpoint) + the head `head_cfg` describes (its
    variant already composed in). Returns a `DcpClipSegmenter`, or a `DenseClipSegmenter` for `zero_shot`."""
    return build_head(build_backbone(backbone_cfg), head_cfg)


def run_model(backbone_cfg: BackboneConfig, head_cfg: HeadConfig, seed: int) -> nn.Module:
    """`build_model` with the head initialised from `seed` (CLIP has its own init_seed or weights) and the
    `head.clip_trainable` parameters trainable: the layout a run's checkpoint stores."""
    torch.manual_seed(seed)
    model = build_model(backbone_cfg, head_cfg)
    set_trainable(model, head_cfg)
    return model
