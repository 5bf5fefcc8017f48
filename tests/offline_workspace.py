"""The one offline pipeline run the end-to-end tests share: the working tree copied as CI sees it (without
the committed outputs) into a fresh git repo, then one `dvc repro` of the offline profile (the
`offline_workspace` fixture of conftest.py, made once per test session for all workers). A test that changes
code or parameters works on a `private_copy`; the helpers read what a `dvc repro` printed and wrote."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
GENERATED = ("results/", "reports/", "dvc.lock")  # what a committed run left: the copy must make it anew
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t"}


@dataclasses.dataclass(frozen=True)
class Workspace:
    root: Path
    first_repro: str  # what the first `dvc repro` printed
    first_repro_seconds: float

    @property
    def env(self) -> dict[str, str]:
        """The environment a user's shell gives dvc: this interpreter's tools first, the copy importable."""
        return {**os.environ, **GIT_IDENTITY, "PYTHONPATH": str(self.root),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def dvc(self, *args: str) -> tuple[str, float]:
        """Run `dvc <args>` in the workspace; (stdout, seconds). A failure shows the end of both streams."""
        start = time.perf_counter()
        done = subprocess.run(["dvc", *args], cwd=self.root, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout, time.perf_counter() - start

    def git(self, *args: str) -> str:
        """Run `git <args>` in the workspace; -> its stdout."""
        return subprocess.run(["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def commit(self, message: str) -> str:
        """Commit everything git tracks or may track (what a user commits after `dvc repro`); -> the commit."""
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD").strip()


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
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=destination, check=True, env=env)


def reproduced_workspace(destination: Path) -> Workspace:
    """A tracked copy of the repository at `destination` after one `dvc repro`."""
    tracked_copy(destination)
    workspace = Workspace(destination, "", 0.0)
    output, seconds = workspace.dvc("repro")
    return Workspace(destination, output, seconds)


def shared_workspace(base: Path) -> Workspace:
    """The reproduced workspace under `base`, made by the first process to ask (the others wait on a lock,
    then read what it printed); a failed `dvc repro` fails every test that asks, with its output."""
    root, outcome = base / "offline_workspace", base / "offline_workspace.json"
    with FileLock(base / "offline_workspace.lock"):
        if not outcome.is_file():
            try:
                workspace = reproduced_workspace(root)
                made = {"first_repro": workspace.first_repro, "first_repro_seconds": workspace.first_repro_seconds}
            except AssertionError as failure:
                made = {"error": str(failure)}
            outcome.write_text(json.dumps(made))
        made = json.loads(outcome.read_text())
    assert "error" not in made, made.get("error")
    return Workspace(root, made["first_repro"], made["first_repro_seconds"])


def private_copy(workspace: Workspace, destination: Path) -> Workspace:
    """A copy of the whole workspace (git history, dvc.lock, data, models, runs, results, timestamps) that a
    test may change freely."""
    shutil.copytree(workspace.root, destination, symlinks=True, dirs_exist_ok=True)
    return Workspace(destination, workspace.first_repro, workspace.first_repro_seconds)


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
