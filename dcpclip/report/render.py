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
from dcpclip.data.specs import SPECS
from dcpclip.model.variants import VARIANTS
from dcpclip.prediction_samples import SampleSet
from dcpclip.profiles import PAPER_ARCH_PROFILE
from dcpclip.records import BENCHMARK_KEYS, EvalRecord, FlopsRecord, Record, sort_records
from dcpclip.report import claims, figures, qualitative, run_cost, tables
from dcpclip.report.aggregate import single_arch, summary_table, variant_rank
from dcpclip.report.comparability import comparability_problems
from dcpclip.report.qualitative import QUALITATIVE_IMAGES
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
FIGURES = {
    "delta_by_benchmark.png": "mIoU difference from full per benchmark",
    "recall_at_k.png": "pruner recall against K",
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


def _resolutions(records: Sequence[FlopsRecord]) -> str:
    return _joined(f"{r.resolution[0]}×{r.resolution[1]}" for r in records)


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
    resolutions = _resolutions(records)
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
        f"In every table, {GAP} = not run (no record) and {NOT_APPLICABLE} = does not apply to the variant; "
        "± is the sample std over seeds (or over images for GMACs), shown only where it is not zero.",
    ]


def _ablations(inputs: _Inputs) -> list[str]:
    """The first screen: one row per variant with its accuracy, its cost at the paper architecture and the
    claims' verdicts, cost and accuracy apart."""
    cost_profile, cost_arch = ((PAPER_ARCH_PROFILE, inputs.paper_archs[0]) if inputs.paper_archs
                               else (inputs.profile, inputs.flops_arch))
    counted = inputs.flops(cost_profile, cost_arch)
    geometry = (f"`{cost_arch}` at {_resolutions(counted)}, "
                f"{_joined(r.views for r in counted)} views per image" if counted else f"`{cost_arch or GAP}`")
    offline = " (counted offline with random weights: cost depends on the architecture, not the weights)" \
        if cost_profile == PAPER_ARCH_PROFILE else ""
    return [
        "## Ablations",
        f"mIoU of `{inputs.arch or GAP}` in this profile: the mean over the six benchmarks (per benchmark "
        "below), ± the std over the seeds that ran all six; Δ is that mean minus `full`'s. GMACs per image "
        f"and head parameters (those outside CLIP) of {geometry}{offline}, at the smallest and the largest "
        "vocabulary (PAS-20 and A-847).",
        tables.ablation_table(inputs.summary, inputs.profile, inputs.variants, cost_profile, cost_arch),
        *_verdicts(inputs),
    ]


def _accuracy(inputs: _Inputs) -> list[str]:
    summary, profile, variants = inputs.summary, inputs.profile, inputs.variants
    headers = tables.benchmark_headers(inputs.evals, profile)
    return [
        "## mIoU (%) on the six benchmarks",
        "Confusion-matrix mIoU over each benchmark's whole validation split (detectron2's definition: "
        "classes absent from the ground truth are left out of the mean), in percent; a header gives the "
        "images scored. A cell is the mean over seeds (*seeds* counts them); *mean* is over the six "
        "benchmarks, shown only when all six were run. " + inference_conditions(inputs.evals),
        tables.miou_table(summary, profile, variants, headers),
        "### Difference from `full` (mIoU points)",
        "Each variant's mean minus `full`'s on the same benchmark: negative means below `full`.",
        tables.delta_table(summary, profile, variants, headers=headers),
    ]


def _cost_table(inputs: _Inputs, profile: str, arch: str | None, heading: str) -> list[str]:
    if arch is None:
        return [heading, "No FLOP records for this profile."]
    return [heading, cost_conditions(inputs.flops(profile, arch)),
            tables.cost_table(inputs.summary, profile, arch, inputs.variants),
            f"Parameters of `{arch}` with each variant's head (all, trainable, and the head's own):",
            tables.params_table(inputs.summary, profile, arch, inputs.variants)]


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


def _diagnostics(inputs: _Inputs, settings: ReportSettings, drawn: dict[str, bytes | None]) -> list[str]:
    variant, count = settings.worst_classes_variant, settings.worst_classes
    return [
        "## Pruner recall (%)",
        "Share of an image's ground-truth classes that the coarse step keeps (the union over its views; it "
        "bounds the achievable mIoU), averaged over images, at the trained K; "
        f"{NOT_APPLICABLE}: the variant has no pruner. The curve measures the same in the same evaluation "
        "pass had each view kept K classes: the number to tune `head.top_k` with.",
        tables.recall_table(inputs.summary, inputs.profile, inputs.variants,
                            tables.benchmark_headers(inputs.evals, inputs.profile)),
        _figure_link("recall_at_k.png", drawn),
        f"## Hardest classes of `{variant}`",
        f"The {count} lowest per-class IoUs (%, mean over seeds) per benchmark.",
        tables.worst_classes_table(inputs.evals, inputs.profile, variant, count),
    ]


