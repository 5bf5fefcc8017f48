"""The experiment config: one typed tree composed from the component configs. Entry points compose
YAML (Hydra) into a dict and call `experiment_config(dict)`, which validates every key and value."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from dcpclip.config_schema import ConfigError, from_dict
from dcpclip.data.config import BENCHMARKS, DataConfig
from dcpclip.engine.config import EvalConfig, PretrainConfig, TrainConfig
from dcpclip.model.config import BackboneConfig, HeadConfig, TextConfig
from dcpclip.model.variants import check_variant_name, variant_head, variant_of, variant_trains


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """What the pipeline trains and evaluates, and the resources of one parallel trial."""

    variants: tuple[str, ...] = ("full", "no_prune", "no_dual", "static_text", "zero_shot")
    seeds: tuple[int, ...] = (0,)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # 1 per trial on a GPU machine; fractions pack several trials per GPU
    max_concurrent: int = 0  # 0: as many as the resources allow


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    profile: Literal["offline", "paper"] = "offline"
    seed: int = 0
    cache_dir: str = "cache"  # text banks
    runs_dir: str = "runs"  # checkpoints, one folder per run
    results_dir: str = "results"  # JSON records
    # a model option (experiments/conf/model) whose GMACs the flops stage also counts at the paper's
    # geometry with random weights, so the offline profile's cost table is real; None: only the own model
    count_paper_arch: str | None = None
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)

    @property
    def variant(self) -> str:
        """The run's variant, read off the head (`dcpclip.model.variants.variant_of`): never set apart from it."""
        return variant_of(self.head)

    @property
    def trains(self) -> bool:
        """Whether this variant has a training run (false for a training-free one, as `zero_shot`)."""
        return variant_trains(self.variant)


def with_variant(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    """`cfg` with the head of variant `name` (`dcpclip.model.variants.variant_head`); the rest unchanged."""
    return dataclasses.replace(cfg, head=variant_head(cfg.head, name))


def pretrained_clip_file(cfg: PretrainConfig) -> str:
    """The open_clip state dict the pre-training writes (the path `backbone.pretrained` then names)."""
    return f"{cfg.dir}/clip.pt"


def experiment_config(data: dict[str, Any]) -> ExperimentConfig:
    """Validate and type a composed config; contradictions fail here with the key named."""
    cfg = from_dict(ExperimentConfig, data)
    try:
        variant_trains(cfg.variant)
    except ValueError as err:  # e.g. zero_shot with head flags of another variant
        raise ConfigError(f"head: the flags compose the variant {cfg.variant!r}, which is not one: {err}") from None
    for name in cfg.grid.variants:
        try:
            check_variant_name(name)
        except ValueError as err:
            raise ConfigError(f"grid.variants: {err}") from None
    unknown = [b for b in cfg.data.benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"data.benchmarks: unknown benchmark {unknown[0]!r} (allowed: {', '.join(BENCHMARKS)})")
    if cfg.head.top_k < 1:
        raise ConfigError(f"head.top_k: must be >= 1, got {cfg.head.top_k}")
    if not 0 < cfg.head.presence_prior < 1:
        raise ConfigError(f"head.presence_prior: must be a probability in (0, 1), got {cfg.head.presence_prior}")
    if cfg.train.crop_size != cfg.backbone.image_size:
        raise ConfigError(
            f"train.crop_size {cfg.train.crop_size} != backbone.image_size {cfg.backbone.image_size}: "
            "the model is trained on windows of the backbone's input size"
        )
    if cfg.pretrain.enabled:
        weights = pretrained_clip_file(cfg.pretrain)
        if cfg.backbone.pretrained != weights:
            raise ConfigError(
                f"backbone.pretrained {cfg.backbone.pretrained!r}: with pretrain.enabled the backbone's weights "
                f"are the pre-training's output {weights!r}; set pretrain=none to load other weights"
            )
        if cfg.pretrain.train.crop_size != cfg.backbone.image_size:
            raise ConfigError(
                f"pretrain.train.crop_size {cfg.pretrain.train.crop_size} != backbone.image_size "
                f"{cfg.backbone.image_size}: CLIP is pre-trained at its input size"
            )
    if not 0 < cfg.eval.window_stride <= cfg.backbone.image_size:
        raise ConfigError(
            f"eval.window_stride {cfg.eval.window_stride}: must be in 1..backbone.image_size "
            f"({cfg.backbone.image_size})"
        )
    ks = list(cfg.eval.recall_ks)
    if not ks or ks != sorted(set(ks)) or ks[0] < 1:
        raise ConfigError(f"eval.recall_ks {ks}: must be distinct K >= 1 in ascending order")
    if cfg.eval.batch_images < 1:
        raise ConfigError(f"eval.batch_images: must be >= 1, got {cfg.eval.batch_images}")
    if cfg.eval.sample_images < 0:
        raise ConfigError(f"eval.sample_images: must be >= 0, got {cfg.eval.sample_images}")
    return cfg
