"""Signals held while foreign code owns the main thread (MLPerf LoadGen's run): Ctrl-C and SIGTERM noted, then acted on.

Usage:
    with signals_held_while("the LoadGen run 'performance'"):
        lg.StartTestWithLogSettings(...)
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

log = logging.getLogger(__name__)


STOP_WATCHING = 0  # no signal's number: the watcher's sign to end
FORCE_AFTER_S = 1.0  # a second signal this long after the first stops the process at once (sooner: the same one
                    # forwarded, as a terminal and a parent process both send a Ctrl-C)


@contextlib.contextmanager
def signals_held_while(what: str, on_signal: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) and SIGTERM until the block ends, then lets each act as it would have (SIGTERM first).

    Python runs a signal's handler on the main thread at its next Python line, and while LoadGen runs that line is
    one of the callbacks LoadGen calls from its C++ code (the QSL's load and unload): a KeyboardInterrupt raised there
    unwinds through LoadGen (on the CPU the process then died of a segfault). So the handlers here only note the
    signal, and call on_signal (the SUT then answers what is left without inference, so an Offline run ends at once and
    a Server run at the end of its schedule, --duration). LoadGen keeps the main thread until its run ends, so a
    Ctrl-C takes effect then; a second Ctrl-C or SIGTERM, a second or more after the first, ends the process at once
    (exit 128 + the signal's number; every record already written is complete on disk). A signal that was ignored, or
    whose handler Python did not set, is left as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: List[int] = []
    first: List[float] = []

    def seen(signum: int) -> None:
        """A signal as it arrives, on the watcher thread (the main thread may be inside LoadGen's C++ for the whole
        run, and Python runs a handler only at the main thread's next Python line)."""
        if signum not in (signal.SIGINT, signal.SIGTERM):
            return
        now = time.monotonic()
        if first and now - first[0] >= FORCE_AFTER_S:  # asked again: the records written so far are kept on disk
            log.warning("%s again: stopping now; %s is lost, the records written before it are kept",
                        signal.Signals(signum).name, what)
            logging.shutdown()
            os._exit(128 + signum)
        if not first:
            first.append(now)
            log.warning("%s: stopping when %s ends (its remaining queries are answered without inference; "
                        "again to stop at once)", signal.Signals(signum).name, what)
            if on_signal is not None:
                on_signal()

    def hold(signum: int, frame: Any) -> None:
        if signum not in got:
            got.append(signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: h for sig, h in previous.items() if h is not None and h is not signal.SIG_IGN}
    # CPython's C-level handler writes each signal's number to the wakeup socket at once, from whichever thread the
    # signal lands on: the watcher reads it there
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            data = reader.recv(64)
            if not data or STOP_WATCHING in data:
                return
            for signum in data:
                seen(signum)

    watcher = threading.Thread(target=watch, name="arttrt-signals", daemon=True)
    watcher.start()
    for sig in previous:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        writer.send(bytes([STOP_WATCHING]))
        watcher.join()
        reader.close()
        writer.close()
        for sig in sorted(got, key=lambda s: s != signal.SIGTERM):  # each to the handler it would have met
            signal.raise_signal(sig)
