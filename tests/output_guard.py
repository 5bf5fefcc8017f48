"""The repository's pipeline outputs as the test session found them: no test may write a record, a report,
a run or prepared data into the repository itself (a record written by a test would be committed as the
pipeline's; tests write under tmp_path). conftest.py snapshots them when the session starts and fails the
session, naming each file, when they differ at its end."""

from __future__ import annotations

import os
from pathlib import Path

GUARDED = ("results", "reports", "runs", "models", "data", "dvc.lock", "params.yaml")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{path relative to root: (mtime in ns, size)} of every file of the guarded outputs under `root`."""
    files = {}
    for name in GUARDED:
        top = root / name
        paths = [top] if top.is_file() else [Path(d) / f for d, _, fs in os.walk(top) for f in fs]
        for path in paths:
            stat = path.stat()
            files[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return files


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """The files written, added or removed between two snapshots, sorted."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
