"""`build_model`: the only place where configuration flags choose the model's components. The
defaults of `HeadConfig` are the full model; a variant's delta is composed into the config before it gets here."""

from __future__ import annotations

from torch import nn

from dcpclip.model.backbone import ClipBackbone, build_backbone
from dcpclip.model.coarse_segmentation import TextToVisionSegmenter
from dcpclip.model.config import BackboneConfig, HeadConfig
from dcpclip.model.dynamic_text import DynamicText, StaticText
from dcpclip.model.pruning import CategoryPruner, KeepAll
from dcpclip.model.refinement import CoarseToFineDecoder
from dcpclip.model.rescoring import MaskPooledRescorer, NoRescoring
from dcpclip.model.segmenter import DcpClipSegmenter
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
    pruner = CategoryPruner(head.top_k, head.presence_scale_init, head.presence_prior) if head.prune else KeepAll()
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
