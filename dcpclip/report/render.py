"""The report: `reports/README.md` and `reports/figures/*.png`, generated from the records (and DVCLive
curves) only, never edited by hand. Deterministic: the same records give byte-identical files (no
timestamps, stable order), so DVC sees a change only when a number changes."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dcpclip.atomic import atomic_path, write_text
from dcpclip.model.variants import VARIANTS
from dcpclip.profiles import PAPER_ARCH_PROFILE
from dcpclip.records import EvalRecord, FlopsRecord, Record, sort_records
from dcpclip.report import claims, figures, run_cost, tables
from dcpclip.report.aggregate import single_arch, summary_table, variant_rank
from dcpclip.report.comparability import comparability_problems
from dcpclip.report.tables import GAP, NOT_APPLICABLE

BANNERS = {
    "offline": (
        "**Offline profile: these numbers are NOT comparable with the paper or with any published result.** "
        "They come from synthetic images and labels (written in the real datasets' formats and run through "
        "the real preparation code) and a tiny CLIP pre-trained from random init on the synthetic training "
        "set, then trained briefly on CPU. They show that the whole pipeline runs, produces every number and "
        "learns; they say nothing about DCP-CLIP's accuracy."
    ),
    "paper": (
        "**Paper profile:** OpenAI CLIP weights, COCO-Stuff training with CAT-Seg's recipe, and the six real "
        "validation splits prepared and scored by the field's protocol, so the numbers are comparable with "
        "the published ones (shown separately below)."
    ),
}
NOT_COMPARABLE_BANNER = (
    "**Paper profile, but these numbers are NOT comparable with the published ones:** {problems}. The "
    "paper's geometry and recipe ran (a smoke run, `experiments.paper_smoke`, looks like this); its accuracy "
    "says nothing about DCP-CLIP's."
)
GAP_NOTE = f"{GAP} not run (no record)."
FIGURES = {
    "miou_by_benchmark.png": "mIoU per benchmark",
    "gmacs_vs_vocabulary.png": "GMACs per image vs vocabulary size",
    "accuracy_vs_cost.png": "accuracy vs cost",
    "training_curves.png": "training curves",
}


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    profile: str = "offline"
    worst_classes: int = 5  # lowest per-class IoUs listed per benchmark
    worst_classes_variant: str = "full"


@dataclasses.dataclass(frozen=True)
class Report:
    markdown: str
    figures: dict[str, bytes]  # file name under figures/ -> PNG bytes


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What every section reads: the profile's records (plus the paper-architecture FLOP records of the
    offline profile), their tidy table, and the rows and architectures the tables show."""

    profile: str
    records: list[Record]
    summary: pd.DataFrame
    variants: list[str]
    arch: str | None  # backbone of the evaluation records
    flops_arch: str | None  # backbone of the profile's own FLOP records
    paper_archs: list[str]  # paper architectures counted by the offline profile
    clip_weights: tuple[dict, ...] = ()  # the pretrain stage's clip.json records of this profile
    not_comparable: tuple[str, ...] = ()  # why the evaluations cannot stand beside published numbers

    @property
    def evals(self) -> list[EvalRecord]:
        return [r for r in self.records if isinstance(r, EvalRecord)]

    def flops(self, profile: str, arch: str | None) -> list[FlopsRecord]:
        return [r for r in self.records
                if isinstance(r, FlopsRecord) and (r.profile, r.arch) == (profile, arch)]


def report_variants(records: Sequence[Record], profile: str) -> list[str]:
    """Every registry variant (a missing one shows as a gap), then any other variant with records."""
    extra = {r.variant for r in records if r.profile == profile} - set(VARIANTS)
    return [*VARIANTS, *sorted(extra, key=lambda name: (variant_rank(name), name))]


def _joined(values) -> str:
    return " / ".join(str(v) for v in dict.fromkeys(values))


