"""Issue 42, parts 3-4: where each batch's time goes (copy-in, normalise, compute, copy-out, the host's enqueue) with
trtexec's diagnosis, and each runner's cold start (export, conversion and build, load, compile or capture, the first
batch) with the caches hit or missed."""
from __future__ import annotations

import json

import pytest

from utils.measure.measurement import time_split
from utils.study.validate import cold_start


@pytest.mark.parametrize("h2d, compute, d2h, enqueue, bound", [
    # trtexec's logs (TensorRT's sampleReporting.cpp rules, on the medians)
    (0.8288, 33.664, 0.5129, 34.4884, "enqueue-bound"),   # enqueue above 0.8 x compute
    (1.577, 1.019, 0.031, 0.5, "H2D-bound"),              # the copy-in takes longer than the compute
    (0.2, 1.0, 1.2, 0.3, "D2H-bound"),
    (0.4128, 10.52, 0.3196, 5.0, "compute-bound"),
])
def test_trtexecs_diagnosis_from_the_medians(h2d, compute, d2h, enqueue, bound):
    got = time_split([(h2d, 0.05, d2h, enqueue)] * 9, [compute] * 9, device=True)
    assert got["bound"] == bound
    split = got["time_split"]
    assert (split["h2d_ms"], split["compute_ms"], split["d2h_ms"], split["enqueue_ms"]) == pytest.approx(
        (h2d, compute, d2h, enqueue))
    assert "bound" not in time_split([(h2d, 0.05, d2h, enqueue)] * 9, [compute] * 9, device=False)  # the CPU
    assert time_split([], [], device=True) == {}


def test_the_enqueue_rule_is_trtexecs_0_8():
    assert time_split([(0.0, 0.0, 0.0, 8.1)], [10.0], device=True)["bound"] == "enqueue-bound"
    assert time_split([(0.0, 0.0, 0.0, 8.0)], [10.0], device=True)["bound"] == "compute-bound"  # not above 0.8


def test_the_cold_start_of_a_runner_and_its_caches():
    facts = {"prepare_s": 3.0, "export_s": 1.0, "export_cached": False, "convert_cached": True}
    got = cold_start(facts, load_s=3.5, runner_prepare_s=2.0, first_batch_ms=100.0)
    assert got == {"export_s": 1.0, "convert_build_s": 2.0, "load_s": 0.5, "runner_prepare_s": 2.0,
                   "first_batch_s": 0.1, "total_s": 5.6, "caches": {"export": "missed", "conversion": "hit"}}
    assert cold_start({"engine_cached": True}, 0.2, 0.0, None)["caches"] == {"engine": "hit"}


def test_a_study_records_the_split_summing_to_latency_all_and_the_cold_start(tmp_path, monkeypatch):
    import main
    import utils.study.validate as validate
    from utils.core.errors import cli_boundary

    given = []  # what the roofs are computed from: the runner's size is in its info (the H100 run once lacked it)
    real_fields = validate.compute_fields
    monkeypatch.setattr(validate, "compute_fields", lambda *a: given.append(a) or real_fields(*a))

    out = tmp_path / "o"
    assert cli_boundary(main.main, ["-v", "--network", "resnet18", "--synthetic", "8", "--backends", "torch",
                                    "onnxrt", "--batch_sizes", "2", "4", "--iterations", "3", "--duration", "0",
                                    "--output", str(out), "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    for r in recs:
        split = r["time_split"]
        parts = split["h2d_ms"] + split["normalize_ms"] + split["compute_ms"] + split["d2h_ms"]
        assert parts == pytest.approx(r["latency_all_mean"], rel=1e-4)  # pipelined: latency-all is these four
        assert split["compute_ms"] == pytest.approx(r["latency_model_mean"], rel=1e-4)
        assert r.get("bound") is None  # the CPU: no copies to diagnose
    assert len(given) == len(recs) and all(a[5] is not None and a[5] > 0 for a in given)  # weights_mib
    assert sorted(a[5] for a in given) == sorted(r["size_mib"] for r in recs)
    firsts = [r for r in recs if r.get("cold_start")]
    assert sorted(r["backend"] for r in firsts) == ["onnxrt", "torch"]  # a setup's first job only
    ort = next(r["cold_start"] for r in firsts if r["backend"] == "onnxrt")
    assert ort["caches"]["export"] in ("hit", "missed") and ort["first_batch_s"] > 0
    assert ort["total_s"] == pytest.approx(sum(ort[k] for k in ("export_s", "convert_build_s", "load_s",
                                                                   "runner_prepare_s", "first_batch_s")), abs=2e-3)
    text = (out / "table_outputs" / "compute.md").read_text()
    assert "## Where each batch's time goes" in text and "## Cold start: what a user waits for" in text
    assert f"export {ort['caches']['export']}" in text
