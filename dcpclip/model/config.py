"""Hyper-parameters of the model: the CLIP backbone, the text prompts and the DCP-CLIP head. The head's
defaults are the full model; variants are deltas (`dcpclip.model.variants`). Every number of
`docs/model.md` lives here, not in code. Plain dataclasses only: composing a config imports
no model code, so a change of model code moves only the identities of the stages that run it."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Which CLIP, which weights, and which encoder blocks feed the decoder."""

    arch: str = "dcpclip-tiny"  # any open_clip architecture name
    # None: random init (seeded by init_seed); an open_clip tag such as "openai"; or a local checkpoint path.
    pretrained: str | None = None
    init_seed: int = 0
    # QuickGELU activations (x * sigmoid(1.702 x)), as OpenAI's CLIPs were trained with; open_clip's plain
    # arch names (ViT-B-16) use GELU, which with OpenAI's weights gives subtly wrong embeddings
    quick_gelu: bool = False
    image_size: int = 64  # training/evaluation window side; must be a multiple of the patch size
    intermediate_blocks: tuple[int, ...] = (1, 2)  # 0-based block indices for the decoder's skip features


@dataclasses.dataclass(frozen=True)
class TextConfig:
    template_set: Literal["catseg", "imagenet80"] = "catseg"
    synonyms: Literal["first", "all"] = "first"  # names listing synonyms with ", "
    batch_size: int = 32  # prompts per text-tower batch (16-64 is fastest on CPU)


# the settings only the pruner (and its loss) reads: a head without one (`has_pruner`) reads none of them
PRUNER_SETTINGS = ("top_k", "presence_scale_init", "presence_prior", "prune_loss_weight")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    # step 2: coarse category recognition -> top-K pruning
    prune: bool = True
    # classes kept per image (never more than C); in training, more when an image has more ground-truth
    # classes, which are always kept
    top_k: int = 32
    presence_scale_init: float = 10.0  # initial weight of both similarity cues in the presence calibration
    # initial presence probability of a class of average similarity (the calibration's bias starts at its
    # logit); about the share of the 171 COCO-Stuff classes an image holds
    presence_prior: float = 0.03
    # step 3: dynamic textual features (class embeddings attend to the image)
    dynamic_text: bool = True
    dynamic_text_layers: int = 1
    # step 4: visual tokens attend to the K textual features, then per-class spatial aggregation
    text_to_vision_layers: int = 1
    aggregation_layers: int = 2  # residual 3x3 conv blocks over each class's similarity map
    # step 6: vision -> text re-scoring from mask-pooled features
    dual: bool = True
    # training-free dense CLIP baseline (patch embeddings vs text bank); the head is not built
    zero_shot: bool = False
    # widths of the head
    hidden_dim: int = 128  # attention/MLP width and per-class channels of the aggregation
    num_heads: int = 4
    decoder_dims: tuple[int, ...] = (64, 32)  # channels at 1/8 and 1/4 of the input
    pruned_logit: float = -100.0  # large finite negative logit for classes removed by pruning
    # losses
    seg_loss: Literal["ce", "bce"] = "ce"
    prune_loss_weight: float = 1.0
    aux_loss_weight: float = 0.0
    # which CLIP parameters train: attention q/v projections of both towers (CAT-Seg), none, or all
    clip_trainable: Literal["attn_qv", "none", "all"] = "attn_qv"



def carried_classes(head: HeadConfig, vocabulary: int) -> int:
    """Classes per view the model carries past recognition on a vocabulary of `vocabulary` prompts: K =
    min(top_k, C) when it prunes, every C otherwise (`no_prune`'s head, `zero_shot`'s dense logits); what
    its fine stages' cost grows with."""
    return min(head.top_k, vocabulary) if has_pruner(head) else vocabulary


def has_pruner(head: HeadConfig) -> bool:
    """Whether the model built from `head` prunes to K classes (`no_prune` keeps all C; `zero_shot` builds
    no head)."""
    return head.prune and not head.zero_shot