def inference_conditions(records: Sequence[EvalRecord]) -> str:
    settings = []
    for r in records:
        i = r.inference
        stride = f", stride {i.stride}" if i.mode == "sliding" else ""
        views = f"{i.views} view(s) of {i.window}×{i.window}"
        settings.append(f"{i.mode}, short side {i.short_side}, {views}{stride}")
    return f"Inference: {_joined(settings)}." if settings else "Inference: no evaluation records."


def cost_conditions(records: Sequence[FlopsRecord]) -> str:
    included = frozenset(r.text_encoder_included for r in records)
    text = {frozenset({False}): "excluded (its embeddings are cached once per vocabulary)",
            frozenset({True}): "included"}.get(included, "included in some records only")
    resolutions = _joined(f"{r.resolution[0]}×{r.resolution[1]}" for r in records)
    return (
        "fvcore counts one multiply-add as one FLOP, so these are GMACs (the field's tables call them "
        f"GFLOPs). Per image, mean ± std over {_joined(r.num_images for r in records)} evaluation images per "
        f"benchmark; all {_joined(r.views for r in records)} views per image counted, each {resolutions}; "
        f"C = class names given to the model; text encoder {text}."
    )


def banner(inputs: _Inputs) -> str:
    if inputs.profile == "paper" and inputs.not_comparable:
        return NOT_COMPARABLE_BANNER.format(problems="; ".join(inputs.not_comparable))
    return BANNERS.get(inputs.profile, f"Profile `{inputs.profile}`.")


def _header(inputs: _Inputs) -> list[str]:
    kinds = Counter(r.kind for r in inputs.records)
    return [
        f"# DCP-CLIP benchmark report: `{inputs.profile}` profile",
        "> " + banner(inputs),
        f"Generated from {kinds['eval']} evaluation, {kinds['flops']} FLOP and {kinds['train_step']} "
        "training-step records "
        f"(`python -m experiments.report`); do not edit by hand. Backbone: `{inputs.arch or GAP}`. "
        f"Marks: {GAP} = not run (no record), {NOT_APPLICABLE} = does not apply to the variant.",
    ]


def _accuracy(inputs: _Inputs) -> list[str]:
    summary, profile, variants = inputs.summary, inputs.profile, inputs.variants
    return [
        "## mIoU (%) on the six benchmarks",
        "Confusion-matrix mIoU over each benchmark's whole validation split (detectron2's definition: "
        "classes absent from the ground truth are left out of the mean), in percent. A cell is the mean ± "
        "sample std over seeds when it has several (*seeds* counts them); *mean* is over the six benchmarks, "
        "shown only when all six were run. " + inference_conditions(inputs.evals),
        tables.miou_table(summary, profile, variants), GAP_NOTE,
        "### Difference from `full` (mIoU points)",
        "Each variant's mean minus `full`'s on the same benchmark: negative means below `full`.",
        tables.delta_table(summary, profile, variants), GAP_NOTE,
    ]


def _cost_table(inputs: _Inputs, profile: str, arch: str | None, heading: str) -> list[str]:
    if arch is None:
        return [heading, "No FLOP records for this profile."]
    return [heading, cost_conditions(inputs.flops(profile, arch)),
            tables.cost_table(inputs.summary, profile, arch, inputs.variants), GAP_NOTE,
            f"Parameters of `{arch}` with each variant's head (all, and trainable):",
            tables.params_table(inputs.summary, profile, arch, inputs.variants), GAP_NOTE]


def _cost(inputs: _Inputs) -> list[str]:
    heading = f"### GMACs per image: `{inputs.profile}`"
    lines = ["## Cost", *_cost_table(inputs, inputs.profile, inputs.flops_arch, heading)]
    for arch in inputs.paper_archs:
        lines += _cost_table(inputs, PAPER_ARCH_PROFILE, arch,
                             f"### GMACs per image: paper architecture `{arch}`, counted offline")
        lines.append("Random weights on this profile's synthetic images at the protocol's resolution: "
                     "GMACs depend on the architecture, the resolution and the vocabulary, not on the "
                     "weights' values.")
    return lines


