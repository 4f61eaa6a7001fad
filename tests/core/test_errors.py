"""The CLI boundary: ArtTRT's errors become one line and exit 2, real bugs keep their traceback, Ctrl-C and
SIGTERM keep what was written (130 / 143); logging levels for ArtTRT and the libraries; library prints."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import threading

import pytest

import utils.core.errors as errors
from utils.core.errors import ArtTRTError, Terminated, cli_boundary, first_line, library_prints, setup_logging


def test_an_artrt_error_is_one_line_and_exit_2(capsys):
    def main(argv):
        assert argv == ["--x", "1"]
        raise ArtTRTError("dataset folder 'x' does not exist")

    assert cli_boundary(main, ["--x", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: dataset folder 'x' does not exist\n" and captured.out == ""


def test_what_main_returns_is_the_exit_code():
    assert cli_boundary(lambda argv: 0) == 0 and cli_boundary(lambda argv: 3) == 3


def test_a_bug_keeps_its_traceback():
    """Not an ArtTRTError: it leaves the boundary as it is (Python prints the traceback, exit 1), never as a
    one-line 'error:' that hides where it came from."""
    def main(argv):
        raise ZeroDivisionError("a real bug")

    with pytest.raises(ZeroDivisionError, match="a real bug"):
        cli_boundary(main)


@pytest.mark.parametrize("exc, code, word", [(KeyboardInterrupt(), 130, "interrupted"),
                                             (Terminated(), 143, "terminated")])
def test_ctrl_c_and_sigterm_exit_codes(capsys, exc, code, word):
    def main(argv):
        raise exc

    assert cli_boundary(main) == code
    assert capsys.readouterr().err == f"{word}: records written so far are kept\n"


class Sentinel(Exception):
    pass


def _sentinel(signum, frame):
    raise Sentinel()


def test_sigterm_unwinds_like_ctrl_c_and_the_old_handler_comes_back(capsys):
    """ArtTRT's handler is in place while main runs (a SIGTERM then exits 143), and the caller's afterwards."""
    before = signal.signal(signal.SIGTERM, _sentinel)
    seen = {}

    def main(argv):
        seen["handler"] = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop main")

    try:
        assert cli_boundary(main) == 143
        assert seen["handler"] is errors._terminate and signal.getsignal(signal.SIGTERM) is _sentinel
        assert "terminated" in capsys.readouterr().err
        assert cli_boundary(lambda argv: 0) == 0 and signal.getsignal(signal.SIGTERM) is _sentinel
    finally:
        signal.signal(signal.SIGTERM, before)


def test_off_the_main_thread_signals_are_left_alone():
    """Python only lets the main thread set handlers: a boundary run in a worker thread must not try."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(code=cli_boundary(lambda argv: 7)))
    thread.start()
    thread.join(timeout=30)
    assert out == {"code": 7}


def test_first_line():
    assert first_line(ValueError("  one\ntwo\n")) == "one"
    assert first_line(ValueError("")) == "ValueError" and first_line(KeyError()) == "KeyError"


@pytest.fixture
def restore_logging(monkeypatch):
    monkeypatch.setattr(errors, "_verbose", False)
    # tqdm as before any setup_logging: conftest's _quiet_does_not_leak
    names = ("arttrt", "utils", "__main__", "modelopt", "modelopt.torch.quantization", "ultralytics", "torch", "torch._dynamo", "torch._subclasses")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
             for n in names}
    root = (logging.root.level, list(logging.root.handlers))
    yield
    for n, (level, handlers, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate
    logging.root.setLevel(root[0])
    logging.root.handlers[:] = root[1]


@pytest.mark.parametrize("quiet, verbose, own, libs", [(None, None, logging.INFO, logging.ERROR),
                                                       (False, False, logging.INFO, logging.ERROR),
                                                       (True, False, logging.WARNING, logging.ERROR),
                                                       (False, True, logging.INFO, logging.INFO)])
def test_levels(restore_logging, quiet, verbose, own, libs):
    child = logging.getLogger("modelopt.torch.quantization")  # a library's own child logger, set on import
    child.setLevel(logging.DEBUG)
    setup_logging() if quiet is None else setup_logging(quiet=quiet, verbose=verbose)  # None: the defaults
    assert all(logging.getLogger(n).level == own for n in ("arttrt", "utils", "__main__"))
    assert logging.getLogger("ultralytics").level == libs and child.level == libs
    assert logging.root.level == (logging.INFO if verbose else logging.WARNING)
    assert logging.root.handlers[0].formatter._fmt == "%(levelname)s %(message)s"


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("flags", [{}, {"quiet": True}])
def test_the_libraries_bars_are_off_unless_verbose_and_arttrts_own_stay(restore_logging, flags):
    import tqdm

    from utils.core.progress import progress_bar

    assert not tqdm.tqdm(range(3)).disable and not tqdm.tqdm(range(3), file=TTY()).disable
    setup_logging(**flags)
    assert os.environ["TQDM_DISABLE"] == "1"
    assert tqdm.tqdm(range(3)).disable and tqdm.tqdm(range(3), file=TTY()).disable  # off on a terminal too
    assert not tqdm.tqdm(range(3), disable=False).disable  # a caller that decides still decides
    init = tqdm.tqdm.__dict__["__init__"]
    setup_logging(**flags)  # twice: still one wrapper, not a wrapper of a wrapper
    assert tqdm.tqdm.__dict__["__init__"] is init and tqdm.tqdm(range(3)).disable
    with contextlib.redirect_stderr(TTY()):  # ArtTRT's own bar, asked for, on a terminal: shown
        own = progress_bar(3, "images", True)
    assert not own.disable
    own.close()
    setup_logging(verbose=True)  # --verbose: the libraries' bars are back
    assert "TQDM_DISABLE" not in os.environ and not tqdm.tqdm(range(3), file=TTY()).disable


def test_a_librarys_own_console_handler_goes_and_its_file_handler_stays(restore_logging, tmp_path):
    lg = logging.getLogger("modelopt")
    console, to_file = logging.StreamHandler(sys.stdout), logging.FileHandler(tmp_path / "log.txt")
    to_buffer = logging.StreamHandler(io.StringIO())  # a library collecting its own messages: not ours to drop
    for h in (console, to_file, to_buffer):
        lg.addHandler(h)
    lg.propagate = False
    import torch  # noqa: F401  torch's own stderr handler (its "W1202 12:00:00 file.py:1] ..." lines) goes too

    setup_logging()
    assert console not in lg.handlers and to_file in lg.handlers and to_buffer in lg.handlers and lg.propagate
    to_file.close()
    torch_log = logging.getLogger("torch")
    assert not [h for h in torch_log.handlers if getattr(h, "stream", None) is sys.stderr] and torch_log.propagate


def test_library_prints_are_kept_off_the_screen_unless_verbose(restore_logging, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="utils.core.errors")
    with library_prints():
        print("calibrating 1/20")
    assert capsys.readouterr().out == ""
    assert any("library output: calibrating 1/20" in r.getMessage() for r in caplog.records)
    setup_logging(verbose=True)
    with library_prints():
        print("calibrating 2/20")
    assert capsys.readouterr().out == "calibrating 2/20\n"
