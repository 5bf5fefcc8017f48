"""Aggregation, claims and the generated report on hand-made records.

The golden report: `tests/golden/report.md` is the expected markdown for the records of `scenario()`.
After an intended change to the report, regenerate it with
    UPDATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden
and review the diff of tests/golden/report.md before committing it.
"""

import dataclasses
import difflib
import json
import os
import random
import re
from pathlib import Path

import pandas as pd
import pytest

from dcpclip.data.specs import SPECS
from dcpclip.records import (
    BENCHMARK_KEYS,
    EvalRecord,
    FlopsRecord,
    InferenceSettings,
    SegmentationMetrics,
    TrainStepRecord,
    write_record,
)
from dcpclip.report import claims
from dcpclip.report.aggregate import miou_metrics, seed_statistics, summary_table, write_aggregate
from dcpclip.report.curves import load_training_curves
from dcpclip.report.render import ReportSettings, render_report, write_report
from experiments import aggregate as aggregate_stage
from experiments import report as report_stage

GOLDEN = Path(__file__).parent / "golden" / "report.md"
ENV = {"python": "3.11.9", "packages": {"torch": "2.14.1", "dcpclip": "0.1.0"},
       "device": "cpu (test, 2 threads)", "git_commit": "0123abc"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def eval_record(variant, benchmark, miou, seed=0, profile="offline", arch="dcpclip-tiny", recall=0.8):
    spec = SPECS[benchmark]
    per_class = {f"c{i:03d}": (None if i % 7 == 3 else min(100.0, (i * 37) % 100 + 0.5 * seed))
                 for i in range(spec.num_classes)}
    return EvalRecord(
        profile=profile, variant=variant, seed=seed, arch=arch, benchmark=benchmark, split="val",
        num_classes=spec.num_classes, num_prompts=spec.num_prompts,
        # a paper-profile record is a real run over the whole split from OpenAI's weights
        num_images=spec.expected_images[0] if profile == "paper" else 8,
        data_source="real" if profile == "paper" else "synthetic",
        clip_weights="openai" if profile == "paper" else "models/offline/dcpclip-tiny/clip.pt",
        inference=InferenceSettings(mode="sliding", short_side=96, window=64, stride=32, views=5),
        metrics=SegmentationMetrics(mIoU=miou, fwIoU=miou + 10, mAcc=miou + 5, pAcc=miou + 20),
        per_class_iou=per_class, pruner_recall=None if variant in ("zero_shot", "no_prune") else recall,
        pruner_recall_at_k=None if variant in ("zero_shot", "no_prune") else
        {str(k): min(1.0, recall * k / 8) for k in (4, 8, 16, 32, 64, 128)},
        config_fingerprint=f"cfg-{variant}-{seed}", train_fingerprint=None if variant == "zero_shot" else
        f"train-{variant}-{seed}", code_digest="code-eval",
        command=f"python -m ablations.run --variant {variant} --seed {seed}", environment=ENV,
    )


def flops_record(variant, benchmark, gmacs, profile="offline", arch="dcpclip-tiny", resolution=(64, 64)):
    return FlopsRecord(
        profile=profile, variant=variant, benchmark=benchmark, arch=arch, resolution=resolution, views=5,
        num_classes=SPECS[benchmark].num_prompts, text_encoder_included=False, gmacs_mean=gmacs,
        gmacs_std=gmacs / 100, num_images=4, params_total=123456, params_trainable=23456,
        params_head=0 if variant == "zero_shot" else 3456,
        skipped_ops=["aten::add"], config_fingerprint=f"cfg-{variant}", code_digest="code-flops",
        command=f"python -m experiments.flops variant={variant}", environment=ENV,
    )


def train_step_record(variant, step_gmacs, profile="paper-arch", arch="ViT-B-16", iterations=80000, seeds=1):
    trains = variant != "zero_shot"
    image, text = (step_gmacs / 3 - 70.0) / 4 if trains else 0.0, 70.0 if trains else 0.0
    return TrainStepRecord(
        profile=profile, variant=variant, arch=arch, trains=trains, train_dataset="coco_stuff", crop_size=384,
        batch_size=4, num_classes=171, text_encoder_trains=trains, image_gmacs=image, text_encoder_gmacs=text,
        step_gmacs=3 * (4 * image + text), iterations=iterations, seeds=seeds, params_trainable=23456,
        config_fingerprint=f"step-{variant}", code_digest="code-flops",
        command=f"python -m experiments.flops variant={variant} --paper-arch vitb16", environment=ENV,
    )


# mIoU % in the field's order A-847, PC-459, A-150, PC-59, PAS-20, PAS-20b (None: not run)
MIOU = {
    ("full", 0): [10.0, 12.0, 20.0, 40.0, 70.0, 55.0],
    ("full", 1): [11.0, 13.0, 21.0, 42.0, 72.0, 56.0],
    ("no_prune", 0): [9.0, 12.9, 19.0, 39.0, 69.0, 54.0],  # above full on PC-459
    ("no_dual", 0): [9.5, 11.0, 19.5, 38.0, 68.0, None],  # PAS-20b not run
    ("zero_shot", 0): [1.0, 2.0, 5.0, 15.0, 40.0, 20.0],
}  # static_text: not run at all


def scenario() -> list:
    records = [eval_record(variant, b, miou, seed) for (variant, seed), row in MIOU.items()
               for b, miou in zip(BENCHMARK_KEYS, row, strict=True) if miou is not None]
    for b in BENCHMARK_KEYS:
        vocabulary = SPECS[b].num_prompts
        records += [flops_record("full", b, 0.048 + (0.002 if vocabulary == 847 else 0.0)),
                    flops_record("no_prune", b, 0.04 + vocabulary * 1e-4),
                    flops_record("no_dual", b, 0.046)]
    for variant, gmacs in (("full", (90.0, 88.0)), ("no_prune", (250.0, 86.0))):
        records += [flops_record(variant, b, g, "paper-arch", "ViT-B-16", (384, 384))
                    for b, g in zip(("a847", "pas20"), gmacs, strict=True)]
    records += [train_step_record("full", 1020.0), train_step_record("no_prune", 1500.0)]
    return records


def write_curves(runs: Path):
    for variant, seed, scale in (("full", 0, 1.0), ("full", 1, 1.1), ("no_prune", 0, 1.3)):
        metrics = runs / "offline" / "dcpclip-tiny" / variant / f"seed{seed}" / "dvclive" / "plots" / "metrics"
        (metrics / "train").mkdir(parents=True)
        (metrics / "train" / "loss.tsv").write_text(
            "step\tloss\n" + "".join(f"{s}\t{scale * 2.0 / (s + 1):.4f}\n" for s in range(0, 50, 10)))
        (metrics / "lr.tsv").write_text("step\tlr\n" + "".join(f"{s}\t{1e-3 * (1 - s / 50):.6f}\n"
                                                                for s in range(0, 50, 10)))


def curves_frame(tmp_path) -> pd.DataFrame:
    write_curves(tmp_path / "runs")
    return load_training_curves(tmp_path / "runs", "offline")


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The first table after `heading`: first cell -> the other cells."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


# ---- aggregation -----------------------------------------------------------------------------------------
def test_summary_is_one_row_per_measured_quantity():
    summary = summary_table(scenario())
    evals = summary[summary["kind"] == "eval"]
    assert len(evals[evals["metric"] == "mIoU"]) == sum(v is not None for row in MIOU.values() for v in row)
    recall = summary[summary["metric"] == "pruner_recall"]
    assert set(recall["variant"]) == {"full", "no_dual"} and (recall["value"] == 80.0).all()  # percent
    assert summary.loc[summary["kind"] == "flops", "seed"].isna().all()
    pas20b = summary[(summary["benchmark"] == "pas20b") & (summary["metric"] == "gmacs_mean")]
    assert set(pas20b["vocabulary"]) == {59}  # the model sees 59 class names for 21 label classes


def test_seed_statistics_are_mean_and_sample_std():
    stats = seed_statistics(summary_table(scenario()), "mIoU", "offline")
    full_a847 = stats[(stats["variant"] == "full") & (stats["benchmark"] == "a847")].iloc[0]
    assert (full_a847["mean"], full_a847["n"]) == (10.5, 2)
    assert full_a847["std"] == pytest.approx(0.5 ** 0.5)
    assert list(stats["variant"].drop_duplicates()) == ["full", "no_prune", "no_dual", "zero_shot"]


def test_dvc_metrics_nest_profile_variant_benchmark(tmp_path):
    (tmp_path / "metrics" / "offline").mkdir(parents=True)
    (tmp_path / "metrics" / "offline" / "removed_variant.json").write_text("{}")
    summary = write_aggregate(scenario(), tmp_path / "summary.csv", tmp_path / "metrics")
    files = sorted(p.relative_to(tmp_path / "metrics").as_posix() for p in (tmp_path / "metrics").rglob("*.json"))
    assert files == ["offline/full.json", "offline/no_dual.json", "offline/no_prune.json", "offline/zero_shot.json"]
    metrics = {"offline": {Path(f).stem: json.loads((tmp_path / "metrics" / f).read_text()) for f in files}}
    assert metrics == miou_metrics(summary)
    assert metrics["offline"]["full"] == {"A-847": 10.5, "PC-459": 12.5, "A-150": 20.5, "PC-59": 41.0,
                                          "PAS-20": 71.0, "PAS-20b": 55.5}
    assert "PAS-20b" not in metrics["offline"]["no_dual"]
    reread = pd.read_csv(tmp_path / "summary.csv")
    assert len(reread) == len(summary) and list(reread.columns) == list(summary.columns)


def test_two_architectures_in_one_profile_are_refused():
    records = [eval_record("full", "a150", 10.0), eval_record("no_dual", "a150", 9.0, arch="ViT-B-16")]
    with pytest.raises(ValueError, match="several architectures"):
        miou_metrics(summary_table(records))


# ---- claims ----------------------------------------------------------------------------------------------
def miou_records(variant, values, profile="offline", arch="dcpclip-tiny"):
    return [eval_record(variant, b, v, profile=profile, arch=arch)
            for b, v in zip(BENCHMARK_KEYS, values, strict=True) if v is not None]


FULL = [10.0, 20.0, 30.0, 60.0, 95.0, 80.0]


@pytest.mark.parametrize(
    "ablation_values, verdict",
    [
        ([9.0, 19.0, 29.0, 59.0, 94.0, 79.0], claims.HOLDS),
        ([9.0, 21.0, 29.0, 59.0, 94.0, 79.0], claims.DOES_NOT_HOLD),
        ([9.0, 19.0, 29.0, 59.0, 94.0, None], claims.NOT_MEASURED),  # PAS-20b missing
        ([9.0, 21.0, 29.0, 59.0, 94.0, None], claims.DOES_NOT_HOLD),  # a measured counterexample suffices
    ],
)
def test_ablation_below_full(ablation_values, verdict):
    summary = summary_table(miou_records("full", FULL) + miou_records("no_dual", ablation_values))
    result = claims.ablation_below_full(summary, "offline", "no_dual")
    assert result.verdict == verdict
    assert result.numbers["A-847"] == pytest.approx(1.0)  # full - ablation, in mIoU points
    if ablation_values[1] > FULL[1]:
        assert result.numbers["PC-459"] == pytest.approx(-1.0) and "not ahead on PC-459" in result.evidence


def test_ablation_never_run_is_not_measured():
    result = claims.ablation_below_full(summary_table(miou_records("full", FULL)), "offline", "static_text")
    assert (result.verdict, result.numbers) == (claims.NOT_MEASURED, {})
    assert "missing full or static_text on A-847" in result.evidence


@pytest.mark.parametrize(
    "zero_shot, verdict",
    [([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], claims.HOLDS), ([1.0, 2.0, 3.0, 4.0, 96.0, 6.0], claims.DOES_NOT_HOLD),
     (None, claims.NOT_MEASURED)],
)
def test_full_beats_zero_shot(zero_shot, verdict):
    records = miou_records("full", FULL) + (miou_records("zero_shot", zero_shot) if zero_shot else [])
    assert claims.full_beats_zero_shot(summary_table(records), "offline").verdict == verdict


def cost_records(full, no_prune, profile="offline", arch="dcpclip-tiny"):
    """GMACs at (C=847, C=20) per variant; None leaves the record out."""
    records = []
    for variant, pair in (("full", full), ("no_prune", no_prune)):
        records += [flops_record(variant, b, g, profile, arch)
                    for b, g in zip(("a847", "pas20"), pair, strict=True) if g is not None]
    return records


@pytest.mark.parametrize(
    "full, no_prune, verdict",
    [
        ((1.10, 1.0), (3.0, 1.0), claims.HOLDS),  # exactly at the 1.10 limit still counts as flat
        ((1.20, 1.0), (3.0, 1.0), claims.DOES_NOT_HOLD),  # full grows
        ((1.00, 1.0), (1.05, 1.0), claims.DOES_NOT_HOLD),  # no_prune does not grow: pruning saves nothing
        ((1.00, 1.0), (3.0, None), claims.NOT_MEASURED),
    ],
)
def test_cost_flat_in_vocabulary(full, no_prune, verdict):
    summary = summary_table(cost_records(full, no_prune))
    result = claims.cost_flat_in_vocabulary(summary, "offline", "dcpclip-tiny")
    assert result.verdict == verdict
    if verdict != claims.NOT_MEASURED:
        assert result.numbers["full ratio"] == pytest.approx(full[0] / full[1])
        assert result.numbers["no_prune ratio"] == pytest.approx(no_prune[0] / no_prune[1])
    else:
        assert "no_prune at C = 20" in result.evidence


def test_cost_claim_reads_only_the_named_architecture():
    summary = summary_table(cost_records((1.0, 1.0), (3.0, 1.0), "paper-arch", "ViT-B-16"))
    assert claims.cost_flat_in_vocabulary(summary, "paper-arch", "ViT-B-16").verdict == claims.HOLDS
    other = claims.cost_flat_in_vocabulary(summary, "paper-arch", "ViT-L-14-336")
    assert other.verdict == claims.NOT_MEASURED


@pytest.mark.parametrize(
    "profile, arch, delta, verdict",
    [
        ("paper", "ViT-B-16", +0.5, claims.HOLDS),
        ("paper", "ViT-B-16", -0.5, claims.DOES_NOT_HOLD),
        ("paper", "ViT-L-14-336", +0.5, claims.HOLDS),  # compared with CAT-Seg ViT-L/14's numbers
        ("paper", "ViT-B-32", +0.5, claims.NOT_MEASURED),  # no published CAT-Seg with this backbone
        ("offline", "dcpclip-tiny", +50.0, claims.NOT_MEASURED),
    ],
)
def test_full_beats_published_catseg(profile, arch, delta, verdict):
    from dcpclip.report.reference import published_for

    published = published_for("CAT-Seg", arch) or published_for("CAT-Seg", "ViT-B-16")
    values = [min(100.0, published.miou[b] + delta) for b in BENCHMARK_KEYS]
    summary = summary_table(miou_records("full", values, profile, arch))
    result = claims.full_beats_published(summary, profile)
    assert result.verdict == verdict
    if verdict != claims.NOT_MEASURED:
        assert result.numbers["A-150"] == pytest.approx(delta)


# ---- the report -------------------------------------------------------------------------------------------
def test_report_matches_the_golden_file(tmp_path):
    markdown = render_report(scenario(), curves_frame(tmp_path), ReportSettings()).markdown
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(markdown)
    expected = GOLDEN.read_text()
    if markdown != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), markdown.splitlines(True),
                                            "tests/golden/report.md", "rendered", n=1))
        pytest.fail(f"report differs from the golden file (UPDATE_GOLDEN=1 regenerates it):\n{diff}")


