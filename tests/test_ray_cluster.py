"""The train stage on a real two-node Ray cluster, used as the README says: the user starts Ray (here a head
and a second node on this machine, `ray.cluster_utils.Cluster`, the second node on its own loopback IP so
Tune's `node_ip` tells the two apart), sets RAY_ADDRESS and runs `python -m experiments.train_all` in the
repository (here a copy of the working tree, so edits made meanwhile cannot change the code identity of a
run). The trials land on both nodes, the runs land in `runs/<profile>/<arch>/<variant>/seed<k>/`, a rerun
trains nothing, and a trial whose node dies mid-run is retried and resumes from its last checkpoint."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dcpclip import paths
from dcpclip.engine.checkpoint import checkpoint_identity, run_status
from experiments.compose import compose_config

REPO = Path(__file__).resolve().parents[1]
WORKER_IP = "127.0.0.2"  # a second loopback address: the second "machine"
VARIANTS = ("full", "no_dual")  # two trained jobs, one trial each
STAGE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The working tree's source files (tracked and untracked-but-not-ignored), as every node would mount it."""
    destination = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if name.startswith(("dcpclip/", "experiments/")) and (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    """Synthetic data (a small training set) fetched and prepared once, through the real stages."""
    from experiments import fetch, prepare

    root = tmp_path_factory.mktemp("cluster_data")
    data = [f"data.raw_root={root}/raw",
            f"data.root={root}/prepared", "data.benchmarks=[pas20]",
            "data.synthetic.train_images=16"]
    assert fetch.main(data) == 0 and prepare.main(data) == 0
    return data


@pytest.fixture
def cluster(monkeypatch):
    """A head node and a second node, 1 CPU each, so two 1-CPU trials can only run one per node. Ray's
    files (and its "latest cluster" address file, which a bare `ray.init()` elsewhere on this machine would
    connect to) go to a private temporary folder, short enough for Ray's socket paths."""
    from ray.cluster_utils import Cluster

    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # a killed node is declared dead after ~1 s of failed health checks (Ray's default is several seconds)
    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 250,
                     "health_check_timeout_ms": 250, "health_check_failure_threshold": 4}
    cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": system_config})
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address=WORKER_IP)
        cluster.wait_for_nodes(timeout=60)
        assert cluster.head_node.node_ip_address != WORKER_IP
        yield cluster, worker
    finally:
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def stage_overrides(root: Path, data: list[str], iterations: int, checkpoint_every: int) -> list[str]:
    return [*data, f"runs_dir={root}/runs", f"results_dir={root}/results", f"cache_dir={root}/cache", "pretrain=none",
            f"train.iterations={iterations}", f"train.checkpoint_every={checkpoint_every}",
            f"grid.variants=[{','.join(VARIANTS)}]", "grid.seeds=[0]", "grid.cpus_per_trial=1"]


def stage_command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "experiments.train_all", *overrides]


def stage_env(address: str, repo: Path) -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": str(repo)}


