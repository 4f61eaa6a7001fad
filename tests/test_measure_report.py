"""The timing harness's statistics (against numpy), warm-up rule, records, tables, plots and telemetry."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from PIL import Image

import main
from utils.datasets import SyntheticDataset
from utils.errors import cli_boundary
from utils.measure import MeasureOptions, measure
from utils.networks import load_network
from utils.runners.torch_runner import TorchRunner
from utils.stats import latency_stats, unstable
from utils.telemetry import Telemetry, read_csv


def test_latency_stats_against_numpy():
    rng = np.random.default_rng(1)
    v = rng.gamma(2.0, 1.5, size=257)
    s = latency_stats(v.tolist())
    assert s["mean"] == pytest.approx(v.mean()) and s["std"] == pytest.approx(v.std())
    assert s["min"] == v.min() and s["max"] == v.max() and s["count"] == 257
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(v, q))
    assert s["cv_percent"] == pytest.approx(100 * v.std() / v.mean())
    assert unstable(s)  # a gamma sample varies far more than 2.5 %
    steady = latency_stats([10.0, 10.1, 9.9, 10.0])
    assert not unstable(steady) and steady["p50"] == 10.0
    assert math.isnan(latency_stats([])["mean"])


def test_warmup_is_ten_percent_and_accuracy_counts_every_image():
    net = load_network("resnet18")
    ds = SyntheticDataset(40, 64, seed=0)
    with TorchRunner(net, "cpu") as r:
        res = measure(r, ds, MeasureOptions(batch_size=2, min_warmup_s=0.0, progress=False))
    s = res.summary()
    assert s["warmup_batches"] == 2 and s["latency_all_batches"] == 18 and s["images"] == 40
    assert s["timed_images"] == 36 and s["mode"] == "sync"
    assert s["images_per_s"] == pytest.approx(36 / (sum(res.latency_all_ms) / 1e3))
    assert all(a >= m for a, m in zip(res.latency_all_ms, res.latency_model_ms))


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
    import utils.telemetry as t

    monkeypatch.setattr(t, "nvml_reader", lambda index=0: None)
    tel = t.Telemetry().start()
    tel.stop()
    assert tel.samples == [] and tel.save(__import__("pathlib").Path("/nonexistent"), "x") is None


def _not_blank(path):
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return arr.std() > 5 and (arr < 128).mean() > 0.005


def test_sweep_records_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main.main(["-v", "--network", "resnet18", "--synthetic", "8", "--batch_sizes", "1", "2", "4",
                      "--backends", "torch", "onnxrt", "--output", str(out), "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted((r["backend"], r["batch_size"]) for r in recs) == \
        [("onnxrt", 1), ("onnxrt", 2), ("onnxrt", 4), ("torch", 1), ("torch", 2), ("torch", 4)]
    for r in recs:
        for k in ("latency_model_p50", "latency_model_p99", "latency_all_p90", "latency_model_cv_percent",
                  "images_per_s", "size_mb", "layers", "params", "prepare_s"):
            assert r[k] is not None, k
        assert r["env"]["torch"] and "cpu" in r["env"] and r["command"].startswith("python main.py -v")
    table = (out / "table_outputs" / "resnet18.md").read_text()
    assert table.count("## Batch size") == 3 and "| Vanilla |" in table and "| ONNX Runtime fp32 (cpu) |" in table
    assert "Latency-all mean / max (ms)" in table and "p50 / p90 / p99" in table
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {"throughput-resnet18.png", "inference_time_bar_all-bs1.png"}
    assert all(_not_blank(p) for p in pngs)
    # --report redraws the same files from the records alone
    for p in pngs:
        p.unlink()
    assert main.main(["--report", str(out)]) == 0
    assert sorted((out / "plots").glob("*.png")) == pngs


def test_telemetry_plot_from_csv(tmp_path):
    from utils.plots import telemetry_plot

    samples = [{"t_s": i * 0.05, "label": "torch-fp16-bs256" if i > 20 else "torch-fp32-bs256",
                "phase": ["build", "load", "warm-up", "measure"][min(3, (i % 20) // 5)],
                "memory_used_mb": 1000 + 10 * i, "sm_util_percent": (i * 7) % 100, "sm_clock_mhz": 1980,
                "power_w": 400} for i in range(40)]
    path = telemetry_plot(samples, tmp_path / "t.png", "resnet50")
    assert _not_blank(path)


def test_interrupted_sweep_keeps_finished_records(tmp_path, monkeypatch):
    import utils.pipeline as pipeline

    real = pipeline.validate_one
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "validate_one", flaky)
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "1", "2",
                                  "--output", str(tmp_path), "--quiet"])
    assert rc == 130
    recs = list((tmp_path / "records").glob("*.json"))
    assert len(recs) == 1 and json.loads(recs[0].read_text())["batch_size"] == 1
    assert not list((tmp_path / "records").glob("*.part"))
