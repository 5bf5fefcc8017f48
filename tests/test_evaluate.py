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
    overrides = [f"data.raw_root={tmp_path}/raw", f"data.root={tmp_path}/prepared", f"results_dir={tmp_path}/results",
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
