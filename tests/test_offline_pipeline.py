"""What one `dvc repro` of the offline profile makes, and what it redoes. The repository is copied as CI
sees it (without the committed outputs) into a fresh git repo and reproduced once per test session (the
`offline_workspace` fixture of conftest.py: the suite's one full pipeline run, shared with
tests/test_dvc_experiments.py); a test that changes code or parameters works on a `private_copy`, so each
test sees the workspace exactly as that `dvc repro` left it.

- It writes every record, the report and the pre-trained CLIP; a second `dvc repro` does nothing, fast.
- A change of behaviour in a model file redoes every job of the stages that import it, and only those; a
  comment in a report module reruns only the report, which comes out the same.
- The offline profile learns: the `full` variant as that `dvc repro` trains it with the offline defaults
  (synthetic data through the real fetch and prepare stages, the tiny CLIP pre-trained on the synthetic
  training set, `experiments/conf/train/offline.yaml`) segments the synthetic benchmarks clearly better
  than chance, judged by the evaluator the tables use, against a constant and a uniformly random predictor
  scored here on the same images; its pruner keeps the ground-truth classes far more often than a random
  choice of K would; and its training losses fell.

Measured on this machine (seed 0, offline defaults, 8 images per benchmark): full mIoU PC-59 10.80 /
PAS-20 21.22; uniformly random predictor 1.25 / 2.72; best constant predictor 0.76 / 0.77; pruner recall
0.62 / 0.83 against 8/59 = 0.14 / 8/20 = 0.40 for a random choice; segmentation loss (over the kept
classes) 1.72 -> 1.03 and presence BCE 0.157 -> 0.131 (means of the first and last three logged windows;
the BCE starts low because the calibration starts at the prior presence rate).
Without the pre-training the same run stayed at chance (the random-init CLIP recognises nothing, so the
pruner has nothing to learn from).
"""

from __future__ import annotations

import json

import pytest
import torch
from offline_workspace import jobs_run, private_copy, records_of, stages_run

from dcpclip import paths
from dcpclip.data.config import BENCHMARKS as ALL_BENCHMARKS
from dcpclip.data.datasets import evaluation_dataset
from dcpclip.data.specs import SPECS
from dcpclip.engine.evaluator import SemSegEvaluator
from dcpclip.model import variants
from dcpclip.records import load_record
from experiments.compose import compose_config


@pytest.mark.slow
def test_dvc_repro_runs_the_offline_profile_into_every_record_and_a_second_run_does_nothing(offline_workspace):
    root = offline_workspace.root
    cfg = compose_config([])
    for variant in cfg.grid.variants:
        run = compose_config([f"variant={variant}"])
        for benchmark in ALL_BENCHMARKS:
            record = json.loads((root / paths.eval_record_path(run, benchmark)).read_text())
            assert (record["variant"], record["benchmark"], record["profile"]) == (variant, benchmark, "offline")
            assert 0.0 <= record["metrics"]["mIoU"] <= 100.0
            assert (root / paths.flops_record_path(run, benchmark)).is_file()
        assert (root / paths.train_step_record_path(run, run.profile)).is_file()
    pretrained = json.loads((root / paths.pretrained_clip_record_path(cfg)).read_text())
    assert pretrained["steps"] == cfg.pretrain.train.iterations and (root / cfg.backbone.pretrained).is_file()
    report = (root / "reports" / "README.md").read_text()
    assert all(f"| `{variant}`" in report for variant in cfg.grid.variants)
    assert stages_run(offline_workspace.first_repro) == [
        "fetch", "prepare", "pretrain", "train", "evaluate", "flops", "aggregate", "report"]

    second, no_op_seconds = offline_workspace.dvc("repro")
    print(f"dvc repro: first run {offline_workspace.first_repro_seconds:.1f} s, no-op {no_op_seconds:.1f} s")
    assert "Data and pipelines are up to date" in second and stages_run(second) == []
    assert no_op_seconds <= 5.0, f"a no-op dvc repro took {no_op_seconds:.1f} s"


