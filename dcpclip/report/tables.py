"""Markdown tables of the report (pipe tables via tabulate). Every cell is formatted here, so the same
table always renders to the same text. A measurement that was not made is the GAP mark, never a
silent omission; a quantity that does not exist (recall without a pruner, the mIoU of a split without a
labelled pixel, null in its record) is NOT_APPLICABLE.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pandas as pd
from tabulate import tabulate

from dcpclip.data.specs import SPECS
from dcpclip.model.variants import VARIANTS
from dcpclip.records import BENCHMARK_KEYS, EvalRecord, Record, TrainStepRecord, sort_records
from dcpclip.report.aggregate import seed_statistics
from dcpclip.report.claims import LARGE_VOCABULARY, SMALL_VOCABULARY
from dcpclip.report.reference import PUBLISHED

GAP = "—"
NOT_APPLICABLE = "n/a"
TITLES = [SPECS[key].title for key in BENCHMARK_KEYS]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """Pipe table; `align` has one "l" or "r" per column (default: the first left, numbers right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rows = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
    colalign = ["left" if a == "l" else "right" for a in align]
    return tabulate(rows, headers=list(headers), tablefmt="pipe", colalign=colalign, disable_numparse=True)


def mean_std(mean: float, std: float, n: int, digits: int = 2) -> str:
    if math.isnan(mean):  # every seed's value is undefined
        return NOT_APPLICABLE
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 and round(std, digits) else "")


def gmacs(mean: float, std: float = 0.0) -> str:
    """Two decimals from 1 GMAC up, four below (the tiny model); the std with the mean's precision, left
    out when it is zero (a cost that does not depend on the image)."""
    digits = 2 if mean >= 1 else 4
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if round(std, digits) else "")


def seed_range(cells: dict, variant: str) -> str:
    """"2" or "1–3": the seeds behind `variant`'s cells (benchmarks may differ), GAP without any."""
    counts = sorted({cells[variant, b][2] for b in BENCHMARK_KEYS if (variant, b) in cells})
    return GAP if not counts else "–".join(map(str, dict.fromkeys([counts[0], counts[-1]])))


def distinct_counts(values) -> str:
    """Parameter counts as "1,234" (several distinct values all shown, " / " apart), GAP without any."""
    return " / ".join(f"{int(v):,}" for v in sorted(set(values))) or GAP


def benchmark_headers(records: Sequence[EvalRecord], profile: str) -> list[str]:
    """"A-847 (8 img)": each benchmark's title with the images its evaluations scored (several counts are
    all shown); the bare title where nothing was evaluated."""
    headers = []
    for b in BENCHMARK_KEYS:
        counts = sorted({r.num_images for r in records if (r.profile, r.benchmark) == (profile, b)})
        headers.append(f"{SPECS[b].title} ({'/'.join(map(str, counts))} img)" if counts else SPECS[b].title)
    return headers


def _cells(summary: pd.DataFrame, metric: str, profile: str, arch: str | None = None) -> dict:
    """(variant, benchmark) -> (mean, std, n) over seeds."""
    stats = seed_statistics(summary, metric, profile)
    if arch is not None:
        stats = stats[stats["arch"] == arch]
    return {(r.variant, r.benchmark): (r.mean, r.std, r.n) for r in stats.itertuples()}


