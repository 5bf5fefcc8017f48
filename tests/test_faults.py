"""Fault injection, as a hostile user would do it, through the entry points as subprocesses: every expected
fault ends with one `error:` line naming the file (or URL) and one hint line, exit status 2, no traceback;
derived caches heal themselves; a run's checkpoint is refused, never silently replaced; a process killed
mid-write leaves nothing that a rerun takes as done.

The workspace: the offline profile's synthetic data (COCO-Stuff, PAS-20, PAS-20b) fetched and prepared
into a temporary folder, a `full` run trained for 2 steps from a random-init tiny CLIP, and a zero-shot
evaluation that fills the text-bank cache."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcpclip import paths
from dcpclip.model.text_bank import bank_digest
from dcpclip.records import load_record
from experiments import evaluate, fetch, prepare, train
from experiments.compose import compose_config

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]
DATASETS = ["coco_stuff", "pas20", "pas20b"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("faults")
    overrides = [f"data.raw_root={root}/raw", f"data.root={root}/prepared",
                 f"results_dir={root}/results", f"cache_dir={root}/cache", f"runs_dir={root}/runs",
                 "pretrain=none", "data.benchmarks=[pas20,pas20b]", "eval.max_images=2", "train.iterations=2"]
    assert fetch.main([*overrides, "--datasets", *DATASETS]) == 0
    assert prepare.main([*overrides, "--datasets", *DATASETS]) == 0
    assert train.main([*overrides, "variant=full"]) == 0
    assert evaluate.main([*overrides, "variant=zero_shot"]) == 0
    return root, overrides


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def expected_failure(done: subprocess.CompletedProcess) -> tuple[str, str]:
    """The (error, hint) lines of an expected failure, after checking its shape."""
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.rstrip("\n").splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == len(lines) - 2, done.stderr  # one error line, then one hint
    return lines[-2].removeprefix("error: "), lines[-1]


def test_a_corrupt_text_bank_cache_is_named_removed_and_recomputed(workspace):
    root, overrides = workspace
    banks = sorted((root / "cache" / "text_banks").glob("*.pt"))
    assert banks
    for bank in banks:
        bank.write_bytes(bank.read_bytes()[:100])
    cfg = compose_config([*overrides, "variant=zero_shot"])
    for key in cfg.data.benchmarks:
        paths.eval_record_path(cfg, key).unlink()
    done = run("experiments.evaluate", *overrides, "variant=zero_shot")
    assert done.returncode == 0, done.stderr[-3000:]
    for bank in banks:
        assert f"text bank cache {bank}: unreadable" in done.stderr and "removed, recomputing" in done.stderr
        entry = torch.load(bank, weights_only=True)  # recomputed in the verified layout
        assert entry["sha256"] == bank_digest(entry["bank"])
    assert all(load_record(paths.eval_record_path(cfg, key)) for key in cfg.data.benchmarks)
    again = run("experiments.evaluate", *overrides, "variant=zero_shot")
    assert again.returncode == 0 and "text bank cache" not in again.stderr  # healed: read back without a word


def test_a_corrupt_checkpoint_is_refused_by_name_with_how_to_retrain(workspace):
    root, overrides = workspace
    cfg = compose_config([*overrides, "variant=full"])
    checkpoint = paths.run_dir(cfg) / "checkpoint.pt"
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(original[: len(original) // 2])
    try:
        for _ in range(2):  # refused every time: the only copy of a trained model is never replaced silently
            error, hint = expected_failure(run("experiments.evaluate", *overrides, "variant=full"))
            assert error.startswith(f"{checkpoint}: corrupt or truncated checkpoint (")
            assert hint.startswith(f"delete the run folder {checkpoint.parent} and run its training again")
            assert not any(paths.eval_record_path(cfg, key).exists() for key in cfg.data.benchmarks)
    finally:
        checkpoint.write_bytes(original)


@pytest.mark.parametrize("dataset, archive, damage", [
    ("pas20", "VOCtrainval_11-May-2012.tar", "truncate"),
    ("pas20b", "SegmentationClassAug.zip", "flip a byte"),
])
def test_a_damaged_download_is_reported_as_such_before_extraction(workspace, dataset, archive, damage):
    root, overrides = workspace
    raw = root / "raw" / archive
    data = raw.read_bytes()
    manifest = root / "prepared" / dataset / "manifest.json"
    prepared = manifest.read_bytes()
    raw.write_bytes(data[: len(data) // 2] if damage == "truncate" else
                    data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    error, hint = expected_failure(run("experiments.prepare", *overrides, "--datasets", dataset))
    assert error.startswith(f"{raw}: truncated or corrupt download (")
    assert hint == f"delete {raw} and rerun `python -m experiments.fetch` (it downloads the file again)"
    assert manifest.read_bytes() == prepared  # the preparation in place is untouched
    raw.unlink()  # the fix the hint gives
    assert run("experiments.fetch", *overrides, "--datasets", dataset).returncode == 0
    assert raw.read_bytes() == data
    done = run("experiments.prepare", *overrides, "--datasets", dataset)
    assert done.returncode == 0 and f"{dataset}: up to date" in done.stdout


def test_no_network_names_the_file_the_url_and_where_to_put_a_copy(tmp_path):
    raw = tmp_path / "raw"
    error, hint = expected_failure(run("experiments.fetch", "profile=paper", f"data.raw_root={raw}",
                                       "data.mirror=http://127.0.0.1:9", "--datasets", "pas20"))
    assert error.split(":", 1)[1].startswith(" cannot download http://127.0.0.1:9/")
    filename = error.split("http://127.0.0.1:9/", 1)[1].split(" ", 1)[0]
    assert hint == (f"download it by hand to {raw / filename}, or set data.mirror to a folder or URL that holds "
                    f"{filename}")
    assert not raw.exists() or not any(raw.iterdir())  # no empty partial download left behind


def test_a_read_only_results_folder_is_named(workspace, tmp_path):
    root, overrides = workspace
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    immutable = False
    if os.access(results, os.W_OK):  # root ignores permission bits: make the folder immutable instead
        immutable = subprocess.run(["chattr", "+i", str(results)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("cannot make a folder read-only for this user (root without chattr)")
    try:
        error, _ = expected_failure(run("experiments.evaluate", *overrides, f"results_dir={results}",
                                        "variant=zero_shot"))
        assert error.startswith(f"{results / 'eval'}: ") and error.endswith(
            ("Permission denied", "Operation not permitted", "Read-only file system"))
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(results)], check=True)
        results.chmod(0o755)


def kill_when(process: subprocess.Popen, appeared, timeout: float = 120.0) -> None:
    """SIGKILL `process` as soon as `appeared()` is true; it must still be running then."""
    deadline = time.monotonic() + timeout
    while not appeared():
        assert process.poll() is None, "the process finished before it could be killed mid-write"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def start(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_prepare_killed_mid_write_leaves_nothing_taken_as_done(workspace, tmp_path):
    _, overrides = workspace
    killed = [*overrides, f"data.root={tmp_path}/prepared", f"data.extract_root={tmp_path}/extracted"]
    prepared = tmp_path / "prepared"
    kill_when(start("experiments.prepare", *killed, "--datasets", "coco_stuff"),
              lambda: prepared.is_dir() and any(p.name.startswith(".coco_stuff.tmp-") for p in prepared.iterdir()))
    assert not (prepared / "coco_stuff").exists()  # the half-written preparation is only a temporary
    done = run("experiments.prepare", *killed, "--datasets", "coco_stuff")
    assert done.returncode == 0 and "coco_stuff: prepared, 1000 train, 8 val images" in done.stdout, done.stderr
    assert [p.name for p in prepared.iterdir()] == ["coco_stuff"]  # the killed run's temporary is gone


def test_evaluate_killed_mid_run_keeps_finished_records_and_redoes_the_rest(workspace, tmp_path):
    _, overrides = workspace
    killed = [*overrides, f"results_dir={tmp_path}/results", "variant=zero_shot"]
    cfg = compose_config(killed)
    first, second = (paths.eval_record_path(cfg, key) for key in cfg.data.benchmarks)
    kill_when(start("experiments.evaluate", *killed), first.is_file)
    assert load_record(first).benchmark == "pas20"  # complete: records are renamed into place
    records = sorted(p.name for p in first.parent.iterdir() if p.suffix == ".json")
    assert records in (["pas20.json"], ["pas20.json", "pas20b.json"])  # never a half-written one
    done = run("experiments.evaluate", *killed)
    assert done.returncode == 0 and "PAS-20: up to date" in done.stdout, done.stderr
    assert load_record(second).benchmark == "pas20b"
