"""Training recipe and evaluation protocol settings (CAT-Seg's recipe is the paper profile)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """CAT-Seg's recipe: AdamW, cosine decay to 0 over `iterations` without warmup, CLIP parameters at
    `clip_lr_multiplier` x lr, gradient clipping by the total norm of all trainable parameters."""

    iterations: int = 80_000
    batch_size: int = 4
    crop_size: int = 384  # resize short side to this, random crop, flip, colour jitter
    lr: float = 2e-4
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0  # norm layers and embeddings (detectron2's WEIGHT_DECAY_NORM/_EMBED)
    clip_lr_multiplier: float = 0.01
    grad_clip_norm: float = 0.01
    checkpoint_every: int = 5_000
    log_every: int = 50
    amp: bool = True  # mixed precision on CUDA only; CPU runs fp32 and deterministic
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # float16 adds a gradient scaler
    threads: int = 0  # torch CPU threads; 0 leaves torch's default


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    mode: Literal["sliding", "whole"] = "sliding"  # CAT-Seg's 4 windows + global view, or one pass
    short_side: int = 640
    max_long_side: int = 2560
    window_stride: int = 256  # offset of the 2 x 2 windows in the squashed (window + stride)^2 image
    max_images: int | None = None  # cap per benchmark (None: the whole split)
    flops_images: int = 20  # evaluation images whose GMACs are averaged per (variant, benchmark)
    # bf16 autocast of the model's forward on CUDA (the pruner's ranking and the merged probabilities stay
    # fp32); no effect on the CPU
    amp: bool = False
    recall_ks: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # K of the pruner's recall curve (recall@K)
    sample_images: int = 3  # the first images of each split whose predictions are kept (the report's grid)
    batch_images: int = 1  # images whose views share one forward (their labels are the same as one by one)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Image-text pre-training of a random-init CLIP on the training set, before segmentation training
    (`dcpclip.engine.pretrain`): the offline profile's stand-in for CLIP's own pre-training. The paper
    profile leaves it off and loads OpenAI's weights."""

    enabled: bool = False
    # <dir>/clip.pt: the pre-trained open_clip state dict (backbone.pretrained must name it);
    # <dir>/clip.json: what it is; <dir>/run: checkpoints and training curves
    dir: str = "models"
    dense_loss_weight: float = 0.0  # 0: image-level targets only, as CLIP learns (see dcpclip.model.recognition)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
