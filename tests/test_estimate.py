"""The cost estimate: counted per-unit costs multiplied by the grid as its docstring states, hours from
FLOPs at the given rate, and a probe that measures a rate on this device."""

import json

import pytest

from experiments import estimate
from experiments.compose import compose_config

GRID = ["pretrain=none", "backbone.pretrained=null", "grid.variants=[full,no_prune,zero_shot]",
        "data.benchmarks=[a847,pas20]", "grid.seeds=[0,1]", "train.iterations=10"]


@pytest.fixture(scope="module")
def costs():
    cfg = compose_config(GRID)
    return cfg, *estimate.stage_costs(cfg)


def test_stage_costs_are_the_counted_units_times_the_grid(costs):
    cfg, (train, evaluate), details = costs
    units, images = details["units"], details["images"]
    assert images == {"a847": cfg.data.synthetic.val_images, "pas20": cfg.data.synthetic.val_images}
    steps = len(cfg.grid.seeds) * cfg.train.iterations
    assert train.gmacs == pytest.approx(steps * sum(u["train_step_gmacs"] for u in units.values()))
    assert evaluate.gmacs == pytest.approx(len(cfg.grid.seeds) * sum(
        images[key] * gmacs for u in units.values() for key, gmacs in u["eval_image_gmacs"].items()))
    assert units["zero_shot"]["train_step_gmacs"] == 0.0  # training-free
    assert "2 trained variants x 2 seeds x 10 steps x batch 4" in train.work


def test_pruning_keeps_the_cost_of_a_large_vocabulary_near_that_of_a_small_one(costs):
    units = costs[2]["units"]
    full, no_prune = units["full"]["eval_image_gmacs"], units["no_prune"]["eval_image_gmacs"]
    assert no_prune["a847"] > 10 * no_prune["pas20"]  # the whole vocabulary through the head
    assert full["a847"] < 1.5 * full["pas20"]  # K = top_k classes whatever C is
    assert units["full"]["train_step_gmacs"] < units["no_prune"]["train_step_gmacs"]


def test_hours_are_flops_at_the_rate():
    cost = estimate.StageCost("train", "", gmacs=9e6)  # 9e6 GMACs = 18 PFLOP
    assert cost.hours(tflops=5.0) == pytest.approx(18e15 / 5e12 / 3600)


def test_the_command_writes_the_estimate_at_a_given_rate(tmp_path, capsys):
    out = tmp_path / "estimate.json"
    assert estimate.main([*GRID, "grid.variants=[full]", "--tflops", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["tflops"] == 2 and record["rate_source"] == "given with --tflops"
    assert record["total_gpu_hours"] == pytest.approx(sum(s["gmacs"] for s in record["stages"]) * 2e9 / 2e12 / 3600)
    assert "| total |" in capsys.readouterr().out


def test_a_rate_that_is_not_positive_is_refused_before_any_count(capsys):
    with pytest.raises(SystemExit) as exit_status:
        estimate.main([*GRID, "--tflops", "0"])
    assert exit_status.value.code == 2 and "--tflops 0.0: must be positive" in capsys.readouterr().err


def test_the_probe_measures_a_rate_on_this_device():
    tflops, device = estimate.probe_tflops(compose_config(GRID), repeats=1)
    assert tflops > 0 and device.startswith("cpu")
