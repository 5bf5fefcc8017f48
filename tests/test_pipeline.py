"""The orchestration contracts: dvc.yaml mirrors dcpclip/paths.py, the train stage redoes only what
changed, a failed trial fails the stage by name and its rerun redoes only it, and `dvc repro` runs the
offline profile end to end, then does nothing on a second run, redoes the stages and jobs that import a
model file after a change of its behaviour, and only the report after a comment edit in the report code."""

import fcntl
import json
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
from dcpclip.data.config import BENCHMARKS
from dcpclip.model import variants
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
    assert outs["prepare"] == [cfg.data.root, cfg.data.extract_root]
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


def test_params_yaml_selects_the_offline_profile():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params == {"profile": "offline", "overrides": []}


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory):
    """Synthetic data fetched and prepared once for this module, through the real stages."""
    from experiments import fetch, prepare

    root = tmp_path_factory.mktemp("pipeline")
    data = [f"data.raw_root={root}/raw", f"data.root={root}/prepared", "data.benchmarks=[pas20]"]
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


GENERATED = ("results/", "reports/", "dvc.lock")  # what a committed run left: the copy must make it anew


def tracked_copy(destination: Path) -> None:
    """The working tree as CI sees it (tracked and untracked-but-not-ignored files) without the committed
    pipeline outputs, as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if name.startswith(GENERATED):
            continue
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=destination, check=True, env=env)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def jobs_run(output: str) -> dict[str, tuple[int, int]]:
    """{stage: (jobs run, jobs)} from the fan-out's lines; (0, n) for a stage whose jobs were all current."""
    run = {stage: (int(todo), int(total))
           for stage, todo, total in re.findall(r"^(\w+): (\d+) of (\d+) jobs to run", output, re.M)}
    run.update({stage: (0, int(total)) for stage, total in
                re.findall(r"^(\w+): nothing to do \((\d+) jobs up to date\)", output, re.M)})
    return run


def records_of(root: Path) -> dict[str, dict]:
    """Every eval, FLOP and train-step record under <root>/results, by path."""
    return {str(p.relative_to(root)): json.loads(p.read_text())
            for kind in ("eval", "flops", "train_step") for p in sorted((root / "results" / kind).rglob("*.json"))}


@pytest.mark.slow
def test_dvc_repro_runs_the_offline_profile_then_redoes_exactly_what_a_code_change_affects(tmp_path):
    tracked_copy(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path)}

    def repro() -> tuple[str, float]:
        start = time.perf_counter()
        done = subprocess.run(["dvc", "repro"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout, time.perf_counter() - start

    first, _ = repro()
    cfg = compose_config([])
    for variant in cfg.grid.variants:
        run = compose_config([f"variant={variant}"])
        for benchmark in BENCHMARKS:
            record = json.loads((tmp_path / paths.eval_record_path(run, benchmark)).read_text())
            assert (record["variant"], record["benchmark"], record["profile"]) == (variant, benchmark, "offline")
            assert 0.0 <= record["metrics"]["mIoU"] <= 100.0
            assert (tmp_path / paths.flops_record_path(run, benchmark)).is_file()
        assert (tmp_path / paths.train_step_record_path(run, run.profile)).is_file()
    pretrained = json.loads((tmp_path / paths.pretrained_clip_record_path(cfg)).read_text())
    assert pretrained["steps"] == cfg.pretrain.train.iterations and (tmp_path / cfg.backbone.pretrained).is_file()
    report = (tmp_path / "reports" / "README.md").read_text()
    assert all(f"| `{variant}`" in report for variant in cfg.grid.variants)

    second, no_op_seconds = repro()
    assert "Data and pipelines are up to date" in second and stages_run(second) == []
    assert no_op_seconds <= 5.0, f"a no-op dvc repro took {no_op_seconds:.1f} s"

    # a real change of behaviour in a model file: sharper masks for the rescorer's pooling
    before, weights = records_of(tmp_path), tmp_path / cfg.backbone.pretrained
    weights_written = weights.stat().st_mtime_ns
    manifests = {p: p.stat().st_mtime_ns for p in (tmp_path / cfg.data.root).glob("*/manifest.json")}
    rescoring = tmp_path / "dcpclip" / "model" / "rescoring.py"
    source = rescoring.read_text()
    assert source.count("fine_logits.softmax(dim=1)") == 1
    rescoring.write_text(source.replace("fine_logits.softmax(dim=1)", "(2 * fine_logits).softmax(dim=1)"))
    third, edit_seconds = repro()
    print(f"dvc repro: no-op {no_op_seconds:.1f} s; after a model edit {edit_seconds:.1f} s")
    # every stage that imports dcpclip/model/rescoring.py, and what reads their outputs; data and the
    # pre-trained CLIP (which do not import it) are kept
    assert stages_run(third) == ["train", "evaluate", "flops", "aggregate", "report"], third
    # every job of the three stages: trained variant x seed, variant x seed x benchmark, variant
    trained = len([v for v in cfg.grid.variants if variants.variant_trains(v)]) * len(cfg.grid.seeds)
    evaluated = len(cfg.grid.variants) * len(cfg.grid.seeds) * len(cfg.data.benchmarks)
    assert jobs_run(third) == {"train": (trained, trained), "evaluate": (evaluated, evaluated),
                               "flops": (len(cfg.grid.variants), len(cfg.grid.variants))}, third
    assert weights.stat().st_mtime_ns == weights_written
    assert {p: p.stat().st_mtime_ns for p in manifests} == manifests
    after = records_of(tmp_path)
    assert after.keys() == before.keys()
    for name, record in after.items():  # every record was recomputed by the new code
        assert record["code_digest"] != before[name]["code_digest"], name
        assert record["config_fingerprint"] != before[name]["config_fingerprint"], name
    full = str(paths.eval_record_path(compose_config(["variant=full"]), "a150"))
    assert after[full]["train_fingerprint"] != before[full]["train_fingerprint"]
    assert after[full]["metrics"] != before[full]["metrics"]  # retrained with the new pooling
    changed_report = (tmp_path / "reports" / "README.md").read_text()
    assert changed_report != report

    # a comment and a docstring in a module only the report stage imports: only that stage runs, and
    # the report comes out the same
    figures = tmp_path / "dcpclip" / "report" / "figures.py"
    text = figures.read_text()
    figures.write_text(text.replace('"""', '"""Reworded. ', 1) + "# a trailing comment\n")
    fourth, _ = repro()
    assert stages_run(fourth) == ["report"], fourth
    assert (tmp_path / "reports" / "README.md").read_text() == changed_report
    assert records_of(tmp_path) == after