def _figures(inputs: _Inputs, curves: pd.DataFrame, samples: Sequence[SampleSet]) -> dict[str, bytes | None]:
    summary, profile, variants = inputs.summary, inputs.profile, inputs.variants
    sources = [(profile, inputs.flops_arch), *((PAPER_ARCH_PROFILE, a) for a in inputs.paper_archs)]
    drawn = {
        "delta_by_benchmark.png": figures.delta_by_benchmark(summary, profile, variants),
        "recall_at_k.png": figures.recall_at_k(summary, profile, variants),
        "gmacs_vs_vocabulary.png": figures.gmacs_vs_vocabulary(summary, sources, variants),
        "accuracy_vs_cost.png": figures.accuracy_vs_cost(summary, profile, inputs.flops_arch, variants),
        "training_curves.png": figures.training_curves(curves, variants),
    }
    for benchmark in BENCHMARK_KEYS:
        drawn[qualitative_name(benchmark)] = qualitative.grid(samples, inputs.evals, benchmark)
    return drawn


def qualitative_name(benchmark: str) -> str:
    return f"qualitative_{benchmark}.png"


def _figure_link(name: str, drawn: dict[str, bytes | None]) -> str:
    benchmark = name.removeprefix("qualitative_").removesuffix(".png")
    caption = FIGURES.get(name) or f"predictions on {SPECS[benchmark].title}"
    return f"![{caption}](figures/{name})" if drawn[name] else \
        f"*{caption}: not drawn, no records (or DVCLive curves, or prediction samples) to draw it from.*"


def _figure_links(drawn: dict[str, bytes | None]) -> list[str]:
    return ["## Figures", *(_figure_link(name, drawn) for name in FIGURES if name != "recall_at_k.png")]


def _qualitative(drawn: dict[str, bytes | None]) -> list[str]:
    return [
        "## Predictions",
        f"The first {QUALITATIVE_IMAGES} images of each benchmark as the evaluation pass scored them "
        "(`eval.sample_images`; seed 0 where several ran): the image, its ground truth and each trained "
        "variant's labels, coloured by class as `experiments.predict` colours them; unlabelled ground truth "
        "is left uncoloured. The legend names the classes covering the most ground-truth pixels.",
        *(_figure_link(qualitative_name(b), drawn) for b in BENCHMARK_KEYS),
    ]


def _reference(inputs: _Inputs) -> list[str]:
    offline = " The offline profile's numbers above are not comparable with them." \
        if inputs.profile == "offline" or inputs.not_comparable else ""
    return [
        "## Published numbers (reference only, not measured here)",
        "mIoU (%) as reported by each paper on the same protocol, for orientation; never mixed with this "
        "suite's measurements." + offline,
        tables.published_table(), f"{GAP} not reported by the paper.",
    ]


def _numbered(results: Sequence[claims.ClaimResult]) -> list[str]:
    return [f"{i}. {r.claim}: **{r.verdict}**. Numbers: {r.evidence}." for i, r in enumerate(results, 1)]


def _verdicts(inputs: _Inputs) -> list[str]:
    summary, profile = inputs.summary, inputs.profile
    cost = [claims.cost_flat_in_vocabulary(summary, profile, inputs.flops_arch)]
    cost += [claims.cost_flat_in_vocabulary(summary, PAPER_ARCH_PROFILE, a) for a in inputs.paper_archs]
    accuracy = [claims.ablation_below_full(summary, profile, a) for a in claims.ABLATIONS]
    accuracy += [claims.full_beats_zero_shot(summary, profile),
                 claims.full_beats_published(summary, profile, inputs.not_comparable)]
    untested = (" On this profile they compare a tiny CLIP trained for minutes on synthetic images: they test "
                "that the pipeline computes and compares the numbers, not DCP-CLIP's accuracy claims."
                if profile == "offline" or inputs.not_comparable else "")
    return [
        f"A claim **{claims.HOLDS}** only when every comparison it needs was measured and agrees; one "
        f"measured counterexample makes it **{claims.DOES_NOT_HOLD}**; otherwise it is "
        f"**{claims.NOT_MEASURED}**.",
        "### Cost claims",
        "GMACs depend on the architecture, the resolution and the vocabulary, not on the weights, so every "
        "profile tests these.",
        *_numbered(cost),
        "### Accuracy claims",
        "mIoU comparisons of seed means." + untested,
        *_numbered(accuracy),
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
        f"<details><summary>Every record ({len(inputs.records)}) with its fingerprint (config and code it "
        "depends on), its training run's fingerprint, the digest of the code that computed it and the "
        "command that reproduces it</summary>",
        tables.provenance_table(inputs.records),
        "</details>",
    ]


def render_report(
    records: Sequence[Record], curves: pd.DataFrame, settings: ReportSettings, clip_weights: Sequence[dict] = (),
    samples: Sequence[SampleSet] = (),
) -> Report:
    """`samples`: the evaluation pass's prediction samples (`dcpclip.prediction_samples`); those that do not
    belong to one of `records` (another fingerprint) are not drawn."""
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
    drawn = _figures(inputs, curves, samples)
    sections = [*_header(inputs), *_ablations(inputs), *_accuracy(inputs), *_diagnostics(inputs, settings, drawn),
                *_cost(inputs), *_run_cost(inputs), *_figure_links(drawn), *_qualitative(drawn),
                *_reference(inputs), *_provenance(inputs)]
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
