"""Turn plain nested dicts (e.g. a composed Hydra config) into typed dataclasses, with errors that
name the offending key and the allowed values.

Supported field types: dataclasses (recursed), `Literal[...]`, `X | None`, `tuple[T, ...]`, `list[T]`,
`dict[str, T]`, and the scalars bool/int/float/str. This is the only place that checks config types,
so a bad value fails at the entry point instead of deep inside a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from dcpclip.errors import ExpectedError

T = TypeVar("T")


class ConfigError(ExpectedError, ValueError):
    """A config value or key is invalid; the message names the dotted key."""


def from_dict(cls: type[T], data: typing.Mapping[str, Any], key: str = "") -> T:
    """Build dataclass `cls` from `data`, recursively, rejecting unknown keys and bad values."""
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{key or '<root>'}: expected a mapping for {cls.__name__}, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s} (allowed keys under "
            f"{key or '<root>'}: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{key}.{name}" if key else name)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{key or '<root>'}: {err}") from None


def to_dict(obj: Any) -> Any:
    """The inverse of `from_dict`: plain JSON-able containers (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: invalid value {value!r} (allowed: {', '.join(map(repr, allowed))})")
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(" / ".join(errors))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp)
        items = [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, typing.Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_tp = get_args(tp)
        return {str(k): _convert(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")
