"""What each fan-out stage asks Ray for per trial: the grid's GPUs for the stages that run models on them,
none for the FLOP count, which traces on the CPU (a GPU held idle would also serialise its trials)."""

import pytest

from experiments import evaluate_all, fanout, flops_all, train_all


@pytest.mark.parametrize(("stage", "gpus"), [(train_all, 1.0), (evaluate_all, 1.0), (flops_all, 0.0)])
def test_the_paper_profile_gives_a_gpu_to_every_stage_but_the_flop_count(stage, gpus, monkeypatch):
    asked = []
    monkeypatch.setattr(fanout, "run_stage", lambda name, jobs, pending, resources, storage: asked.append(resources))
    stage.main(["profile=paper", "grid.variants=[full]"])
    assert [(r.cpus, r.gpus) for r in asked] == [(4.0, gpus)]
