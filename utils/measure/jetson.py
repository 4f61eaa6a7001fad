"""Power and memory on a Jetson, where NVML has no energy counter (Tegra's GPU is not an NVML device): the module's
power rails, read from the INA3221 power monitors under /sys (hwmon, JetPack 5 and 6) or from tegrastats' lines, and
integrated over the timed window into a millijoule counter that utils/measure/energy.EnergyMeter reads as it reads
NVML's. Nothing here was run on a Jetson: the readers are tested on the documented sysfs layout and tegrastats lines
of Orin and Xavier (tests/measure/test_jetson.py).

Sources, in order (the record's energy_scope names the one used):
- INA3221 (hwmon): /sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in<N>_label (the rail), in<N>_input (mV),
  curr<N>_input (mA): power = mV x mA / 1000 mW.
- tegrastats: "... RAM 2476/7620MB ... GR3D_FREQ 0%@[305] ... VDD_IN 4172mW/4172mW VDD_CPU_GPU_CV 480mW/480mW
  VDD_SOC 1361mW/1361mW" (the first figure of each rail is its current power, the second its average); Xavier
  under JetPack 4 wrote "GPU 0/0 CPU 311/311 SOC 1242/1242 CV 0/0 VDDRQ 155/155 SYS5V 1967/1967" (mW).
The module's total is its input rail where it has one (VDD_IN on Orin NX/Nano, VIN_SYS_5V0 on AGX Orin, SYS5V on
Xavier), else the sum of the rails read.

Usage:
    meter = jetson_meter()                 # None where neither source is here
    with meter: ...timed batches...; meter.read_mj()
"""
from __future__ import annotations

import glob
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

INPUT_RAILS = ("VDD_IN", "VIN_SYS_5V0", "SYS5V", "VIN")   # the module's input: all it draws
HWMON_GLOB = "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
_RAIL_MW = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")
_RAIL_OLD = re.compile(r"\b(GPU|CPU|SOC|CV|VDDRQ|SYS5V) (\d+)/(\d+)\b")


def parse_tegrastats(line: str) -> Dict[str, object]:
    """One tegrastats line: rails (name -> current mW), ram_used_mb / ram_total_mb, gr3d_percent (GPU load)."""
    rails = {m.group(1): int(m.group(2)) for m in _RAIL_MW.finditer(line)}
    if not rails:
        rails = {m.group(1): int(m.group(2)) for m in _RAIL_OLD.finditer(line)}
    out: Dict[str, object] = {"rails": rails}
    ram = re.search(r"\bRAM (\d+)/(\d+)MB", line)
    if ram:
        out["ram_used_mb"], out["ram_total_mb"] = int(ram.group(1)), int(ram.group(2))
    gr3d = re.search(r"\bGR3D_FREQ (\d+)%", line)
    if gr3d:
        out["gr3d_percent"] = int(gr3d.group(1))
    return out


def total_mw(rails: Dict[str, int]) -> Optional[float]:
    """The module's power: its input rail where one is read, else the sum of the rails (None: no rail)."""
    for name in INPUT_RAILS:
        if name in rails:
            return float(rails[name])
    return float(sum(rails.values())) if rails else None


def read_hwmon(folders: Iterable[str]) -> Dict[str, int]:
    """Each labelled INA3221 channel's power in mW (mV x mA / 1000) from hwmon folders; channels that cannot be
    read are left out."""
    rails: Dict[str, int] = {}
    for folder in folders:
        for label in sorted(Path(folder).glob("in*_label")):
            n = label.name[2:-len("_label")]
            try:
                name = label.read_text().strip()
                mv = int((Path(folder) / f"in{n}_input").read_text())
                ma = int((Path(folder) / f"curr{n}_input").read_text())
            except (OSError, ValueError):
                continue
            if name and not name.startswith("NC"):  # "NC": a channel not connected
                rails[name] = mv * ma // 1000
    return rails


class PowerIntegrator:
    """Samples a power reading (mW) every `interval_s` in a thread and integrates it (trapezoids) into millijoules:
    read_mj() is a counter like NVML's, from the moment the integrator started."""

    def __init__(self, read_mw: Callable[[], Optional[float]], source: str, interval_s: float = 0.05,
                 clock: Callable[[], float] = time.perf_counter, on_close: Optional[Callable[[], None]] = None):
        self.read_mw, self.source, self.interval_s, self.clock = read_mw, source, interval_s, clock
        self.on_close = on_close
        self._mj, self._last = 0.0, None
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: Optional[threading.Thread] = None

    def sample(self) -> None:
        """One reading, added to the integral (the thread calls it; tests call it with their own clock)."""
        mw, t = self.read_mw(), self.clock()
        with self._lock:
            if mw is not None and self._last is not None:
                t0, mw0 = self._last
                self._mj += (mw + mw0) / 2 * (t - t0)  # mW x s = mJ
            if mw is not None:
                self._last = (t, mw)

    def read_mj(self) -> int:
        self.sample()
        with self._lock:
            return int(self._mj)

    def __enter__(self) -> "PowerIntegrator":
        self.sample()
        self._thread = threading.Thread(target=self._run, name="jetson-power", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self.on_close is not None:
            self.on_close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


class Tegrastats:
    """tegrastats running in a process of its own (--interval ms), the latest line's rails kept: read_mw() is the
    module's power in that line (None before the first)."""

    def __init__(self, command: str, interval_ms: int = 50):
        self.proc = subprocess.Popen([command, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.rails: Dict[str, int] = {}
        self.first = threading.Event()
        threading.Thread(target=self._read, name="tegrastats", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            rails = parse_tegrastats(line)["rails"]
            if rails:
                self.rails = dict(rails)  # type: ignore[call-overload]
                self.first.set()

    def read_mw(self) -> Optional[float]:
        return total_mw(self.rails)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def jetson_meter(hwmon_glob: str = HWMON_GLOB, tegrastats: Optional[str] = "tegrastats"
                 ) -> Optional[PowerIntegrator]:
    """The INA3221 rails integrated, where /sys has them (a Jetson); else tegrastats' rails where that command is
    here and prints any within a second; None elsewhere."""
    folders = sorted(glob.glob(hwmon_glob))
    rails = read_hwmon(folders)
    if rails:
        names = [n for n in INPUT_RAILS if n in rails] or sorted(rails)
        return PowerIntegrator(lambda: total_mw(read_hwmon(folders)), f"Jetson INA3221 rails ({' + '.join(names)})")
    command = shutil.which(tegrastats) if tegrastats else None
    if command is None:
        return None
    stats = Tegrastats(command)
    if not stats.first.wait(1.0):
        stats.close()
        return None
    names = [n for n in INPUT_RAILS if n in stats.rails] or sorted(stats.rails)
    return PowerIntegrator(stats.read_mw, f"Jetson tegrastats rails ({' + '.join(names)})", on_close=stats.close)