def test_missing_records_show_as_explicit_gaps(tmp_path):
    markdown = render_report(scenario(), curves_frame(tmp_path), ReportSettings()).markdown
    miou = table_rows(markdown, "## mIoU (%) on the six benchmarks")
    assert miou["`static_text`"] == ["—"] * 8  # seeds, six benchmarks, mean
    assert miou["`no_dual`"][6:] == ["—", "—"]  # PAS-20b not run, so no mean either
    assert miou["`full`"][1] == "10.50 ± 0.71" and miou["`full`"][0] == "2"
    recall = table_rows(markdown, "## Pruner recall (%)")
    assert recall["`zero_shot`"] == ["n/a"] * 6 and recall["`static_text`"] == ["—"] * 6
    cost = table_rows(markdown, "### GMACs per image: `offline`")
    assert cost["`static_text`"] == ["—"] * 6
    assert "— = not run (no record)" in markdown and "not run (no record)." not in markdown  # one legend


def test_a_split_without_a_labelled_pixel_shows_as_undefined_not_as_a_number(tmp_path):
    undefined = SegmentationMetrics(mIoU=None, fwIoU=0.0, mAcc=None, pAcc=None)  # detectron2's NaN
    records = [dataclasses.replace(r, metrics=undefined, per_class_iou=dict.fromkeys(r.per_class_iou))
               if isinstance(r, EvalRecord) and r.variant == "no_prune" and r.benchmark == "pc459" else r
               for r in scenario()]
    summary = write_aggregate(records, tmp_path / "summary.csv", tmp_path / "metrics")
    assert json.loads((tmp_path / "metrics" / "offline" / "no_prune.json").read_text())["PC-459"] is None
    markdown = render_report(records, curves_frame(tmp_path), ReportSettings()).markdown
    miou = table_rows(markdown, "## mIoU (%) on the six benchmarks")
    assert miou["`no_prune`"][2] == "n/a" and miou["`no_prune`"][7] == "n/a"  # PC-459 and the mean
    assert miou["`no_prune`"][1] == "9.00"
    delta = table_rows(markdown, "### Difference from `full` (mIoU points)")
    assert delta["`no_prune`"][1] == "n/a" and delta["`no_prune`"][0] == "-1.50"
    assert not re.search(r"\bnan\b", markdown, re.IGNORECASE) and summary["value"].isna().sum() == 3