def _run_cost(inputs: _Inputs) -> list[str]:
    """The estimate for the paper architecture: counted by the offline profile, or the paper profile's own."""
    sources = [(PAPER_ARCH_PROFILE, a) for a in inputs.paper_archs] if inputs.profile == "offline" else \
        [(inputs.profile, inputs.flops_arch)] if inputs.flops_arch else []
    lines = []
    for profile, arch in sources:
        if tables.select(inputs.summary, kind="train_step", profile=profile, arch=arch).empty:
            continue  # counted before the flops stage wrote train-step records
        lines += [
            f"### What a paper-profile run of `{arch}` costs (estimate, counted from the records)",
            "Each variant's training runs (seeds x steps x the GMACs of one step: 3 forwards of the batch's "
            "crops on the training vocabulary, plus the text tower when it trains; `dcpclip.train_cost`) "
            f"plus its evaluations (seeds x {run_cost.evaluation_work()} x the GMACs per image above), "
            "2 FLOPs per multiply-add. Not counted: the text banks (cached once per vocabulary) and the "
            "FLOP, aggregate and report stages (minutes on a CPU). "
            "GPU-hours are given for an effective rate of R TFLOP/s (the device's throughput on this model, "
            "utilisation included, which no record here measures): `python -m experiments.estimate "
            "profile=paper` measures R on your device with a short probe (`benchmarks/gpu_check.sh` on a GPU).",
            run_cost.run_cost_table(inputs.summary, profile, arch, inputs.variants),
        ]
    return lines


def _diagnostics(inputs: _Inputs, settings: ReportSettings) -> list[str]:
    variant, count = settings.worst_classes_variant, settings.worst_classes
    return [
        "## Pruner recall (%)",
        "Share of the ground-truth classes that the coarse step keeps (it bounds the achievable mIoU); "
        "mean ± std over seeds.",
        tables.recall_table(inputs.summary, inputs.profile, inputs.variants),
        f"{GAP_NOTE} {NOT_APPLICABLE}: the variant has no pruner.",
        f"## Hardest classes of `{variant}`",
        f"The {count} lowest per-class IoUs (%, mean over seeds) per benchmark.",
        tables.worst_classes_table(inputs.evals, inputs.profile, variant, count), GAP_NOTE,
    ]


def _figures(inputs: _Inputs, curves: pd.DataFrame) -> dict[str, bytes | None]:
    summary, profile, variants = inputs.summary, inputs.profile, inputs.variants
    sources = [(profile, inputs.flops_arch), *((PAPER_ARCH_PROFILE, a) for a in inputs.paper_archs)]
    return {
        "miou_by_benchmark.png": figures.miou_by_benchmark(summary, profile, variants),
        "gmacs_vs_vocabulary.png": figures.gmacs_vs_vocabulary(summary, sources, variants),
        "accuracy_vs_cost.png": figures.accuracy_vs_cost(summary, profile, inputs.flops_arch, variants),
        "training_curves.png": figures.training_curves(curves, variants),
    }


def _figure_links(drawn: dict[str, bytes | None]) -> list[str]:
    lines = ["## Figures"]
    for name, caption in FIGURES.items():
        lines.append(f"![{caption}](figures/{name})" if drawn[name] else
                     f"*{caption}: not drawn, no records (or DVCLive curves) to draw it from.*")
    return lines


def _reference(inputs: _Inputs) -> list[str]:
    offline = " The offline profile's numbers above are not comparable with them." \
        if inputs.profile == "offline" or inputs.not_comparable else ""
    return [
        "## Published numbers (reference only, not measured here)",
        "mIoU (%) as reported by each paper on the same protocol, for orientation; never mixed with this "
        "suite's measurements." + offline,
        tables.published_table(), f"{GAP} not reported by the paper.",
    ]


