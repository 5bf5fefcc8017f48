"""The pipeline's parameter file (`params.yaml`, what `dvc params diff`, `dvc exp run -S` and `dvc exp show`
read and write) as Hydra overrides: `profile`, the settings users change most, each under its config key
(null: the profile's value), then free `overrides`, e.g.

    profile: offline
    grid: {variants: null, seeds: [0, 1, 2]}
    head: {top_k: 16}
    overrides: ["model=vitl14"]

-> ["profile=offline", "grid.seeds=[0,1,2]", "head.top_k=16", "model=vitl14"]. A key set both as a setting
and in `overrides`, or a key this file does not know, is an error naming it."""

from __future__ import annotations

from pathlib import Path

import yaml

from dcpclip.config_schema import ConfigError

# the settings params.yaml names, by config section; dvc.yaml lists for each stage the ones it reads
SECTIONS = {"grid": ("variants", "seeds"), "data": ("benchmarks",), "head": ("top_k",), "train": ("iterations",)}
SETTINGS = tuple(f"{section}.{name}" for section, names in SECTIONS.items() for name in names)


def hydra_value(value) -> str:
    """A YAML value as Hydra override syntax: [a,b] for lists, true/false for booleans."""
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def setting_overrides(params: dict, path: Path) -> list[str]:
    """The non-null settings of `params` as overrides, in SETTINGS order."""
    overrides = []
    for section, names in SECTIONS.items():
        block = params.get(section) or {}
        if not isinstance(block, dict) or set(block) - set(names):
            raise ConfigError(f"{path}: {section}: expected a mapping of {', '.join(names)} "
                              f"(other keys go in overrides), got {block!r}")
        overrides += [f"{section}.{name}={hydra_value(block[name])}" for name in names if block.get(name) is not None]
    return overrides


def pipeline_overrides(path: str | Path) -> list[str]:
    """params.yaml -> ["profile=<profile>", *settings, *overrides]."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: unreadable parameter file ({err})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of profile, {', '.join(sorted(SECTIONS))} and overrides")
    unknown = sorted(set(params) - {"profile", "overrides", *SECTIONS})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: profile, {', '.join(sorted(SECTIONS))}, "
                          "overrides; any other config key goes in overrides, e.g. 'model=vitl14')")
    profile, overrides = params.get("profile", "offline"), params.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: overrides: expected a list of strings like 'model=vitl14'")
    settings = setting_overrides(params, path)
    twice = sorted({s.split("=", 1)[0] for s in settings} & {o.split("=", 1)[0].lstrip("+~") for o in overrides})
    if twice:
        raise ConfigError(f"{path}: {twice[0]} is set both as a setting and in overrides; keep one")
    return [f"profile={profile}", *settings, *overrides]