def run_stage(overrides: list[str], address: str, repo: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(stage_command(overrides), cwd=repo, env=stage_env(address, repo), capture_output=True,
                          text=True, timeout=STAGE_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def run_dirs(overrides: list[str]) -> dict[str, Path]:
    return {v: paths.run_dir(compose_config([*overrides, f"variant={v}"])) for v in VARIANTS}


def trial_results(root: Path) -> dict[str, dict]:
    """The last Tune result of each trial of the train stage, by job name (from the trials' result.json)."""
    results = {}
    for path in (root / "ray_results" / "offline" / "train").glob("*/result.json"):
        lines = path.read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            results[last["config"]["job"]] = last
    return results


def assert_runs_done(overrides: list[str], iterations: int) -> None:
    """Every run finished in the README's layout runs/<profile>/<arch>/<variant>/seed<k>/."""
    runs = Path(overrides[[o.split("=")[0] for o in overrides].index("runs_dir")].split("=", 1)[1])
    arch = compose_config(overrides).backbone.arch
    for variant, folder in run_dirs(overrides).items():
        assert folder == runs / "offline" / arch / variant / "seed0"
        assert (folder / "checkpoint.pt").is_file() and (folder / "done").is_file(), sorted(folder.iterdir())
        done = json.loads((folder / "done").read_text())
        assert done["step"] == iterations and run_status(folder, done["fingerprint"]) == "done"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def holder_of(lock: Path, pids: list[int]) -> int | None:
    """The process among `pids` that has `lock` open (the trial training that run), if any."""
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(lock.resolve()):
                    return pid
            except OSError:
                continue
    return None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_train_stage_runs_its_trials_on_both_nodes_of_a_cluster_and_a_rerun_trains_nothing(
        cluster, repo_copy, synthetic_data, tmp_path):
    cluster, _ = cluster
    overrides = stage_overrides(tmp_path, synthetic_data, iterations=2, checkpoint_every=2)
    first = run_stage(overrides, cluster.address, repo_copy)
    assert f"train: 2 of 2 jobs to run, 1 CPU / 0 GPU each, on {cluster.address}" in first.stdout, first.stdout
    assert "Connecting to existing Ray cluster" in first.stderr  # no local Ray was started
    assert all(f"train: {v} seed0: ok" in first.stdout for v in VARIANTS), first.stdout
    assert_runs_done(overrides, iterations=2)

    results = trial_results(tmp_path)
    placement = {job: result["node_ip"] for job, result in results.items()}
    print(f"trial placement: {placement} (head {cluster.head_node.node_ip_address}, second node {WORKER_IP})")
    assert set(placement) == {f"{v} seed0" for v in VARIANTS}
    assert set(placement.values()) == {cluster.head_node.node_ip_address, WORKER_IP}
    assert all(result["status"] == "trained" for result in results.values())

    checkpoints = {v: (d / "checkpoint.pt").stat().st_mtime_ns for v, d in run_dirs(overrides).items()}
    second = run_stage(overrides, cluster.address, repo_copy)
    assert "train: nothing to do (2 jobs up to date)" in second.stdout, second.stdout
    assert all(f"train: {v} seed0: up to date" in second.stdout for v in VARIANTS), second.stdout
    assert {v: (d / "checkpoint.pt").stat().st_mtime_ns for v, d in run_dirs(overrides).items()} == checkpoints


@pytest.mark.slow
def test_a_trial_whose_node_dies_is_retried_and_resumes_from_its_checkpoint(cluster, repo_copy, synthetic_data,
                                                                            tmp_path):
    cluster, worker = cluster
    iterations = 60
    overrides = stage_overrides(tmp_path, synthetic_data, iterations=iterations, checkpoint_every=5)
    folders = run_dirs(overrides)
    raylet = worker.all_processes["raylet"][0].process.pid
    log = tmp_path / "stage.log"
    with open(log, "w") as out:
        stage = subprocess.Popen(stage_command(overrides), cwd=repo_copy, env=stage_env(cluster.address, repo_copy),
                                 stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        # wait until the second node trains a run and has checkpointed it part of the way
        deadline, victim = time.monotonic() + 120, None
        while victim is None:
            assert stage.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no trial trained on the second node\n" + log.read_text()[-4000:]
            for variant, folder in folders.items():
                pid = holder_of(folder / "lock", children(raylet))
                if pid is not None and (folder / "checkpoint.pt").is_file() and not (folder / "done").exists():
                    victim, victim_pid = variant, pid
            time.sleep(0.2)
        killed_at = checkpoint_identity(folders[victim])[2]
        assert 0 < killed_at < iterations
        # the second machine dies: its raylet and every worker on it, SIGKILLed
        workers = children(raylet)
        cluster.remove_node(worker, allow_graceful=False)
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive(victim_pid):
            assert time.monotonic() < deadline, f"the killed trial's process {victim_pid} still runs"
            time.sleep(0.1)
        stage.wait(timeout=STAGE_TIMEOUT_S)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait(timeout=30)
    output = log.read_text()
    assert stage.returncode == 0, output[-6000:]
    assert all(f"train: {v} seed0: ok" in output for v in VARIANTS), output[-6000:]
    assert_runs_done(overrides, iterations)

    results = trial_results(tmp_path)
    survivor = next(v for v in VARIANTS if v != victim)
    print(f"killed the second node while it trained {victim} at checkpoint step {killed_at}; "
          f"final results: { {job: (r['status'], r['node_ip']) for job, r in results.items()} }")
    # the retry ran on the surviving head node and went on from the checkpoint, not from step 0
    assert results[f"{victim} seed0"]["status"] == "resumed"
    assert results[f"{victim} seed0"]["node_ip"] == cluster.head_node.node_ip_address
    assert results[f"{survivor} seed0"]["status"] == "trained"
