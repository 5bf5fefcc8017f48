"""The order a fan-out stage starts its pending jobs in: costliest first (`Job.cost`, the classes the model
carries per view), plan order among equals, so that no_prune's long jobs start at once instead of last, where
one would run alone at the end of the stage."""

import pytest

from experiments import evaluate_all, fanout, flops_all, train_all
from experiments.fanout import Job, Outcome, Resources


def started_order(monkeypatch, stage, argv: list[str]) -> list[str]:
    """The names of the jobs `stage.main(argv)` hands to Ray, in the order it hands them."""
    started = []

    def run_jobs(jobs, resources, storage, name):
        started.extend(job.name for job in jobs)
        return [Outcome(job, None, {}) for job in jobs]

    monkeypatch.setattr(fanout, "run_jobs", run_jobs)
    assert stage.main(argv) == 0
    return started


def test_pending_jobs_start_costliest_first_in_plan_order_among_equals(monkeypatch, capsys):
    jobs = [Job(name, "m:f", (), cost=cost) for name, cost in (("a", 8), ("b", 171), ("c", 8), ("d", 171), ("e", 900))]
    started = []
    monkeypatch.setattr(fanout, "run_jobs", lambda todo, *_: started.extend(j.name for j in todo) or
                        [Outcome(j, None, {}) for j in todo])
    assert fanout.run_stage("train", jobs, [True, True, True, True, False], Resources(), storage=None) == 0
    assert started == ["b", "d", "a", "c"]  # e is up to date
    assert "train: e: up to date" in capsys.readouterr().out


@pytest.fixture
def fresh(tmp_path) -> list[str]:
    """Overrides under which nothing was run yet: every job of every stage is pending."""
    return [f"results_dir={tmp_path}/results", f"runs_dir={tmp_path}/runs"]


def test_the_train_stage_starts_no_prune_first(monkeypatch, fresh):
    started = started_order(monkeypatch, train_all, fresh)
    assert started == ["no_prune seed0", "full seed0", "no_dual seed0", "static_text seed0"]


def test_the_evaluate_stage_starts_the_largest_vocabularies_of_the_models_without_a_pruner_first(monkeypatch, fresh):
    started = started_order(monkeypatch, evaluate_all, fresh)
    assert started[:4] == ["no_prune seed0 A-847", "zero_shot seed0 A-847", "no_prune seed0 PC-459",
                           "zero_shot seed0 PC-459"]
    assert started.index("zero_shot seed0 PAS-20") < started.index("full seed0 A-847")  # 20 classes carried > K = 8
    assert len(started) == 30


def test_the_flop_stage_starts_the_variants_without_a_pruner_first(monkeypatch, fresh):
    assert started_order(monkeypatch, flops_all, fresh) == ["no_prune", "zero_shot", "full", "no_dual", "static_text"]
