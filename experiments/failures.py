"""How every entry point fails, the one way (`entry_point`, `failed`), with `-v` for the traceback of any
failure (and debug log lines; `-q` keeps only warnings, `experiments.logs`):

- an expected failure (`dcpclip.errors.ExpectedError`: bad input, a missing or corrupt file, no network, a
  bad config; or an OS error naming its file, e.g. a read-only results folder) prints one line naming the
  file, key or URL, at most one hint line, and exits 2;
- anything else is a bug: its traceback, the message and the command that reruns it, exit 1.

A module of its own, without the config machinery, so the report and aggregate stages use it without
their code identity holding the config.
"""

from __future__ import annotations

import functools
import shlex
import sys
import traceback
from collections.abc import Callable

from dcpclip.errors import ExpectedError
from experiments.logs import configure_logging

EXPECTED, BUG = 2, 1  # exit statuses
VERBOSE_FLAGS = ("-v", "--verbose")
QUIET_FLAGS = ("-q", "--quiet")
_verbose = False  # set by `entry_point` from the command line: every failure shows its traceback


def is_expected(err: BaseException) -> bool:
    """A failure the user can fix from its message alone."""
    return isinstance(err, ExpectedError) or (isinstance(err, OSError) and err.filename is not None)


def one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or type(err).__name__}"
    return " ".join(str(err).split()) or type(err).__name__


def failed(err: BaseException, rerun: str) -> int:
    """End an entry point's failure the one way they all do (see the module docstring). Returns the exit
    status: 2 for an expected failure, 1 for a bug."""
    expected = is_expected(err)
    if _verbose or not expected:
        traceback.print_exception(err)
    if expected:
        hint = getattr(err, "hint", None) or f"rerun with: {rerun}"
        print(f"error: {one_line(err)}\n{hint}", file=sys.stderr)
        return EXPECTED
    print(f"error: unexpected {type(err).__name__}: {err}\nrerun with: {rerun} -v", file=sys.stderr)
    return BUG


def entry_point(module: str) -> Callable[[Callable[[list[str]], int]], Callable[[list[str] | None], int]]:
    """Decorate `main(argv) -> int` of `python -m <module>`: strips `-v`/`--verbose` (every failure then
    shows its traceback, and debug lines show) and `-q`/`--quiet` (progress lines off), configures logging,
    and ends any failure that escapes `main` through `failed`."""

    def decorate(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            global _verbose
            argv = list(sys.argv[1:] if argv is None else argv)
            _verbose = any(a in VERBOSE_FLAGS for a in argv)
            configure_logging(1 if _verbose else -1 if any(a in QUIET_FLAGS for a in argv) else 0)
            argv = [a for a in argv if a not in VERBOSE_FLAGS + QUIET_FLAGS]
            try:
                return main(argv)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
            except Exception as err:
                return failed(err, shlex.join(["python", "-m", module, *argv]))

        return run

    return decorate
