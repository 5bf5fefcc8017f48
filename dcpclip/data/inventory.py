"""File inventories: {relative path: size} of every file a step wrote into a folder, stored beside its
output (the extraction marker, the prepared manifest) and checked before the output is reused, so a file
deleted or cut short afterwards makes the step run again instead of failing later, far from the cause."""

from __future__ import annotations

from pathlib import Path


def inventory(folder: Path, leave_out: tuple[str, ...] = ()) -> dict[str, int]:
    """{path relative to `folder`: size in bytes} of every file under it but `leave_out`, sorted."""
    return {name: path.stat().st_size for path in sorted(folder.rglob("*"))
            if path.is_file() and (name := path.relative_to(folder).as_posix()) not in leave_out}


def inventory_problem(folder: Path, listed: dict[str, int]) -> str | None:
    """The first listed file that is missing or of another size under `folder` (None when all are there)."""
    for name, size in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when written"
    return None
