"""Compose the Hydra config tree under experiments/conf into a typed `ExperimentConfig`.

No `@hydra.main`: no output folders, no chdir, callable from tests and from argparse front ends.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dcpclip.config import ExperimentConfig, experiment_config
from dcpclip.config_schema import ConfigError
from dcpclip.model.variants import variant_override

CONFIG_DIR = Path(__file__).resolve().parent / "conf"
GROUPS = ("model", "pretrain", "variant", "data", "train", "eval", "profile")


def compose_dict(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The composed, interpolation-resolved config as plain containers."""
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_container(composed, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"config overrides {list(overrides)}: {err}") from None


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    return experiment_config(compose_dict(overrides))


def compose_variant(overrides: list[str] | tuple[str, ...], variant: str) -> ExperimentConfig:
    """The config of `overrides` with the variant `variant` composed in; refused when the head it composes
    is another variant (an override sets a variant's flag), so two jobs of a grid never share a run."""
    cfg = compose_config([*overrides, variant_override(variant)])
    if cfg.variant != variant:
        raise ConfigError(f"variant {variant!r} with overrides {list(overrides)} composes the head of "
                          f"{cfg.variant!r}: choose variants with variant=/grid.variants, not head.prune, "
                          "head.dual, head.dynamic_text or head.zero_shot")
    return cfg


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