@pytest.mark.slow
def test_a_model_edit_redoes_every_job_of_the_stages_that_import_it_and_keeps_the_rest(offline_workspace, tmp_path):
    workspace = private_copy(offline_workspace, tmp_path)
    root, cfg = workspace.root, compose_config([])
    before, weights = records_of(root), root / cfg.backbone.pretrained
    weights_written = weights.stat().st_mtime_ns
    manifests = {p: p.stat().st_mtime_ns for p in (root / cfg.data.root).glob("*/manifest.json")}
    report = (root / "reports" / "README.md").read_text()
    # a real change of behaviour in a model file: sharper masks for the rescorer's pooling
    rescoring = root / "dcpclip" / "model" / "rescoring.py"
    source = rescoring.read_text()
    assert source.count("fine_logits.softmax(dim=1)") == 1
    rescoring.write_text(source.replace("fine_logits.softmax(dim=1)", "(2 * fine_logits).softmax(dim=1)"))
    output, edit_seconds = workspace.dvc("repro")
    print(f"dvc repro after a model edit: {edit_seconds:.1f} s")
    # every stage that imports dcpclip/model/rescoring.py, and what reads their outputs; data and the
    # pre-trained CLIP (which do not import it) are kept
    assert stages_run(output) == ["train", "evaluate", "flops", "aggregate", "report"], output
    # every job of the three stages: trained variant x seed, variant x seed x benchmark, variant
    trained = len([v for v in cfg.grid.variants if variants.variant_trains(v)]) * len(cfg.grid.seeds)
    evaluated = len(cfg.grid.variants) * len(cfg.grid.seeds) * len(cfg.data.benchmarks)
    assert jobs_run(output) == {"train": (trained, trained), "evaluate": (evaluated, evaluated),
                                "flops": (len(cfg.grid.variants), len(cfg.grid.variants))}, output
    assert weights.stat().st_mtime_ns == weights_written
    assert {p: p.stat().st_mtime_ns for p in manifests} == manifests
    after = records_of(root)
    assert after.keys() == before.keys()
    for name, record in after.items():  # every record was recomputed by the new code
        assert record["code_digest"] != before[name]["code_digest"], name
        assert record["config_fingerprint"] != before[name]["config_fingerprint"], name
    full = str(paths.eval_record_path(compose_config(["variant=full"]), "a150"))
    assert after[full]["train_fingerprint"] != before[full]["train_fingerprint"]
    assert after[full]["metrics"] != before[full]["metrics"]  # retrained with the new pooling
    assert (root / "reports" / "README.md").read_text() != report


@pytest.mark.slow
def test_a_comment_edit_in_a_report_module_reruns_only_the_report_which_comes_out_the_same(
        offline_workspace, tmp_path):
    workspace = private_copy(offline_workspace, tmp_path)
    root = workspace.root
    report, records = (root / "reports" / "README.md").read_text(), records_of(root)
    figures = root / "dcpclip" / "report" / "figures.py"
    text = figures.read_text()
    figures.write_text(text.replace('"""', '"""Reworded. ', 1) + "# a trailing comment\n")
    output, _ = workspace.dvc("repro")
    assert stages_run(output) == ["report"], output
    assert (root / "reports" / "README.md").read_text() == report
    assert records_of(root) == records


VARIANT = "full"
LEARNING_BENCHMARKS = ("pc59", "pas20")
MARGIN_OVER_CHANCE = 3.0  # measured margins: 8.6x (PC-59) and 7.8x (PAS-20) over the stronger baseline
RECALL_OVER_RANDOM = 1.8  # measured: 4.6x (PC-59) and 2.1x (PAS-20) the recall of a random choice of K


def chance_miou(cfg, benchmark: str) -> dict[str, float]:
    """mIoU of a uniformly random predictor (seeded) and of the best constant predictor on the images the
    evaluation stage scores, through the same evaluator."""
    spec = SPECS[benchmark]
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    labels = [dataset[i].label for i in range(len(dataset))]  # [H, W] at the original size
    generator = torch.Generator().manual_seed(0)
    random = SemSegEvaluator(spec.num_classes, spec.ignore_value)
    for label in labels:
        random.process(torch.randint(0, spec.num_classes, label.shape, generator=generator), label)
    constants = []
    for cls in range(spec.num_classes):
        constant = SemSegEvaluator(spec.num_classes, spec.ignore_value)
        for label in labels:
            constant.process(torch.full_like(label, cls), label)
        constants.append(constant.evaluate()["mIoU"])
    return {"random": random.evaluate()["mIoU"], "constant": max(constants)}


@pytest.mark.slow
def test_the_offline_profile_beats_chance_on_the_synthetic_benchmarks(offline_workspace, monkeypatch):
    monkeypatch.chdir(offline_workspace.root)  # the profile's paths are relative to the repository
    cfg = compose_config([f"variant={VARIANT}"])

    curves = paths.run_dir(cfg) / "dvclive/plots/metrics/train"
    for term, ratio in (("seg", 0.7), ("prune", 0.9)):  # measured last/first 0.60 and 0.84
        losses = [float(line.split("\t")[1]) for line in (curves / f"{term}.tsv").read_text().splitlines()[1:]]
        assert len(losses) == cfg.train.iterations // cfg.train.log_every
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        assert last < ratio * first, (term, first, last)

    for benchmark in LEARNING_BENCHMARKS:
        record = load_record(paths.eval_record_path(cfg, benchmark))
        chance = chance_miou(cfg, benchmark)
        assert record.metrics.mIoU > MARGIN_OVER_CHANCE * max(chance.values()), (benchmark, record.metrics, chance)
        random_recall = cfg.head.top_k / SPECS[benchmark].num_classes
        assert record.pruner_recall > RECALL_OVER_RANDOM * random_recall, (benchmark, record.pruner_recall)
