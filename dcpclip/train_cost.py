"""The multiply-adds of one training step of a segmenter, counted with fvcore (`dcpclip.flops`): what a
training run costs, before it is launched (`experiments.estimate`, the report's cost estimate).

One step = 3 x (batch x the forward of one training crop on the training vocabulary + the text tower on
that vocabulary when it trains, else 0): a backward pass is taken as twice the forward (the usual
approximation; frozen CLIP weights need no weight gradients, so it is an upper bound). The forward is
counted in evaluation mode, i.e. with K = top_k kept classes; in training the ground-truth classes are
kept too, a few more when an image holds many. Weights do not change the count: random init will do.
"""

from __future__ import annotations

import dataclasses

import open_clip
import torch
from torch import nn

from dcpclip.config import ExperimentConfig
from dcpclip.data.specs import SPECS
from dcpclip.flops import count_gmacs, random_text_bank
from dcpclip.model.text_bank import class_prompts
from dcpclip.records import BACKWARD_FACTOR

STAND_IN_NAME = "stone wall"  # the training vocabulary's names are in the data: a two-word name stands in


@dataclasses.dataclass(frozen=True)
class TrainStepCount:
    """GMACs (fvcore multiply-adds / 1e9) of one training step."""

    crop_size: int
    batch_size: int
    num_classes: int  # the training vocabulary's prompts
    image_gmacs: float  # the forward of one crop, text bank given
    text_encoder_trains: bool  # the text tower is re-run every step (else its bank is cached)
    text_encoder_gmacs: float  # the text tower's forward on the vocabulary; 0 when it does not train

    @property
    def step_gmacs(self) -> float:
        return BACKWARD_FACTOR * (self.batch_size * self.image_gmacs + self.text_encoder_gmacs)


def stand_in_tokens(cfg: ExperimentConfig, vocabulary: int) -> torch.Tensor:
    """[P, L] tokens of the training vocabulary's prompts, every name the stand-in, cut to the longest."""
    prompts = class_prompts(STAND_IN_NAME, cfg.text) * vocabulary
    tokens = open_clip.get_tokenizer(cfg.backbone.arch)(prompts)  # [P, context]
    return tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]  # the end-of-text token has the largest id


def count_train_step(model: nn.Module, cfg: ExperimentConfig) -> TrainStepCount:
    """Count one step of training `model` (trainable parameters already set) with `cfg.train`."""
    backbone = model.backbone
    crop = torch.zeros(1, 3, cfg.train.crop_size, cfg.train.crop_size)  # [1, 3, S, S]
    vocabulary = SPECS[cfg.data.train_dataset].num_prompts
    text_trains = any(p.requires_grad for p in backbone.text_parameters())
    tokens = stand_in_tokens(cfg, vocabulary) if text_trains else None
    count = count_gmacs(model, crop, random_text_bank(vocabulary, backbone.embed_dim), tokens, cross_check=False)
    return TrainStepCount(
        crop_size=cfg.train.crop_size,
        batch_size=cfg.train.batch_size,
        num_classes=vocabulary,
        image_gmacs=count.gmacs - count.text_encoder_gmacs,
        text_encoder_trains=text_trains,
        text_encoder_gmacs=count.text_encoder_gmacs,
    )


def gpu_hours(gmacs: float, tflops: float) -> float:
    """Hours that `gmacs` multiply-adds (2 FLOPs each) take at `tflops` effective TFLOP/s."""
    return 2 * gmacs * 1e9 / (tflops * 1e12) / 3600
