"""The one user-facing error type, and the CLI boundary that turns it into one line.

Usage:
    from utils.core.errors import ArtTRTError, cli_boundary
    raise ArtTRTError("dataset folder 'x' does not exist")
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Iterator, Optional, Sequence

import tqdm

log = logging.getLogger("arttrt")


class ArtTRTError(Exception):
    """A user mistake or an unmet requirement: printed as one sentence, exit code 2."""


def first_line(err: BaseException) -> str:
    """An exception's first line of text, or its type's name where it has none: for one-sentence messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def at_least(option: str, value: Optional[float], least: float = 1) -> None:
    """One sentence when an option's number is below its least value (None: not given)."""
    if value is not None and value < least:
        raise ArtTRTError(f"--{option} must be at least {least:g}, not {value:g}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: what is being written is abandoned cleanly, finished records are kept."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def cli_boundary(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Runs a script's main(); an ArtTRTError becomes one line on stderr and exit 2.

    Real bugs keep their traceback (Polygraphy's _main.py does the same). Ctrl-C (exit 130) and SIGTERM
    (exit 143) unwind the same way: temporary files are removed, decoding lanes stopped, records kept.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as escapes, never a traceback
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
    try:
        return main(argv)
    except ArtTRTError as err:
        print(f"error: {str(err).translate(_CONTROL)}", file=sys.stderr)  # one line, whatever a name held
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as err:
        # a path the system refuses (a folder of the user's that is a file, a file they may not read): their
        # input, one sentence naming it; without a path it is not known to be theirs, and keeps its traceback
        if not getattr(err, "filename", None):
            raise
        print(f"error: {str(err.filename).translate(_CONTROL)}: {(err.strerror or type(err).__name__).lower()}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        print(f"{what}: records written so far are kept", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


OWN_LOGGERS = ("arttrt", "utils", "__main__")
# Libraries that log through loggers of their own at INFO (with handlers of their own): quiet unless --verbose.
LIBRARY_LOGGERS = ("modelopt", "onnxscript", "onnx_ir", "ultralytics", "torch", "polygraphy", "matplotlib", "PIL")


_verbose = False
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def visible(text: str) -> str:
    """text with every control character shown as an escape (\\x1b, \\x0a): a name from a file, a folder or a record
    never colours a terminal, moves its cursor, starts a new table row or fakes a line of its own."""
    return str(text).translate(_CONTROL)


class VisibleFormatter(logging.Formatter):
    """Log lines whose interpolated values (a file name, a record field) show control characters as escapes: a
    name cannot colour the terminal, return the cursor or, with a newline, fake a log line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and record.args:
            args = tuple(str(a).translate(_CONTROL) if isinstance(a, (str, os.PathLike)) else a for a in record.args)
            record = logging.makeLogRecord({**record.__dict__, "args": args})
        return super().format(record)


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """One format for every script. ArtTRT's own messages at INFO (--quiet: warnings only); the libraries'
    (ModelOpt, onnxscript, Ultralytics, ...) and their progress bars shown only with --verbose."""
    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
    for handler in logging.root.handlers:
        handler.setFormatter(VisibleFormatter("%(levelname)s %(message)s"))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    quiet_libraries()
    quiet_library_bars(not verbose)


def quiet_library_bars(quiet: bool) -> None:
    """The libraries' own tqdm bars (ModelOpt's and ONNX Runtime's calibration, one per image) off unless
    --verbose: a bar that does not pass disable= gets disable=True. ArtTRT's bars (utils/core/progress.py) pass
    it and are unchanged. With --verbose the libraries' bars come back."""
    original = getattr(tqdm.tqdm, "_arttrt_init", None)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # for processes started from here (tqdm reads it at import)
        if original is None:  # tqdm is imported already: its bars default to off
            tqdm.tqdm._arttrt_init = tqdm.tqdm.__init__  # type: ignore[attr-defined]
            tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)  # type: ignore
    else:
        os.environ.pop("TQDM_DISABLE", None)
        if original is not None:
            tqdm.tqdm.__init__ = original  # type: ignore[method-assign]
            del tqdm.tqdm._arttrt_init  # type: ignore[attr-defined]


def quiet_libraries() -> None:
    """The libraries' loggers (and any child a library configured itself, as ModelOpt does on import) shown only
    with --verbose: at ERROR otherwise (an error is still said). A console handler of their own (ModelOpt's on
    stdout, torch's stderr handler with its "W1202 ..." format) goes, and their messages propagate to ArtTRT's one
    format. Called again after importing a library that sets its own levels."""
    level = logging.INFO if _verbose else logging.ERROR
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in LIBRARY_LOGGERS]
    for name in {*LIBRARY_LOGGERS, *names}:
        lg = logging.getLogger(name)
        lg.setLevel(level)
        for h in list(lg.handlers):  # on the console: once, on stderr, ours; a file or a buffer of theirs stays
            if _on_console(h):
                lg.removeHandler(h)
                lg.propagate = True


def _on_console(h: logging.Handler) -> bool:
    """A handler that writes to the terminal: stdout or stderr (torch's _StderrHandler writes to whatever
    stderr was when torch was imported), not a file or a buffer a library keeps."""
    if type(h).__name__ == "_StderrHandler":  # torch's (a logging.Handler of its own) and the standard library's
        return True
    if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler):
        return False
    return getattr(h, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """What native code writes to the process's stderr (file descriptor 2: the PyTorch profiler's "profiler_start" /
    "profiler_stop" lines, written by C++ past Python's sys.stderr) kept off the screen unless --verbose; logged at
    DEBUG after the block instead."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                sink.seek(0)
                said = sink.read().decode("utf-8", "replace").strip()
                if said:
                    logging.getLogger(__name__).debug("native output: %s", said)
    finally:
        os.close(saved)


@contextlib.contextmanager
def library_prints() -> Iterator[None]:
    """What a library prints to stdout (ONNX Runtime's calibrator does) kept off the screen unless --verbose;
    logged at DEBUG instead."""
    if _verbose:
        yield
        return
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        logging.getLogger(__name__).debug("library output: %s", buf.getvalue().strip())
