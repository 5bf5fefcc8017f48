"""Write outputs under a temporary name and rename, so a crash never leaves a half-written file; and clear
the temporaries that a killed process (SIGKILL, a lost machine) left behind."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # name the output, not the temporary beside it (a read-only folder, a full disk)
        raise type(err)(err.errno, err.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; the final file gets the mode a plain open() would
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`path` opened for binary writing under a temporary name, renamed onto `path` once written and closed.
    For serialisers that name what they write after the file they are given: torch.save, given a path,
    stores the file's name in its archive, so saving to a random temporary made the same contents give
    different bytes on every run (and a DVC output a new hash); given this open file, it writes the same
    bytes for the same contents."""
    with atomic_path(path) as tmp, tmp.open("wb") as out:
        yield out


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def temporary_name(path: Path, role: str = "tmp") -> Path:
    """`.<name>.<role>-<host>-<pid>` beside `path`: whose it is, so `remove_abandoned` can tell it left."""
    return path.parent / f".{path.name}.{role}-{socket.gethostname()}-{os.getpid()}"


def remove_abandoned(path: Path) -> None:
    """Remove the `temporary_name`s of `path` whose process, on this host, is gone (killed mid-write)."""
    prefix = f".{path.name}."
    host = socket.gethostname()
    for leftover in path.parent.glob(f"{glob.escape(prefix)}*-{glob.escape(host)}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