def test_report_without_any_record_is_all_gaps():
    markdown = render_report([], pd.DataFrame(), ReportSettings()).markdown
    assert table_rows(markdown, "## mIoU (%)")["`full`"] == ["—"] * 8
    assert "*mIoU difference from full per benchmark: not drawn" in markdown
    assert "No FLOP records for this profile." in markdown
    assert markdown.count(f"**{claims.NOT_MEASURED}**") == 7  # 6 claims + the legend


def test_rendering_is_deterministic_to_the_byte(tmp_path):
    records = scenario()
    curves = curves_frame(tmp_path)
    first = render_report(records, curves, ReportSettings())
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    second = render_report(shuffled, curves.sample(frac=1.0, random_state=0), ReportSettings())
    assert first.markdown == second.markdown
    assert sorted(first.figures) == ["accuracy_vs_cost.png", "delta_by_benchmark.png", "gmacs_vs_vocabulary.png",
                                     "recall_at_k.png", "training_curves.png"]
    for name, png in first.figures.items():
        assert png.startswith(PNG_MAGIC) and png == second.figures[name], name
    for out in ("a", "b"):
        write_report(first if out == "a" else second, tmp_path / out)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(p) for p in files_a] == ["README.md", *(f"figures/{n}" for n in sorted(first.figures))]
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_figures_no_longer_drawn_are_removed(tmp_path):
    write_report(render_report(scenario(), curves_frame(tmp_path), ReportSettings()), tmp_path / "out")
    write_report(render_report(scenario(), pd.DataFrame(), ReportSettings()), tmp_path / "out")
    assert not (tmp_path / "out" / "figures" / "training_curves.png").exists()
    assert (tmp_path / "out" / "figures" / "delta_by_benchmark.png").exists()


