"""The variant registry: each ablation is a named delta on `HeadConfig`, never a string checked in
`forward`. `full` sets nothing. Names combine with "+" (e.g. "no_prune+static_text")."""

from __future__ import annotations

import dataclasses

from dcpclip.model.config import HeadConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    delta: dict
    trains: bool  # whether the variant needs its own training run
    tests: str  # what the ablation measures


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("full", {}, True, "the method"),
        Variant("no_prune", {"prune": False}, True, "the cost and accuracy of coarse pruning (K = C)"),
        Variant("no_dual", {"dual": False}, True, "the value of the vision -> text direction"),
        Variant("static_text", {"dynamic_text": False}, True, "the value of dynamic textual features"),
        Variant("zero_shot", {"zero_shot": True}, False, "training-free dense CLIP baseline"),
    )
}


def variant_names() -> list[str]:
    return list(VARIANTS)


def resolve_variant(name: str) -> tuple[dict, bool]:
    """"a+b" -> (merged delta, needs training). Unknown names raise with the valid list."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in VARIANTS]
    if unknown or not name:
        raise ValueError(f"unknown variant {unknown[0] if unknown else name!r} (valid: {', '.join(VARIANTS)})")
    delta: dict = {}
    for part in parts:
        delta.update(VARIANTS[part].delta)
    return delta, all(VARIANTS[p].trains for p in parts)


def apply_variant(head: HeadConfig, name: str) -> HeadConfig:
    delta, _ = resolve_variant(name)
    return dataclasses.replace(head, **delta)
