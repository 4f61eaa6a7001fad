"""NVML telemetry: samples tagged with phases, CSV round trip, and nothing at all without NVML."""
from __future__ import annotations

import threading
import time

from utils.measure.telemetry import Telemetry, read_csv


def test_telemetry_samples_with_phases_and_csv(tmp_path):
    """The sampler's own reads pace the test (no sleeps to race): three samples in warm-up, then the phase
    changes and three more come; every sample carries the phase it was read in, in order, and the CSV gives
    them back value for value."""
    values = iter(range(10**6))
    read = threading.Semaphore(0)

    def fake_reader():
        i = next(values)
        read.release()
        # the test's thread runs (and may switch the phase) before this read returns: the sample keeps the phase
        # its read started in (a loaded CI machine once caught it taking the new one)
        time.sleep(0.002)
        return {"memory_used_mb": 100.0 + i, "sm_util_percent": 50.0, "sm_clock_mhz": 1980.0, "power_w": 300.0}

    tel = Telemetry(interval_ms=1, reader=fake_reader)
    tel.label, tel.phase = "run-a", "warm-up"
    tel.start()
    for _ in range(3):
        assert read.acquire(timeout=30)
    tel.phase = "measure"
    for _ in range(4):  # the read under way at the switch started in warm-up and is tagged so
        assert read.acquire(timeout=30)
    tel.stop()
    phases = [s["phase"] for s in tel.samples]
    switch = phases.index("measure")
    assert switch >= 3 and set(phases[:switch]) == {"warm-up"} and set(phases[switch:]) == {"measure"}
    assert len(phases) - switch >= 3 and {s["label"] for s in tel.samples} == {"run-a"}
    assert [s["memory_used_mb"] for s in tel.samples] == [100.0 + i for i in range(len(tel.samples))]
    assert all(b["t_s"] >= a["t_s"] for a, b in zip(tel.samples, tel.samples[1:]))
    rows = read_csv(tel.save(tmp_path, "net"))
    assert [(r["phase"], r["memory_used_mb"], r["power_w"]) for r in rows] == \
        [(s["phase"], s["memory_used_mb"], 300.0) for s in tel.samples]


def test_a_failing_read_stops_sampling_not_the_run(caplog):
    def broken():
        raise OSError("NVML: GPU is lost")

    tel = Telemetry(interval_ms=1, reader=broken).start()
    tel._thread.join(timeout=30)
    assert not tel._thread.is_alive() and tel.samples == []
    tel.stop()
    assert "GPU telemetry stopped: NVML: GPU is lost" in caplog.text


def test_telemetry_without_nvml_is_a_no_op(monkeypatch):
    import utils.measure.telemetry as t

    monkeypatch.setattr(t, "nvml_reader", lambda index=0: None)
    tel = t.Telemetry().start()
    tel.stop()
    assert tel.samples == [] and tel.save(__import__("pathlib").Path("/nonexistent"), "x") is None