def test_paper_profile_report_has_no_offline_banner_or_paper_arch_table():
    records = miou_records("full", FULL, "paper", "ViT-B-16") + scenario()
    markdown = render_report(records, pd.DataFrame(), ReportSettings(profile="paper")).markdown
    assert "NOT comparable" not in markdown and "paper architecture" not in markdown
    assert "`full` beats published CAT-Seg with the same backbone (ViT-B/16)" in markdown
    assert table_rows(markdown, "## mIoU (%)")["`full`"][1] == "10.00"


def test_a_paper_profile_smoke_is_reported_as_not_comparable_naming_why():
    smoke = [dataclasses.replace(r, num_images=1, data_source="synthetic", clip_weights=None)
             for r in miou_records("full", FULL, "paper", "ViT-B-16")]
    report = render_report(smoke, pd.DataFrame(), ReportSettings(profile="paper")).markdown
    banner = report.split("\n\n")[1]
    assert banner.startswith("> **Paper profile, but these numbers are NOT comparable with the published ones:** ")
    assert "6 of 6 evaluations ran on synthetic data; 6 of 6 evaluations used a random-init CLIP" in banner
    assert "part of a split: A-150 1 of 2000 images, A-847 1 of 2000 images" in banner
    assert "`full` beats published CAT-Seg with the same backbone: **not measured in this profile**" in report
    # one benchmark on part of its split is enough
    partial = miou_records("full", FULL, "paper", "ViT-B-16")
    partial[0] = dataclasses.replace(partial[0], num_images=100)
    report = render_report(partial, pd.DataFrame(), ReportSettings(profile="paper")).markdown
    assert f"part of a split: {SPECS[partial[0].benchmark].title} 100 of" in report.split("\n\n")[1]


