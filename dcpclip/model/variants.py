"""The variant registry: each ablation is a named delta on `HeadConfig`, never a string checked in
`forward`. `full` sets nothing.

The Hydra group `experiments/conf/variant/` carries the same deltas (`no_dual.yaml`: `head: {dual:
false}`; tests/test_variants.py keeps the two equal), and groups compose: `variant=[no_prune,static_text]`.
A run's name is never chosen: `variant_of(head)` reads it off the flags the head sets, so
`variant=full head.dual=false` is `no_dual`. Combined names join registry names with "+" in registry order
("no_prune+static_text"); that is how records, run folders and `grid.variants` spell them.
"""

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


def variant_parts(name: str) -> list[Variant]:
    """"a+b" -> the registry entries it combines. Unknown names raise ValueError with the valid list."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in VARIANTS]
    if unknown or not name:
        raise ValueError(f"unknown variant {unknown[0] if unknown else name!r} (valid: {', '.join(VARIANTS)}; "
                         "names combine with '+')")
    free = [p for p in parts if not VARIANTS[p].trains]
    if free and len(parts) > 1:
        raise ValueError(f"variant {name!r}: {free[0]} stands alone (a training-free baseline has no head to "
                         "ablate, so a combination would name one model twice)")
    return [VARIANTS[p] for p in parts]


def variant_trains(name: str) -> bool:
    """Whether the variant `name` has a training run (a training-free part makes the whole training-free)."""
    return all(part.trains for part in variant_parts(name))


def variant_of(head: HeadConfig) -> str:
    """The variant a head is: every registry delta the head satisfies, joined by "+"; "full" for none."""
    on = [v.name for v in VARIANTS.values()
          if v.delta and all(getattr(head, key) == value for key, value in v.delta.items())]
    return "+".join(on) or "full"


def variant_head(head: HeadConfig, name: str) -> HeadConfig:
    """`head` switched to the variant `name`: every flag a variant sets goes back to the full model's value,
    then `name`'s deltas apply (for code sweeping variants over one config; a command line composes
    `variant=...` instead). `variant_of` of the result is `name`, spelled canonically."""
    full = HeadConfig()
    reset = {key: getattr(full, key) for variant in VARIANTS.values() for key in variant.delta}
    for part in variant_parts(name):
        reset.update(part.delta)
    return dataclasses.replace(head, **reset)


def check_variant_name(name: str) -> None:
    """Raise ValueError unless `name` is spelled as `variant_of` names its head (registry order, no repeats,
    `full` alone), so a `grid.variants` entry finds the records its runs write."""
    canonical = variant_of(variant_head(HeadConfig(), name))
    if name != canonical:
        raise ValueError(f"variant {name!r}: spell it {canonical!r} (the name its runs and records carry)")


def variant_override(name: str) -> str:
    """The Hydra override that composes the variant `name`: "variant=no_dual", "variant=[no_prune,static_text]"."""
    parts = [p.name for p in variant_parts(name)]
    return f"variant={parts[0]}" if len(parts) == 1 else f"variant=[{','.join(parts)}]"
