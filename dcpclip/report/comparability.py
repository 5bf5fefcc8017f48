"""Whether evaluation records can stand beside published numbers: the protocol's real validation splits,
every image of them, and pre-trained CLIP weights. The profile alone does not say so: a paper-profile run
on synthetic data, on a few images (a smoke) or from random init is not comparable, and its report and
claims must say why."""

from __future__ import annotations

from collections.abc import Sequence

from dcpclip.data.specs import SPECS
from dcpclip.records import EvalRecord


def comparability_problems(evals: Sequence[EvalRecord]) -> list[str]:
    """What keeps these records from being compared with published numbers (empty: nothing)."""
    problems = []
    synthetic = [r for r in evals if r.data_source != "real"]
    if synthetic:
        problems.append(f"{len(synthetic)} of {len(evals)} evaluations ran on synthetic data")
    random_init = [r for r in evals if r.clip_weights is None]
    if random_init:
        problems.append(f"{len(random_init)} of {len(evals)} evaluations used a random-init CLIP")
    partial = sorted({(SPECS[r.benchmark].title, r.num_images, SPECS[r.benchmark].expected_images[0])
                      for r in evals if r.num_images not in SPECS[r.benchmark].expected_images})
    if partial:
        problems.append("part of a split: " + ", ".join(f"{title} {n} of {total} images"
                                                       for title, n, total in partial))
    return problems