def test_run_cost_is_seeds_times_steps_and_split_images_times_the_counted_gmacs():
    records = [flops_record(v, b, g, "paper-arch", "ViT-B-16", (384, 384))
               for v, g in (("full", 300.0), ("zero_shot", 250.0)) for b in BENCHMARK_KEYS]
    records += [train_step_record("full", 1200.0, iterations=50000, seeds=2),
                train_step_record("zero_shot", 0.0, seeds=2)]
    markdown = render_report(records, pd.DataFrame(), ReportSettings()).markdown
    rows = table_rows(markdown, "### What a paper-profile run of `ViT-B-16` costs")
    images = sum(SPECS[b].expected_images[0] for b in BENCHMARK_KEYS)
    train, evaluate = 2 * 50000 * 1200.0 * 2e-6, 2 * images * 300.0 * 2e-6  # seeds x ... x 2 FLOPs per MAC
    assert rows["`full`"] == ["2 x 50000 steps x 1200.0 GMACs", f"{train:.1f}", f"{evaluate:.1f}",
                              f"{train + evaluate:.1f}", f"{(train + evaluate) * 1e3 / 3600:.1f} / R"]
    zero_shot = 2 * images * 250.0 * 2e-6
    assert rows["`zero_shot`"][:3] == ["training-free", "0.0", f"{zero_shot:.1f}"]
    total = train + evaluate + zero_shot
    assert rows["**total**"][-2:] == [f"**{total:.1f}**", f"**{total * 1e3 / 3600:.1f} / R**"]
    assert "an effective rate of R TFLOP/s" in markdown
    # a benchmark never counted: its evaluation cost and the total are gaps, not a smaller number
    partial = render_report(records[1:], pd.DataFrame(), ReportSettings()).markdown
    rows = table_rows(partial, "### What a paper-profile run of `ViT-B-16` costs")
    assert rows["`full`"][2:4] == ["—", "—"] and "**total**" not in rows


