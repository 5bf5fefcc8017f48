"""Where the library's progress lines go: the `dcpclip` and `experiments` loggers print plain lines to
stdout (so they show from inside Ray trials, whose stdout Ray forwards to the stage), at INFO by
default, WARNING with `-q`, DEBUG with `-v` (`experiments.failures.entry_point` reads the flags)."""

from __future__ import annotations

import logging
import sys

LOGGERS = ("dcpclip", "experiments")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a line is logged (a test's capture, a redirect)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """-1 quiet, 0 progress lines, 1 debug. Idempotent: one stdout handler per logger."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(LEVELS[max(-1, min(1, verbosity))])
        logger.propagate = False  # a library's root handler (open_clip's warnings) must not print them twice
        if not any(isinstance(h, _CurrentStdout) for h in logger.handlers):
            handler = _CurrentStdout()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