def _claims(inputs: _Inputs) -> list[str]:
    summary, profile = inputs.summary, inputs.profile
    results = [claims.ablation_below_full(summary, profile, a) for a in claims.ABLATIONS]
    results += [claims.full_beats_zero_shot(summary, profile),
                claims.cost_flat_in_vocabulary(summary, profile, inputs.flops_arch)]
    results += [claims.cost_flat_in_vocabulary(summary, PAPER_ARCH_PROFILE, a) for a in inputs.paper_archs]
    results.append(claims.full_beats_published(summary, profile, inputs.not_comparable))
    return [
        "## Claims check",
        f"A claim **{claims.HOLDS}** only when every comparison it needs was measured and agrees; one "
        f"measured counterexample makes it **{claims.DOES_NOT_HOLD}**; otherwise it is "
        f"**{claims.NOT_MEASURED}**.",
        *(f"{i}. {r.claim}: **{r.verdict}**. Numbers: {r.evidence}." for i, r in enumerate(results, 1)),
    ]


def clip_weights_line(weights: Sequence[dict]) -> str:
    """Which CLIP weights the runs started from, from the pretrain stage's clip.json records."""
    described = []
    for record in weights:
        if record.get("pretrained_here"):
            described.append(f"`{record['arch']}` pre-trained here from random init on the training set "
                             f"({record['steps']} steps; clip.pt sha256 `{record['sha256'][:16]}`)")
        else:
            described.append(f"`{record['arch']}` with open_clip weights `{record['pretrained']}`")
    return f"CLIP weights: {'; '.join(described)}." if described else f"CLIP weights: {GAP} (no clip.json)."


def _provenance(inputs: _Inputs) -> list[str]:
    if not inputs.records:
        return ["## Provenance", "No records."]
    commits = Counter(r.environment.get("git_commit") or GAP for r in inputs.records)
    listed = ", ".join(f"`{commit}` ({n} records)" for commit, n in sorted(commits.items()))
    return [
        "## Provenance",
        f"Git commits: {listed}. " + clip_weights_line(inputs.clip_weights),
        tables.environment_table(inputs.records),
        "Every record with its fingerprint (config and code it depends on), its training run's fingerprint, "
        "the digest of the code that computed it and the command that reproduces it:",
        tables.provenance_table(inputs.records),
    ]


def render_report(
    records: Sequence[Record], curves: pd.DataFrame, settings: ReportSettings, clip_weights: Sequence[dict] = ()
) -> Report:
    profile = settings.profile
    shown = {profile, PAPER_ARCH_PROFILE} if profile == "offline" else {profile}
    records = sort_records(r for r in records if r.profile in shown)
    summary = summary_table(records)
    inputs = _Inputs(
        profile=profile, records=records, summary=summary, variants=report_variants(records, profile),
        arch=single_arch(summary, profile), flops_arch=single_arch(summary, profile, "flops"),
        paper_archs=sorted(set(summary.loc[summary["profile"] == PAPER_ARCH_PROFILE, "arch"])),
        clip_weights=tuple(clip_weights),
        not_comparable=tuple(comparability_problems([r for r in records if isinstance(r, EvalRecord)])),
    )
    drawn = _figures(inputs, curves)
    sections = [*_header(inputs), *_accuracy(inputs), *_cost(inputs), *_run_cost(inputs),
                *_diagnostics(inputs, settings),
                *_figure_links(drawn), *_reference(inputs), *_claims(inputs), *_provenance(inputs)]
    return Report("\n\n".join(sections) + "\n", {name: png for name, png in drawn.items() if png is not None})


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """README.md plus figures/*.png, each written atomically; PNGs no longer drawn are removed."""
    out_dir = Path(out_dir)
    figure_dir = out_dir / "figures"
    for name, png in report.figures.items():
        with atomic_path(figure_dir / name) as tmp:
            tmp.write_bytes(png)
    for stale in sorted(figure_dir.glob("*.png")):
        if stale.name not in report.figures:
            stale.unlink()
    write_text(out_dir / "README.md", report.markdown)
    return out_dir / "README.md"