def test_the_paper_profile_prices_its_own_records_and_no_step_record_means_no_estimate():
    own = [dataclasses.replace(r, profile="paper") for r in scenario() if r.profile == "paper-arch"]
    markdown = render_report(own, pd.DataFrame(), ReportSettings(profile="paper")).markdown
    rows = table_rows(markdown, "### What a paper-profile run of `ViT-B-16` costs")
    assert rows["`full`"][:2] == ["1 x 80000 steps x 1020.0 GMACs", "163.2"]
    without = [r for r in own if not isinstance(r, TrainStepRecord)]
    assert "costs (estimate" not in render_report(without, pd.DataFrame(), ReportSettings(profile="paper")).markdown


# ---- training curves -------------------------------------------------------------------------------------
def test_training_curves_are_read_from_dvclive(tmp_path):
    curves = curves_frame(tmp_path)
    assert sorted(set(curves["metric"])) == ["lr", "train/loss"]
    full0 = curves[(curves["variant"] == "full") & (curves["seed"] == 0) & (curves["metric"] == "train/loss")]
    assert list(full0["step"]) == [0, 10, 20, 30, 40] and full0["value"].iloc[0] == 2.0
    assert load_training_curves(tmp_path / "nowhere", "offline").empty


def test_curve_without_step_column_names_the_file(tmp_path):
    bad = tmp_path / "offline" / "dcpclip-tiny" / "full" / "seed0" / "dvclive" / "plots" / "metrics" / "loss.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("timestamp\tloss\n1\t0.5\n")
    with pytest.raises(ValueError, match=f"{bad}: expected DVCLive columns 'step'"):
        load_training_curves(tmp_path, "offline")