def select(summary: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows whose columns equal the given values, e.g. `select(summary, profile="offline", metric="mIoU")`."""
    mask = pd.Series(True, index=summary.index)
    for column, value in equal.items():
        mask &= summary[column] == value
    return summary[mask]


def _benchmark_mean(summary: pd.DataFrame, profile: str, variant: str, cells: dict) -> tuple:
    """Mean of the six benchmark means; std over the seeds that ran all six (n = those seeds)."""
    rows = select(summary, profile=profile, variant=variant, metric="mIoU")
    per_seed = rows.pivot_table(index="seed", columns="benchmark", values="value")
    complete = per_seed.reindex(columns=list(BENCHMARK_KEYS)).dropna().mean(axis=1)  # seeds with all six
    mean = sum(cells[variant, b][0] for b in BENCHMARK_KEYS) / len(BENCHMARK_KEYS)
    return mean, float(complete.std()) if len(complete) > 1 else float("nan"), len(complete)


def what_it_tests(variant: str) -> str:
    """The registry's head delta and what the ablation measures: "`prune=false`: the cost and ..."."""
    parts = [VARIANTS[p] for p in variant.split("+") if p in VARIANTS]
    delta = ", ".join(f"`{k}={json.dumps(v)}`" for part in parts for k, v in part.delta.items())
    if variant not in VARIANTS:  # a combination: its parts' deltas
        return delta or GAP
    tests = VARIANTS[variant].tests
    return f"{delta}: {tests}" if delta else tests


def ablation_table(summary: pd.DataFrame, profile: str, variants: Sequence[str], cost_profile: str,
                   cost_arch: str | None, reference: str = "full") -> str:
    """One row per variant: what it tests, seeds, mIoU over the six benchmarks (mean ± std over seeds),
    its difference from `reference`, GMACs per image at the smallest and largest vocabulary and the head's
    parameters of `cost_arch` in `cost_profile`."""
    cells = _cells(summary, "mIoU", profile)
    cost = _cells(summary, "gmacs_mean", cost_profile, cost_arch) if cost_arch else {}
    small, large = (next(b for b in BENCHMARK_KEYS if SPECS[b].num_prompts == c)
                    for c in (SMALL_VOCABULARY, LARGE_VOCABULARY))

    def six_benchmark_mean(variant: str) -> tuple | None:
        if not all((variant, b) in cells for b in BENCHMARK_KEYS):
            return None
        return _benchmark_mean(summary, profile, variant, cells)

    reference_mean = six_benchmark_mean(reference)
    rows = []
    for variant in variants:
        seeds = seed_range(cells, variant)
        mean = six_benchmark_mean(variant)
        if variant == reference or mean is None or reference_mean is None:
            delta = "reference" if variant == reference and mean is not None else GAP
        else:
            delta = NOT_APPLICABLE if math.isnan(mean[0] - reference_mean[0]) else f"{mean[0] - reference_mean[0]:+.2f}"
        head = select(summary, profile=cost_profile, arch=cost_arch, variant=variant, metric="params_head")["value"]
        rows.append([f"`{variant}`", what_it_tests(variant), seeds, GAP if mean is None else mean_std(*mean), delta,
                     *(gmacs(cost[variant, b][0]) if (variant, b) in cost else GAP for b in (small, large)),
                     distinct_counts(head)])
    headers = ["variant", "what it tests", "seeds", "mIoU (six-benchmark mean)", f"Δ vs `{reference}`",
               f"GMACs C={SMALL_VOCABULARY}", f"GMACs C={LARGE_VOCABULARY}", "head parameters"]
    return markdown_table(headers, rows, "llrrrrrr")


def miou_table(summary: pd.DataFrame, profile: str, variants: Sequence[str],
               headers: Sequence[str] = TITLES) -> str:
    cells = _cells(summary, "mIoU", profile)
    rows = []
    for variant in variants:
        seeds = seed_range(cells, variant)
        row = [f"`{variant}`", seeds]
        row += [mean_std(*cells[variant, b]) if (variant, b) in cells else GAP for b in BENCHMARK_KEYS]
        complete = all((variant, b) in cells for b in BENCHMARK_KEYS)
        row.append(mean_std(*_benchmark_mean(summary, profile, variant, cells)) if complete else GAP)
        rows.append(row)
    return markdown_table(["variant", "seeds", *headers, "mean"], rows)


def delta_table(summary: pd.DataFrame, profile: str, variants: Sequence[str], reference: str = "full",
                headers: Sequence[str] = TITLES) -> str:
    """mIoU of each other variant minus `reference`'s (means over seeds), in points."""
    cells = _cells(summary, "mIoU", profile)
    rows = []
    for variant in variants:
        if variant == reference:
            continue
        deltas = [cells[variant, b][0] - cells[reference, b][0]
                  if (variant, b) in cells and (reference, b) in cells else None for b in BENCHMARK_KEYS]
        mean = sum(deltas) / len(deltas) if None not in deltas else None
        rows.append([f"`{variant}`", *(GAP if d is None else NOT_APPLICABLE if math.isnan(d) else f"{d:+.2f}"
                                       for d in [*deltas, mean])])
    return markdown_table(["variant", *headers, "mean"], rows)


def cost_table(summary: pd.DataFrame, profile: str, arch: str, variants: Sequence[str]) -> str:
    """GMACs per image, mean ± std over the counted images; C in each header is the vocabulary size."""
    means, stds = _cells(summary, "gmacs_mean", profile, arch), _cells(summary, "gmacs_std", profile, arch)
    headers = [f"{SPECS[b].title} (C={SPECS[b].num_prompts})" for b in BENCHMARK_KEYS]
    rows = []
    for variant in variants:
        rows.append([f"`{variant}`", *(gmacs(means[variant, b][0], stds[variant, b][0])
                                       if (variant, b) in means else GAP for b in BENCHMARK_KEYS)])
    return markdown_table(["variant", *headers], rows)


def params_table(summary: pd.DataFrame, profile: str, arch: str, variants: Sequence[str]) -> str:
    """Parameters of each variant's model (the same on every benchmark; several values are all shown)."""
    rows = []
    for variant in variants:
        row = [f"`{variant}`"]
        for metric in ("params_total", "params_trainable", "params_head"):
            values = select(summary, profile=profile, arch=arch, variant=variant, metric=metric)["value"]
            row.append(distinct_counts(values))
        rows.append(row)
    return markdown_table(["variant", "parameters", "trainable", "head (outside CLIP)"], rows)


def recall_table(summary: pd.DataFrame, profile: str, variants: Sequence[str],
                 headers: Sequence[str] = TITLES) -> str:
    evaluated = _cells(summary, "mIoU", profile)
    recall = _cells(summary, "pruner_recall", profile)
    rows = []
    for variant in variants:
        row = [f"`{variant}`"]
        for b in BENCHMARK_KEYS:
            if (variant, b) in recall:
                row.append(mean_std(*recall[variant, b], digits=1))
            else:
                row.append(NOT_APPLICABLE if (variant, b) in evaluated else GAP)
        rows.append(row)
    return markdown_table(["variant", *headers], rows)


def worst_classes_table(records: Sequence[Record], profile: str, variant: str, count: int) -> str:
    """The `count` lowest per-class IoUs (mean over seeds) per benchmark; classes absent from the ground
    truth have no IoU and are left out, as the mean leaves them out."""
    rows = []
    for b in BENCHMARK_KEYS:
        runs = [r for r in records if isinstance(r, EvalRecord)
                and (r.profile, r.variant, r.benchmark) == (profile, variant, b)]
        if not runs:
            rows.append([SPECS[b].title, GAP, GAP, GAP])
            continue
        scores = {}
        for name in runs[0].per_class_iou:
            values = [r.per_class_iou.get(name) for r in runs]
            values = [v for v in values if v is not None]
            if values:
                scores[name] = sum(values) / len(values)
        worst = sorted(scores.items(), key=lambda item: (item[1], item[0]))[:count]
        listed = "; ".join(f"{name} {iou:.1f}" for name, iou in worst) or GAP
        rows.append([SPECS[b].title, str(len(runs)), f"{len(scores)} / {SPECS[b].num_classes}", listed])
    headers = ["benchmark", "seeds", "classes in ground truth", "worst classes (IoU %)"]
    return markdown_table(headers, rows, "lrrl")


def published_table() -> str:
    rows = []
    for p in PUBLISHED:
        scores = [GAP if p.miou[b] is None else f"{p.miou[b]:.1f}" for b in BENCHMARK_KEYS]
        rows.append([p.method, p.backbone, *scores, p.source])
    return markdown_table(["method", "backbone", *TITLES, "source"], rows, "ll" + "r" * len(TITLES) + "l")


def environment_labels(records: Sequence[Record]) -> dict[str, str]:
    """Distinct environment stamps (git commit aside) -> short labels E1, E2, ... in record order."""
    labels: dict[str, str] = {}
    for record in sort_records(records):
        stamp = json.dumps({k: v for k, v in record.environment.items() if k != "git_commit"}, sort_keys=True)
        labels.setdefault(stamp, f"E{len(labels) + 1}")
    return labels


def environment_table(records: Sequence[Record]) -> str:
    rows = []
    for stamp, label in environment_labels(records).items():
        env = json.loads(stamp)
        packages = ", ".join(f"{name} {version}" for name, version in sorted(env.get("packages", {}).items()))
        rows.append([label, env.get("python", GAP), env.get("device", GAP), packages or GAP])
    return markdown_table(["environment", "python", "device", "packages"], rows, "llll")


def provenance_table(records: Sequence[Record]) -> str:
    labels = environment_labels(records)
    rows = []
    for r in sort_records(records):
        stamp = json.dumps({k: v for k, v in r.environment.items() if k != "git_commit"}, sort_keys=True)
        seed = str(r.seed) if isinstance(r, EvalRecord) else GAP
        train = (r.train_fingerprint or GAP) if isinstance(r, EvalRecord) else GAP
        benchmark = SPECS[r.train_dataset if isinstance(r, TrainStepRecord) else r.benchmark].title
        rows.append([r.kind, r.profile, r.arch, f"`{r.variant}`", seed, benchmark,
                     r.config_fingerprint, train, r.code_digest, r.environment.get("git_commit") or GAP, labels[stamp],
                     f"`{r.command}`"])
    headers = ["record", "profile", "arch", "variant", "seed", "benchmark", "config", "training", "code",
               "git commit", "env", "command"]
    return markdown_table(headers, rows, "l" * len(headers))
