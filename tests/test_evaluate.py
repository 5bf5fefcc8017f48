"""The evaluate stage (`experiments.evaluate`) on a prepared synthetic benchmark: a split without a labelled
pixel gives detectron2's undefined metrics (null in the record) and a warning naming the benchmark, not a
failed stage; the record carries the code digest of the stage."""

import numpy as np
import pytest
from PIL import Image

from dcpclip import paths
from dcpclip.code_digest import code_digest
from dcpclip.engine.evaluate import EmptySplitWarning
from dcpclip.records import load_record
from experiments import evaluate, fetch, prepare
from experiments.compose import compose_config


@pytest.fixture
def overrides(tmp_path) -> list[str]:
    overrides = [f"data.raw_root={tmp_path}/raw",
                 f"data.root={tmp_path}/prepared", f"results_dir={tmp_path}/results",
                 f"cache_dir={tmp_path}/cache", "pretrain=none", "variant=zero_shot", "data.benchmarks=[pas20]",
                 "eval.max_images=2"]
    assert fetch.main([*overrides, "--datasets", "pas20"]) == 0
    assert prepare.main([*overrides, "--datasets", "pas20"]) == 0
    return overrides


def test_a_split_without_a_labelled_pixel_warns_and_records_null_metrics(overrides, tmp_path, capsys):
    labels = sorted((tmp_path / "prepared" / "pas20" / "labels" / "val").glob("*.png"))
    assert labels
    for path in labels:  # every pixel becomes the ignore value
        Image.fromarray(np.full_like(np.asarray(Image.open(path)), 255)).save(path)
    with pytest.warns(EmptySplitWarning, match=r"PAS-20 \(pas20\): no labelled pixel in the 2 evaluated images"):
        assert evaluate.main(overrides) == 0
    assert "PAS-20: mIoU undefined (no labelled pixel)" in capsys.readouterr().out
    cfg = compose_config(overrides)
    record = load_record(paths.eval_record_path(cfg, "pas20"))
    assert (record.metrics.mIoU, record.metrics.mAcc, record.metrics.pAcc) == (None, None, None)
    assert record.metrics.fwIoU == 0.0 and set(record.per_class_iou.values()) == {None}
    assert record.code_digest == code_digest(paths.EVAL_CODE)
    assert evaluate.main(overrides) == 0  # the record is current: nothing is redone
    assert "PAS-20: up to date" in capsys.readouterr().out


def test_an_untrained_run_is_an_error_whose_training_command_keeps_every_override(overrides, tmp_path, capsys):
    trained = [o for o in overrides if o != "variant=zero_shot"] + [f"runs_dir={tmp_path}/runs", "variant=no_dual"]
    assert evaluate.main(trained) == 2  # an expected failure: one line and its hint, no traceback
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "run is fresh, not trained with this config and code; train it: python -m experiments.train " in error
    assert all(o in error.split("train it: ", 1)[1].splitlines()[0] for o in trained)


def test_the_evaluation_pass_measures_the_recall_curve_and_keeps_the_first_predictions(overrides, tmp_path):
    """On a pruning model the curve's K = head.top_k point is the pruner's recall, the curve never falls,
    K >= C keeps every class; the samples are the split's first images with their own ground truth, and the
    same samples give the same bytes."""
    import torch

    from dcpclip.data.specs import SPECS
    from dcpclip.engine.evaluate import evaluate_benchmark
    from dcpclip.model.build import run_model
    from dcpclip.model.text_bank import TextBankCache
    from dcpclip.prediction_samples import load_samples, write_samples

    cfg = compose_config([o for o in overrides if o != "variant=zero_shot"] + ["variant=full", "eval.max_images=4",
                                                                           "eval.sample_images=3"])
    model = run_model(cfg.backbone, cfg.head, cfg.seed).eval()
    cache = TextBankCache(paths.text_cache_dir(cfg), cfg.backbone.arch)
    record, samples = evaluate_benchmark(model, cfg, SPECS["pas20"], cache, torch.device("cpu"), "cmd", False)
    curve = {int(k): v for k, v in record.pruner_recall_at_k.items()}
    assert sorted(curve) == [4, 8, 16, 32, 64, 128] and cfg.head.top_k == 8
    assert curve[8] == pytest.approx(record.pruner_recall)
    assert list(curve.values()) == sorted(curve.values()) and curve[32] == curve[128] == 1.0  # C = 20
    assert curve[4] < 1.0  # the curve measures something: 4 of 20 classes miss some ground truth

    assert [s.id for s in samples.samples] == [p.stem for p in sorted(
        (tmp_path / "prepared" / "pas20" / "images" / "val").glob("*"))][:3]
    assert samples.config_fingerprint == record.config_fingerprint and len(samples.class_names) == 20
    for sample in samples.samples:
        truth = np.asarray(Image.open(tmp_path / "prepared" / "pas20" / "labels" / "val" / f"{sample.id}.png"))
        assert np.array_equal(sample.label, truth)  # 96 x 128 synthetic images are stored unshrunk
        assert sample.image.shape == (*truth.shape, 3) and sample.prediction.shape == truth.shape
        assert sample.prediction.min() >= 0 and sample.prediction.max() < 20
    first, second = tmp_path / "a.samples.npz", tmp_path / "b.samples.npz"
    write_samples(first, samples)
    write_samples(second, load_samples(first))
    assert first.read_bytes() == second.read_bytes()
