"""NVML telemetry: samples tagged with phases, CSV round trip, and nothing at all without NVML."""
from __future__ import annotations

import time

from utils.measure.telemetry import Telemetry, read_csv


def test_telemetry_samples_with_phases_and_csv(tmp_path):
    values = iter(range(10**6))

    def fake_reader():
        i = next(values)
        return {"memory_used_mb": 100.0 + i, "sm_util_percent": 50.0, "sm_clock_mhz": 1980.0, "power_w": 300.0}

    tel = Telemetry(interval_ms=5, reader=fake_reader).start()
    tel.label, tel.phase = "run-a", "warm-up"
    time.sleep(0.05)
    tel.phase = "measure"
    time.sleep(0.05)
    tel.stop()
    phases = [s["phase"] for s in tel.samples]
    assert "warm-up" in phases and "measure" in phases and phases.index("measure") > phases.index("warm-up")
    path = tel.save(tmp_path, "net")
    rows = read_csv(path)
    assert len(rows) == len(tel.samples) and rows[0]["memory_used_mb"] >= 100.0
    assert rows[-1]["t_s"] >= rows[0]["t_s"]


def test_telemetry_without_nvml_is_a_no_op(monkeypatch):
    import utils.measure.telemetry as t

    monkeypatch.setattr(t, "nvml_reader", lambda index=0: None)
    tel = t.Telemetry().start()
    tel.stop()
    assert tel.samples == [] and tel.save(__import__("pathlib").Path("/nonexistent"), "x") is None
