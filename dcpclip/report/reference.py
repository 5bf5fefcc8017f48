"""Published mIoU of the closest peers on the same protocol (`docs/protocol.md`, "Published
numbers to compare against"). Reported by the papers, not measured here: the report shows them in their
own table and never mixes them with this suite's measurements."""

from __future__ import annotations

import dataclasses

from dcpclip.records import BENCHMARK_KEYS


@dataclasses.dataclass(frozen=True)
class PublishedResult:
    method: str
    backbone: str  # as the paper names it
    arch: str | None  # the open_clip architecture of this suite it compares with (None: no counterpart here)
    miou: dict[str, float | None]  # benchmark key -> mIoU %, None where the paper reports none
    source: str


def _miou(*values: float | None) -> dict[str, float | None]:
    """Values in the field's order A-847, PC-459, A-150, PC-59, PAS-20, PAS-20b."""
    return dict(zip(BENCHMARK_KEYS, values, strict=True))


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("CAT-Seg", "ViT-B/16", "ViT-B-16", _miou(12.0, 19.0, 31.8, 57.5, 94.6, 77.3),
                    "Cho et al., CAT-Seg, CVPR 2024"),
    PublishedResult("CAT-Seg", "ViT-L/14", "ViT-L-14-336", _miou(16.0, 23.8, 37.9, 63.3, 97.0, 82.5),
                    "Cho et al., CAT-Seg, CVPR 2024"),
    PublishedResult("SED", "ConvNeXt-B", None, _miou(11.2, 18.6, 31.8, 57.7, 94.4, None),
                    "Xie et al., SED, CVPR 2024"),
    PublishedResult("ERR-Seg", "ConvNeXt-B", None, _miou(13.9, 20.5, 35.8, 56.9, 95.4, None),
                    "Chen et al., ERR-Seg"),
)


def published_for(method: str, arch: str) -> PublishedResult | None:
    """The published result of `method` with the same backbone as ours, if the paper reports one."""
    matches = [p for p in PUBLISHED if p.method == method and p.arch == arch]
    return matches[0] if matches else None
