"""The orchestration contracts: dvc.yaml mirrors dcpclip/paths.py, the train stage redoes only what
changed, a failed trial fails the stage by name and its rerun redoes only it, and the fan-out names each job
as it finishes. What `dvc repro` of the offline profile makes and redoes: tests/test_offline_pipeline.py."""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dcpclip import paths
from experiments import compose, train_all
from experiments.compose import compose_config
from experiments.train import train_job

REPO = Path(__file__).resolve().parents[1]


def rendered_outs(profile: str) -> dict[str, list[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = {}
    for name, stage in stages.items():
        declared = [*stage.get("outs", []), *stage.get("metrics", [])]
        outs[name] = [(next(iter(o)) if isinstance(o, dict) else o).replace("${profile}", profile) for o in declared]
    return outs


@pytest.mark.parametrize("profile", ["offline", "paper"])
def test_dvc_yaml_mirrors_the_paths_of_the_config(profile):
    cfg = compose_config([f"profile={profile}"])
    outs = rendered_outs(profile)
    assert outs["fetch"] == [cfg.data.raw_root]
    assert outs["prepare"] == [cfg.data.root, cfg.data.extract_folder]
    assert outs["pretrain"] == [str(Path("models") / profile)]
    weights = cfg.backbone.pretrained if cfg.pretrain.enabled else cfg.pretrain.dir
    assert Path(weights).is_relative_to(outs["pretrain"][0])
    assert paths.pretrained_clip_record_path(cfg).is_relative_to(outs["pretrain"][0])
    assert outs["train"] == [str(Path(cfg.runs_dir) / profile)]
    assert outs["evaluate"] == [str(Path(cfg.results_dir) / "eval" / profile)]
    assert str(Path(cfg.results_dir) / "flops" / profile) in outs["flops"]
    for variant in cfg.grid.variants:
        run = compose_config([f"profile={profile}", f"variant={variant}"])
        assert paths.run_dir(run).is_relative_to(outs["train"][0])
        assert paths.eval_record_path(run, "a150").is_relative_to(outs["evaluate"][0])
        assert any(paths.flops_record_path(run, "a150").is_relative_to(o) for o in outs["flops"])
    paper_arch = compose_config(["profile=paper", "backbone.pretrained=null"])
    assert any(paths.paper_arch_flops_record_path(paper_arch, "a150").is_relative_to(o) for o in outs["flops"])


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory):
    """Synthetic data fetched and prepared once for this module, through the real stages."""
    from experiments import fetch, prepare

    root = tmp_path_factory.mktemp("pipeline")
    data = [f"data.raw_root={root}/raw",
            f"data.root={root}/prepared", "data.benchmarks=[pas20]"]
    assert fetch.main(data) == 0 and prepare.main(data) == 0
    return root, data


def quick(root: Path, data: list[str], variants_: list[str]) -> list[str]:
    return [*data, f"runs_dir={root}/runs", f"results_dir={root}/results", f"cache_dir={root}/cache",
            "train.iterations=2", "train.checkpoint_every=2", "pretrain=none", f"grid.variants=[{','.join(variants_)}]"]


def test_changing_one_variant_retrains_only_that_variant(prepared_data, monkeypatch):
    root, data = prepared_data
    overrides = quick(root / "skip", data, ["full", "no_dual", "static_text", "zero_shot"])
    jobs, pending = train_all.training_jobs(overrides)
    assert [job.name for job in jobs] == ["full seed0", "no_dual seed0", "static_text seed0"]  # zero_shot: no training
    assert pending == [True, True, True]
    for job in jobs:
        train_job(list(job.overrides))
    assert train_all.training_jobs(overrides)[1] == [False, False, False]
    # edit one variant's YAML delta: only its fingerprint, hence only its run, changes
    conf = root / "conf-edited"
    shutil.copytree(compose.CONFIG_DIR, conf)
    (conf / "variant" / "no_dual.yaml").write_text("# @package _global_\nhead:\n  dual: false\n  hidden_dim: 16\n")
    monkeypatch.setattr(compose, "CONFIG_DIR", conf)
    assert train_all.training_jobs(overrides)[1] == [False, True, False]


@pytest.mark.slow
def test_a_failed_trial_fails_the_stage_by_name_and_its_rerun_trains_only_it(prepared_data, capsys):
    root, data = prepared_data
    overrides = quick(root / "fail", data, ["full", "no_dual"])
    blocked = paths.run_dir(compose_config([*overrides, "variant=no_dual"]))
    blocked.mkdir(parents=True)
    with open(blocked / "lock", "w") as lock:  # another process "is training" no_dual
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert train_all.main(overrides) == 2  # an expected failure: reported at once, not retried
        fcntl.flock(lock, fcntl.LOCK_UN)
    captured = capsys.readouterr()
    assert "train: no_dual seed0: FAILED" in captured.out and "another process is training" in captured.out
    assert "train: full seed0: ok" in captured.out
    assert "rerun the failed job alone with: python -m experiments.train" in captured.err
    assert train_all.training_jobs(overrides)[1] == [False, True]
    assert train_all.main(overrides) == 0
    captured = capsys.readouterr()
    assert "train: full seed0: up to date" in captured.out and "train: no_dual seed0: ok" in captured.out
    assert train_all.training_jobs(overrides)[1] == [False, False]


@pytest.mark.slow
def test_the_train_fan_out_names_each_job_as_it_finishes_with_the_trainer_lines_of_each(prepared_data):
    root, data = prepared_data
    overrides = [o for o in quick(root / "progress", data, ["full", "no_dual"]) if not o.startswith("train.")]
    overrides += ["train.iterations=40", "train.checkpoint_every=40", "train.log_every=20", "grid.max_concurrent=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stage = subprocess.Popen([sys.executable, "-m", "experiments.train_all", *overrides], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines = [(time.perf_counter(), line.rstrip()) for line in stage.stdout]  # each line when it arrived
    assert stage.wait() == 0, "\n".join(line for _, line in lines[-40:])
    finished = [(t, line) for t, line in lines if re.search(r"^train: \S+ seed0: ok in [0-9.]+ s -> ", line)]
    assert len(finished) == 2, lines
    for _, line in finished:  # each names where its run is
        variant = line.split(":")[1].split()[0]
        assert line.endswith(f"-> {paths.run_dir(compose_config([*overrides, f'variant={variant}']))}"), line
    first_done, first = finished[0][0], finished[0][1].split(":")[1].split()[0]
    second = next(v for v in ("full", "no_dual") if v != first)
    # named while the other still trained (one trial at a time): before the other's last trainer line
    assert first_done < max(t for t, line in lines if f"/{second}/seed0: step " in line)
    for variant in ("full", "no_dual"):  # the trainer's lines, from inside each Ray trial
        steps = [line for _, line in lines if f"/{variant}/seed0: step " in line]
        assert len(steps) == 2 and "step 40/40, loss " in steps[-1] and " steps/s, ETA 0:00:00" in steps[-1], steps
