"""DVC's own interface to the pipeline's parameters, on the shared offline pipeline run (conftest.py's
`offline_workspace`, copied): each setting of params.yaml is a parameter of exactly the stages that read
it (`dvc status`), and `dvc exp run -S head.top_k=16` is an experiment of its own, a row of `dvc exp show`
with its parameters and metrics beside the baseline's, redoing only the jobs whose model reads K; switching
between the baseline and the experiment restores each one's runs from the DVC cache, with nothing to redo."""

import json

import pytest
import yaml
from offline_workspace import jobs_run, private_copy, records_of, stages_run

from dcpclip.model.config import has_pruner
from dcpclip.model.variants import variant_override, variant_trains
from experiments.compose import compose_config

# the stages that read each setting of params.yaml (dvc.yaml lists them as the stage's params)
READERS = {
    "grid.variants": {"train", "evaluate", "flops"},
    "grid.seeds": {"train", "evaluate", "flops"},
    "data.benchmarks": {"fetch", "prepare", "evaluate", "flops"},
    "head.top_k": {"train", "evaluate", "flops"},
    "train.iterations": {"train", "evaluate", "flops"},
}
NEW_VALUES = {"grid.variants": ["full"], "grid.seeds": [0, 1], "data.benchmarks": ["pc59"], "head.top_k": 16,
              "train.iterations": 10}


def with_setting(params: dict, key: str, value) -> dict:
    section, name = key.split(".")
    return {**params, section: {**params[section], name: value}}


@pytest.mark.slow
def test_each_setting_is_a_changed_param_of_exactly_the_stages_that_read_it(offline_workspace, tmp_path):
    assert set(READERS) == set(NEW_VALUES)
    workspace = private_copy(offline_workspace, tmp_path)
    params_file = workspace.root / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for key, value in NEW_VALUES.items():
        params_file.write_text(yaml.safe_dump(with_setting(params, key, value)))
        status = json.loads(workspace.dvc("status", "--json")[0])
        changed = {stage for stage, entries in status.items() for entry in entries
                   if key in entry.get("changed deps", {}).get("params.yaml", {})}
        assert changed == READERS[key], (key, status)


def experiment_rows(shown: list[dict]) -> list[dict]:
    """`dvc exp show --json` -> one {"rev", "name", "params" (params.yaml's), "metrics" ({variant: values})}
    per row: the workspace, the baseline commits and the experiments under them."""
    rows = []

    def add(entry: dict) -> None:
        data = entry.get("data") or {}
        rows.append({"rev": entry["rev"], "name": entry.get("name"),
                     "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                     "metrics": {path.rsplit("/", 1)[-1].removesuffix(".json"): value.get("data")
                                 for path, value in data.get("metrics", {}).items()}})
        for experiment in entry.get("experiments") or []:
            for revision in experiment.get("revs", []):
                add(revision)

    for entry in shown:
        add(entry)
    return rows


@pytest.mark.slow
def test_dvc_exp_run_of_a_setting_is_an_experiment_row_with_its_own_metrics(offline_workspace, tmp_path):
    workspace = private_copy(offline_workspace, tmp_path)
    baseline = workspace.commit("the offline profile reproduced")  # as the repository holds it: outputs committed
    baseline_records = records_of(workspace.root)
    output, seconds = workspace.dvc("exp", "run", "-S", "head.top_k=16", "--name", "top-k-16")
    print(f"dvc exp run -S head.top_k=16: {seconds:.1f} s")
    assert stages_run(output) == ["train", "evaluate", "flops", "aggregate", "report"], output
    cfg = compose_config([])
    pruning = [v for v in cfg.grid.variants if has_pruner(compose_config([variant_override(v)]).head)]
    trained = [v for v in cfg.grid.variants if variant_trains(v)]
    seeds, benchmarks = len(cfg.grid.seeds), len(cfg.data.benchmarks)
    # K is read by the pruner only: no_prune keeps its run, and zero_shot its records
    assert jobs_run(output) == {
        "train": (len(pruning) * seeds, len(trained) * seeds),
        "evaluate": (len(pruning) * seeds * benchmarks, len(cfg.grid.variants) * seeds * benchmarks),
        "flops": (len(pruning), len(cfg.grid.variants))}, output

    rows = experiment_rows(json.loads(workspace.dvc("exp", "show", "--json")[0]))
    base = next(row for row in rows if row["rev"] == baseline)
    experiment = next(row for row in rows if row["name"] == "top-k-16")
    assert base["params"]["head"]["top_k"] is None and experiment["params"]["head"]["top_k"] == 16
    assert set(base["metrics"]) == set(experiment["metrics"]) == set(cfg.grid.variants), rows
    for variant in cfg.grid.variants:  # mIoU per benchmark: new for the variants that prune, the same otherwise
        same = experiment["metrics"][variant] == base["metrics"][variant]
        assert same == (variant not in pruning), (variant, base["metrics"][variant], experiment["metrics"][variant])

    # back to the baseline and forth again: git restores the records and report, DVC's cache the trained
    # runs and CLIP weights, so each is reproduced as it stands (no run folder left holding the other K)
    experiment_records = records_of(workspace.root)
    assert experiment_records != baseline_records
    workspace.git("checkout", "--", ".")
    workspace.dvc("checkout")
    assert json.loads(workspace.dvc("status", "--json")[0]) == {}
    assert records_of(workspace.root) == baseline_records
    workspace.dvc("exp", "apply", "top-k-16")
    assert json.loads(workspace.dvc("status", "--json")[0]) == {}
    assert records_of(workspace.root) == experiment_records
