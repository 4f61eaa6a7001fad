"""GPU telemetry: a sampler thread reading NVML (nvidia-ml-py) every N ms, each sample tagged with the
phase it falls in (build, load, warm-up, measure) and the run it belongs to.

Usage:
    tel = Telemetry(interval_ms=50).start()
    tel.label, tel.phase = "torch-fp16-bs256", "measure"
    ...
    tel.stop(); tel.save(Path("outputs/telemetry"), "resnet50")
"""
from __future__ import annotations

import csv
import io
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text, read_text

log = logging.getLogger(__name__)

FIELDS = ["t_s", "label", "phase", "memory_used_mb", "sm_util_percent", "sm_clock_mhz", "power_w"]


def nvml_reader(index: int = 0) -> Optional[Callable[[], Dict[str, float]]]:
    """A function returning one NVML sample, or None where NVML is absent (no NVIDIA driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as err:  # ImportError, NVMLError: no GPU telemetry on this machine
        log.warning("GPU telemetry is off: NVML is not available (%s)", err)
        return None

    def read() -> Dict[str, float]:
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        util = pynvml.nvmlDeviceGetUtilizationRates(h)
        try:
            power = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
        except pynvml.NVMLError:
            power = float("nan")
        return {"memory_used_mb": mem.used / 2**20, "sm_util_percent": float(util.gpu),
                "sm_clock_mhz": float(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)), "power_w": power}

    return read


class Telemetry:
    """Samples a reader every interval_ms on a daemon thread; `phase` and `label` tag the samples."""

    def __init__(self, interval_ms: int = 50, reader: Optional[Callable[[], Dict[str, float]]] = None):
        self.interval = interval_ms / 1000.0
        self.reader = reader if reader is not None else nvml_reader()
        self.phase = "idle"
        self.label = ""
        self.samples: List[Dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0

    def start(self) -> "Telemetry":
        if self.reader is None:
            return self
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="arttrt-telemetry", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.reader is not None
        while not self._stop.is_set():
            t = time.perf_counter() - self._t0
            label, phase = self.label, self.phase  # the run and phase at t, when the read starts
            try:
                sample = self.reader()
            except Exception as err:  # a failing read stops sampling, never the measurement
                log.warning("GPU telemetry stopped: %s", err)
                return
            self.samples.append({"t_s": round(t, 4), "label": label, "phase": phase, **sample})
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for s in self.samples:
            w.writerow(s)
        return buf.getvalue()

    def save(self, folder: Path, name: str) -> Optional[Path]:
        """Writes the samples as CSV (atomically); None when nothing was sampled."""
        if not self.samples:
            return None
        path = folder / f"telemetry-{name}-{time.strftime('%Y%m%dT%H%M%S')}.csv"
        atomic_write_text(path, self.to_csv())
        return path


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """The samples of a telemetry CSV; [] and one warning for a file that is not one (not a regular file, not
    UTF-8, columns or numbers that do not fit): a report is drawn from what it can trust."""

    try:
        rows = list(csv.DictReader(io.StringIO(read_text(path, "telemetry file"), newline="")))
        for r in rows:
            for k in FIELDS:
                if k in ("label", "phase"):
                    r[k] = str(r.get(k) or "")[:200]
                else:
                    r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
                    if math.isinf(r[k]):
                        raise ValueError(f"{k} is infinite")
    except (ArtTRTError, ValueError, TypeError, csv.Error) as err:
        logging.getLogger(__name__).warning("skipped %s: not an ArtTRT telemetry file (%s)", path, err)
        return []
    return rows


def check_interval(ms: int) -> None:
    """--telemetry_ms, checked here, the one place that owns it."""
    if ms < 1:
        raise ArtTRTError(f"--telemetry_ms must be at least 1, not {ms}")
