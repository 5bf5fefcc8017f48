"""The paper's claims (`docs/model.md`), each checked by one small function on the tidy
table (`dcpclip.report.aggregate.summary_table`). Every check returns a verdict and the numbers behind it.

A claim "holds" only when every comparison it needs was measured and agrees; one measured counterexample
makes it "does not hold"; otherwise (nothing, or only part, measured) it is "not measured in this profile",
with what is missing named. mIoU comparisons use the mean over seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from dcpclip.data.specs import SPECS
from dcpclip.records import BENCHMARK_KEYS
from dcpclip.report.aggregate import seed_statistics, single_arch
from dcpclip.report.reference import published_for

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURED = "not measured in this profile"
ABLATIONS = ("no_prune", "no_dual", "static_text")
MAX_COST_RATIO = 1.10  # GMACs(C = 847) / GMACs(C = 20) that still counts as flat in the vocabulary size
LARGE_VOCABULARY, SMALL_VOCABULARY = 847, 20  # A-847 and PAS-20


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    claim: str
    verdict: str  # HOLDS, DOES_NOT_HOLD or NOT_MEASURED
    numbers: dict[str, float]  # what the verdict rests on
    evidence: str  # the same numbers, phrased for the report


def mean_miou(summary: pd.DataFrame, profile: str, variant: str) -> dict[str, float]:
    """Benchmark key -> mIoU % (mean over seeds) of one variant in one profile; a benchmark whose mIoU is
    undefined (a split without a labelled pixel) is left out, i.e. not measured."""
    stats = seed_statistics(summary, "mIoU", profile)
    stats = stats[(stats["variant"] == variant) & stats["mean"].notna()]
    return dict(zip(stats["benchmark"], stats["mean"], strict=True))


def ahead_everywhere(claim: str, ahead_name: str, ahead: dict[str, float], behind_name: str,
                     behind: dict[str, float]) -> ClaimResult:
    """`ahead` scores above `behind` on all six benchmarks; numbers are ahead - behind in mIoU points."""
    measured = [b for b in BENCHMARK_KEYS if b in ahead and b in behind]
    numbers = {SPECS[b].title: ahead[b] - behind[b] for b in measured}
    deltas = ", ".join(f"{title} {delta:+.2f}" for title, delta in numbers.items())
    evidence = f"{ahead_name} - {behind_name} (mIoU points): {deltas}" if measured else ""
    missing = [SPECS[b].title for b in BENCHMARK_KEYS if b not in measured]
    not_ahead = [title for title, delta in numbers.items() if delta <= 0]
    if not_ahead:
        return ClaimResult(claim, DOES_NOT_HOLD, numbers, f"{evidence}; not ahead on {', '.join(not_ahead)}")
    if missing:
        gap = f"missing {ahead_name} or {behind_name} on {', '.join(missing)}"
        return ClaimResult(claim, NOT_MEASURED, numbers, f"{evidence}; {gap}" if measured else gap)
    return ClaimResult(claim, HOLDS, numbers, evidence)


def ablation_below_full(summary: pd.DataFrame, profile: str, ablation: str) -> ClaimResult:
    """Removing one component costs accuracy on every benchmark."""
    full, ablated = mean_miou(summary, profile, "full"), mean_miou(summary, profile, ablation)
    claim = f"`{ablation}` scores below `full` on every benchmark"
    return ahead_everywhere(claim, "full", full, ablation, ablated)


def full_beats_zero_shot(summary: pd.DataFrame, profile: str) -> ClaimResult:
    """Training the head beats dense CLIP matching on every benchmark."""
    return ahead_everywhere("`full` beats the training-free `zero_shot` baseline on every benchmark", "full",
                            mean_miou(summary, profile, "full"), "zero_shot",
                            mean_miou(summary, profile, "zero_shot"))


def full_beats_published(summary: pd.DataFrame, profile: str, not_comparable: Sequence[str] = (),
                         method: str = "CAT-Seg") -> ClaimResult:
    """`full` beats a published method with the same backbone on every benchmark it reports.
    `not_comparable`: why the records cannot stand beside published numbers (`report.comparability`)."""
    claim = f"`full` beats published {method} with the same backbone"
    if profile != "paper":
        return ClaimResult(claim, NOT_MEASURED, {},
                           f"published numbers compare only with the paper profile (this is {profile!r})")
    if not_comparable:
        return ClaimResult(claim, NOT_MEASURED, {}, "the records are not comparable: " + "; ".join(not_comparable))
    arch = single_arch(summary, profile)
    published = published_for(method, arch) if arch else None
    if published is None:
        return ClaimResult(claim, NOT_MEASURED, {}, f"no published {method} result with backbone {arch}")
    reported = {key: value for key, value in published.miou.items() if value is not None}
    ours = {key: value for key, value in mean_miou(summary, profile, "full").items() if key in reported}
    return ahead_everywhere(f"{claim} ({published.backbone})", "full", ours, f"{method} {published.backbone}",
                            reported)


def cost_flat_in_vocabulary(summary: pd.DataFrame, profile: str, arch: str | None) -> ClaimResult:
    """Pruning makes the per-image cost nearly independent of the vocabulary size; without it, it grows."""
    where = f"{profile}, {arch}" if arch else profile
    claim = (f"`full`'s GMACs are flat in the vocabulary size (C = {LARGE_VOCABULARY} vs {SMALL_VOCABULARY}: "
             f"ratio <= {MAX_COST_RATIO:.2f}) while `no_prune`'s grow ({where})")
    stats = seed_statistics(summary, "gmacs_mean", profile)
    stats = stats[stats["arch"] == arch]
    gmacs = {(row.variant, row.vocabulary): row.mean for row in stats.itertuples()}
    needed = [(v, c) for v in ("full", "no_prune") for c in (LARGE_VOCABULARY, SMALL_VOCABULARY)]
    missing = [f"{v} at C = {c}" for v, c in needed if (v, c) not in gmacs]
    if missing:
        return ClaimResult(claim, NOT_MEASURED, {}, f"no FLOP record for {', '.join(missing)}")
    numbers, parts = {}, []
    for variant in ("full", "no_prune"):
        large, small = gmacs[variant, LARGE_VOCABULARY], gmacs[variant, SMALL_VOCABULARY]
        numbers[f"{variant} GMACs C={LARGE_VOCABULARY}"] = large
        numbers[f"{variant} GMACs C={SMALL_VOCABULARY}"] = small
        numbers[f"{variant} ratio"] = large / small
        parts.append(f"{variant}: {large:.4g} / {small:.4g} GMACs = {large / small:.3f}")
    evidence = "; ".join(parts)
    flat = numbers["full ratio"] <= MAX_COST_RATIO
    grows = numbers["no_prune ratio"] > MAX_COST_RATIO
    return ClaimResult(claim, HOLDS if flat and grows else DOES_NOT_HOLD, numbers, evidence)