# ---- entry points ----------------------------------------------------------------------------------------
def test_stages_run_from_the_records_on_disk(tmp_path, capsys):
    results = tmp_path / "results"
    for i, record in enumerate(scenario()):
        write_record(record, results / record.kind / f"{i:03d}.json")
    write_curves(tmp_path / "runs")
    assert aggregate_stage.main(["--results", str(results), "--summary", str(results / "summary.csv"),
                                 "--metrics", str(results / "metrics"), "--runs", str(tmp_path / "runs"),
                                 "--curves", str(results / "curves")]) == 0
    # every path given: the stage writes nothing into the repository's own results/curves
    assert f"0 loss curves in {results / 'curves'}/offline/" in capsys.readouterr().out
    weights = tmp_path / "models" / "offline" / "dcpclip-tiny" / "clip.json"  # the pretrain stage's record
    weights.parent.mkdir(parents=True)
    weights.write_text(json.dumps({"kind": "pretrained-clip", "arch": "dcpclip-tiny", "pretrained_here": True,
                                   "steps": 600, "sha256": "ab" * 32}))
    args = ["--results", str(results), "--runs", str(tmp_path / "runs"), "--models", str(tmp_path / "models"),
            "--out", str(tmp_path / "reports")]
    assert report_stage.main(args) == 0
    first = (tmp_path / "reports" / "README.md").read_bytes()
    assert ("CLIP weights: `dcpclip-tiny` pre-trained here from random init on the training set (600 steps; "
            f"clip.pt sha256 `{'ab' * 8}`).") in first.decode()
    assert report_stage.main(args) == 0
    assert (tmp_path / "reports" / "README.md").read_bytes() == first
    assert len(list((tmp_path / "reports" / "figures").glob("*.png"))) == 5
    assert "5 figures" in capsys.readouterr().out


def test_report_stage_names_a_malformed_record(tmp_path, capsys):
    bad = tmp_path / "results" / "eval" / "offline" / "full" / "seed0" / "a150.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"kind": "eval", "schema_version": 2}))
    assert report_stage.main(["--results", str(tmp_path / "results"), "--models", str(tmp_path / "models"),
                              "--out", str(tmp_path / "reports")]) == 2
    error, hint = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: {bad}: ") and hint.startswith("rerun with: python -m experiments.report")
    assert not (tmp_path / "reports").exists()


def test_clip_weights_line_names_downloaded_and_pretrained_here_weights():
    from dcpclip.report.render import clip_weights_line

    downloaded = {"kind": "pretrained-clip", "arch": "ViT-B-16", "pretrained": "openai", "pretrained_here": False}
    assert clip_weights_line([downloaded]) == "CLIP weights: `ViT-B-16` with open_clip weights `openai`."
    assert clip_weights_line([]) == "CLIP weights: — (no clip.json)."
