"""Signals held while foreign code owns the main thread (MLPerf LoadGen's run): Ctrl-C and SIGTERM noted, then acted on.

Usage:
    with signals_held_while("the LoadGen run 'performance'"):
        lg.StartTestWithLogSettings(...)
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator, List

log = logging.getLogger(__name__)


@contextlib.contextmanager
def signals_held_while(what: str) -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) and SIGTERM until the block ends, then lets each act as it would have (SIGTERM first).

    Python runs a signal's handler on the main thread at its next Python line, and while LoadGen runs that line is
    one of the callbacks LoadGen calls from its C++ code (the QSL's load and unload): a KeyboardInterrupt raised there
    unwinds through LoadGen (on the CPU the process then died of a segfault). So the handlers here only note the
    signal. LoadGen keeps the main thread until its run ends, so a Ctrl-C takes effect then (a Server accuracy run
    lasts about count / rate); Ctrl-\\ (SIGQUIT) or SIGKILL stops the process at once. A signal that was ignored, or
    whose handler Python did not set, is left as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: List[int] = []

    def hold(signum: int, frame: Any) -> None:
        if signum not in got:
            got.append(signum)
            log.warning("%s: stopping when %s ends", signal.Signals(signum).name, what)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: h for sig, h in previous.items() if h is not None and h is not signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in sorted(got, key=lambda s: s != signal.SIGTERM):  # each to the handler it would have met
            signal.raise_signal(sig)
