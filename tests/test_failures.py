"""The one way every entry point fails (experiments.failures): an expected failure is one line naming what
is wrong plus one hint, exit 2; a bug is its traceback, exit 1; -v shows the traceback of any failure."""

import errno

import pytest

from dcpclip.data.errors import DataError
from experiments.failures import entry_point


def command(error: BaseException):
    @entry_point("experiments.example")
    def main(argv: list[str]) -> int:
        assert "-v" not in argv  # stripped before main parses its arguments
        raise error

    return main


def test_an_expected_failure_is_one_line_and_its_hint(capsys):
    assert command(DataError("data/raw/a.zip: truncated", hint="delete it"))(["x=1"]) == 2
    assert capsys.readouterr().err == "error: data/raw/a.zip: truncated\ndelete it\n"


def test_without_a_hint_the_second_line_is_the_command_that_reruns_it(capsys):
    assert command(DataError("bad value"))(["x=1", "y=[a, b]"]) == 2
    assert capsys.readouterr().err == "error: bad value\nrerun with: python -m experiments.example x=1 'y=[a, b]'\n"


def test_an_os_error_naming_its_file_is_expected(capsys):
    assert command(PermissionError(errno.EACCES, "Permission denied", "results/eval"))([]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: results/eval: Permission denied"


@pytest.mark.parametrize("verbose", [False, True])
def test_a_bug_shows_its_traceback(capsys, verbose):
    assert command(KeyError("boom"))(["-v"] if verbose else []) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "error: unexpected KeyError: 'boom'" in err
    assert err.rstrip().endswith("rerun with: python -m experiments.example -v")


def test_verbose_shows_the_traceback_of_an_expected_failure_too(capsys):
    assert command(DataError("bad value", hint="fix it"))(["--verbose"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: bad value\nfix it\n")


@pytest.mark.parametrize("flags, shown", [([], ["progress"]), (["-q"], []), (["--verbose"], ["debug", "progress"])])
def test_q_and_v_choose_which_library_lines_print(flags, shown, capsys):
    import logging

    @entry_point("experiments.example")
    def main(argv: list[str]) -> int:
        assert argv == ["x=1"]  # the flags are stripped
        logging.getLogger("dcpclip.engine.trainer").debug("debug")
        logging.getLogger("dcpclip.engine.trainer").info("progress")
        return 0

    assert main(["x=1", *flags]) == 0
    assert capsys.readouterr().out.split() == shown
