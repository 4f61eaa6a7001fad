"""How busy the other processes kept the host's CPUs while a block ran: the CPU time the whole host spent busy
(/proc/stat), less this process's own (getrusage, every thread), over the block's wall time, in cores. Unlike the
1-minute load average, it counts the timed window only: a pip install that ended before the run does not mark it.

Usage:
    with OtherLoad() as others:
        measure(...)
    others.cores   # e.g. 1.3: other processes kept 1.3 cores busy on average; None where /proc/stat is missing
"""
from __future__ import annotations

import os
import resource
from time import perf_counter
from typing import Any, Optional

STAT = "/proc/stat"


def busy_seconds(stat: str = STAT) -> Optional[float]:
    """CPU seconds the host spent busy since boot (user, nice, system, irq, softirq, steal of the "cpu" line), or
    None where the file is missing or unreadable."""
    try:
        with open(stat, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """This process's CPU seconds (user and system, every thread)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


class OtherLoad:
    def __init__(self, stat: str = STAT) -> None:
        self.stat = stat
        self.cores: Optional[float] = None

    def __enter__(self) -> "OtherLoad":
        self._t, self._busy, self._own = perf_counter(), busy_seconds(self.stat), own_seconds()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall, busy = perf_counter() - self._t, busy_seconds(self.stat)
        if self._busy is None or busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (own_seconds() - self._own)
        self.cores = round(max(0.0, others) / wall, 2)  # clock ticks are coarse: never below 0
