"""The serving records of MLPerf LoadGen scenarios (role "scenario") in the report: the served table cell by cell
(utils/report/tables.served_markdown), the schema of their fields, escaping in report.html, the timing tables left
exactly as they were beside them, and the latency-against-load curve (utils/report/plots.serving_curve). Light: no
model, no LoadGen."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.report.test_hostile_records import HOSTILE, assert_nothing_live
from tests.report.test_hostile_records import record as timing_record
from tests.report.test_hostile_records import write
from tests.report.test_report import _not_blank
from tests.report.test_tables import cells
from utils.report import plots
from utils.report.records import load_records, read_record
from utils.report.report import make_report
from utils.report.schema import RecordError, check_record
from utils.report.sections.results_tables import results_table
from utils.report.sections.served_tables import SERVED_HEADING, served_markdown, served_qps
from utils.report.sections.worth_it_tables import worth_it_markdown
from utils.report.select import latest_per_config, timing_rows
from tests.report import as_read
from utils.report.schema import typed

served_markdown, served_qps, results_table, worth_it_markdown, latest_per_config, timing_rows = map(
    as_read, (served_markdown, served_qps, results_table, worth_it_markdown, latest_per_config, timing_rows))

LATENCY = {"p50": 3.0, "p90": 5.0, "p95": 6.0, "p97": 7.0, "p99": 12.5, "p99.9": 14.0, "min": 1.0, "mean": 3.5,
           "max": 20.0}
NOTE = "each LoadGen run lasted at least --duration 10 s; MLPerf's submission runs last at least 600 s"
HEAD = ["runner", "Offline samples/s", "Server peak QPS (p99 <= 15 ms)", "Server / Offline", "p50 @ peak (ms)",
        "p99 @ peak (ms)", "top-1 (%)", "x Vanilla", "LoadGen"]
NO_REF = "- (no plain Vanilla Server run on these images: no options, no CUDA graph)"


def step(qps, served, valid, p50, p99):
    return {"target_qps": qps, "loadgen_valid": valid, "loadgen_invalid_reasons": [] if valid else
            ["the latency constraint was not met"], "samples_per_s": served, "scheduled_samples_per_s": qps,
            "latency_ms": {"p50": p50, "p99": p99}, "early_stopping": "met", "overlatency_queries": 0,
            "queries": int(qps * 10), "logs": "peak-1"}


def served(scenario="server", backend="torch", precision="fp32", network="resnet50", time="2026-12-05T10:00:00+00:00",
           settings=None, **over):
    """A serving record as utils/study/validate.serve_with writes it (Server: a --find_peak search)."""
    rec = {"record_version": 2, "kind": "validate", "role": "scenario", "time": time, "network": network,
           "backend": backend, "precision": precision, "options": "", "device": "cuda", "batch_size": 32,
           "dataset": "/data/imagenet", "dataset_key": "k1", "weights": "torchvision", "weights_id": "w1",
           "env": {"gpu": "NVIDIA H200", "torch": "2.11"}, "error": None, "job_key": f"j-{scenario}-{backend}",
           "setup_key": f"s-{backend}-{precision}", "scenario": scenario,
           "serve_settings": {"scenario": scenario, "max_batch": 32, "max_queue_delay_us": 0, "target_qps": None,
                              "latency_bound_ms": 15.0, "percentile": 99.0, "find_peak": scenario == "server",
                              "duration_s": 10.0, "samples_per_query": 8, "seed": 0, **(settings or {})},
           "loadgen_version": "5.1.0", "loadgen_valid": True, "loadgen_invalid_reasons": [], "early_stopping": "met",
           "samples_per_s": 2000.0, "latency_ms": dict(LATENCY), "overlatency_queries": 0, "queries": 20000,
           "top1": 76.0, "images": 500, "labelled_images": 500, "nonfinite_outputs": 0, "accuracy_samples": 500,
           "accuracy_answered_once": 500, "loadgen_logs": "loadgen/j-1/performance", "accuracy_logs": "accuracy",
           "batches": 700, "mean_batch": 28.6, "padded_samples": 12, "padded_batch_sizes": [1, 2, 4, 8, 16, 32],
           "warmup_samples_per_s": 2100.0, "duration_note": NOTE}
    if scenario == "server":
        rec.update({"samples_per_s": 1490.0, "scheduled_samples_per_s": 1500.0, "target_qps": 1500.0,
                    "peak_qps": 1500.0, "peak_search": "bisection of whole LoadGen Server runs",
                    "peak_steps": [step(2310.0, 1800.0, False, 9.0, 40.0), step(1155.0, 1150.0, True, 2.5, 8.0),
                                   step(1732.0, 1650.0, False, 6.0, 22.0), step(1500.0, 1490.0, True, 3.0, 12.5)]})
    rec.update(over)
    return rec


def study():
    """resnet50: PyTorch fp32 (the reference), TensorRT fp16 (4.8 x its peak) and ONNX Runtime fp16 (no rate met, its
    top-1 not checked), Offline and Server each; alexnet: TensorRT only (no reference)."""
    return [served("offline", samples_per_s=2000.0), served(),
            served("offline", "tensorrt", "fp16", samples_per_s=9000.0),
            served("server", "tensorrt", "fp16", peak_qps=7200.0, target_qps=7200.0,
                   latency_ms={**LATENCY, "p50": 2.0, "p99": 14.0}),
            served("server", "onnxrt", "fp16", peak_qps=None, target_qps=100.0, loadgen_valid=False, top1=None,
                   images=None, loadgen_invalid_reasons=["the latency constraint was not met"],
                   latency_ms={**LATENCY, "p99": 40.0}, accuracy_error="LoadGen logged 3 of 500 samples answered "
                                                                       "exactly once: the top-1 is not given"),
            served("server", "tensorrt", "fp16", network="alexnet", peak_qps=900.0)]


def test_the_served_table_cell_by_cell():
    text = str(served_markdown(study()))
    assert text.startswith(SERVED_HEADING)
    assert cells(text, "### resnet50") == [
        HEAD,
        # 1500 / 2000 = 0.75; the latency of the run at the peak; its own reference: 1.00x
        ["Vanilla", "2000.0", "1500.0", "0.75", "3.000", "12.500", "76.00", "1.00x", "VALID"],
        ["ONNX Runtime fp16", "-", "none met (p99 40.000 ms at 100.0 QPS)", "-", "-", "-",
         "not checked: LoadGen logged 3 of 500 samples answered exactly once: the top-1 is not given", "-",
         "INVALID (Server: the latency constraint was not met)"],
        # 7200 / 9000 = 0.80; 7200 / PyTorch fp32's 1500 = 4.80
        ["TRT fp16", "9000.0", "7200.0", "0.80", "2.000", "14.000", "76.00", "4.80x", "VALID"]]
    assert cells(text, "### alexnet")[1] == ["TRT fp16", "-", "900.0", "-", "3.000", "12.500", "76.00", NO_REF,
                                            "VALID"]
    assert f"Server held to p99 latency <= 15 ms; LoadGen 5.1.0; {NOTE}." in text
    assert "nan" not in text.lower()


def test_a_served_record_counts_its_accuracy_runs_images_and_loadgens_only_where_that_gave_none():
    from utils.report.select import served_records

    got = as_read(served_records)([served("offline", images=480), served("server", images=None)])
    assert sorted((r.scenario, r.images, r.accuracy_samples) for r in got) == [("offline", 480, 500),
                                                                              ("server", 500, 500)]


def test_the_reference_is_pytorch_fp32_on_the_same_images_and_a_single_target_run_shows_its_rate_where_met():
    other_images = served(dataset_key="k2", dataset="/data/other", peak_qps=3000.0)  # another folder: not a reference
    met = served("server", "tensorrt", "int8", settings={"find_peak": False, "target_qps": 800.0}, peak_search=None,
                 peak_qps=None, peak_steps=[step(800.0, 799.0, True, 1.0, 2.0)], target_qps=800.0)
    missed = served("server", "onnxrt", "fp16", settings={"find_peak": False, "target_qps": 5000.0}, peak_search=None,
                    peak_qps=None, target_qps=5000.0, loadgen_valid=False, latency_ms={"p50": 9.0, "p99": 31.25},
                    loadgen_invalid_reasons=["the latency constraint was not met", "LoadGen: <b>late</b>"])
    assert served_qps(met) == (800.0, "800.0 (target met)")
    assert served_qps(missed) == (None, "not met (p99 31.250 ms, bound 15 ms)")
    rows = {r[0]: r for r in cells(str(served_markdown([served(), other_images, met, missed])))[1:]}
    assert rows["TRT int8"][HEAD.index("x Vanilla") + 1] == f"{800.0 / 1500.0:.2f}x"  # the dataset column first
    assert rows["ONNX Runtime fp16"][-1] == ("INVALID (Server: the latency constraint was not met; LoadGen: "
                                             "<b>late</b>)")
    # only PyTorch fp32 on other images: no reference, said so
    alone = cells(str(served_markdown([other_images, {**met, "dataset_key": "k1"}])))
    assert alone[0][:2] == ["runner", "dataset"]
    assert [r[HEAD.index("x Vanilla") + 1] for r in alone[1:]] == ["1.00x", NO_REF]


def test_a_figure_that_is_not_a_number_is_a_blank_and_no_serving_record_no_table():
    # NaN and Inf never reach a table (the schema refuses them on read: the next test); a figure left out is a blank
    bad = served("offline", samples_per_s=None, latency_ms={"p90": 1.0})
    rows = cells(str(served_markdown([bad, served(peak_qps=None, target_qps=None)])))
    assert rows[1][1:7] == ["-", "none met (p99 12.500 ms at - QPS)", "-", "-", "-", "76.00"]
    assert "nan" not in str(served_markdown([bad])).lower() and "inf" not in str(served_markdown([bad])).lower()
    assert str(served_markdown([timing_record()])) == "" and str(served_markdown([])) == ""


def test_the_gate_marks_rows_and_stream_scenarios_have_their_own_rows():
    recs = study() + [served("server", "tensorrt", "int8", peak_qps=9000.0, top1=74.0),
                      served("singlestream", "tensorrt", "int8", samples_per_s=900.0),
                      served("multistream", "tensorrt", "int8", samples_per_s=5000.0, loadgen_valid=False,
                             loadgen_invalid_reasons=["too few queries were answered"])]
    text = str(served_markdown(recs, max_top1_drop=1.0))
    rows = cells(text, "### resnet50")
    assert rows[0][-1] == "drop <= 1"
    assert {r[0]: r[-1] for r in rows[1:]} == {"Vanilla": "ok", "ONNX Runtime fp16": "no top-1", "TRT fp16": "ok",
                                               "TRT int8": "OVER"}
    assert cells(text, "SingleStream and MultiStream") == [
        ["runner", "scenario", "p50 (ms)", "p90 (ms)", "p99 (ms)", "samples/s", "top-1 (%)", "LoadGen"],
        ["TRT int8", "SingleStream", "3.000", "5.000", "12.500", "900.0", "76.00", "VALID"],
        ["TRT int8", "MultiStream (8 samples/query)", "3.000", "5.000", "12.500", "5000.0", "76.00",
         "INVALID (LoadGen: too few queries were answered)"]]


def test_latest_per_config_keeps_one_record_per_scenario_and_settings():
    old, new = served(time="2026-12-05T09:00:00+00:00", peak_qps=1.0), served(time="2026-12-05T10:00:00+00:00")
    tighter = served(settings={"latency_bound_ms": 10.0})
    kept = latest_per_config([old, new, served("offline"), tighter, timing_record(batch_size=32)])
    assert len(kept) == 4 and typed(old) not in kept and typed(new) in kept and typed(tighter) in kept
    text = str(served_markdown([new, tighter, served("offline")]))  # two bounds: a table each, Offline in both
    assert "### resnet50, Server at p99 <= 10 ms" in text and "### resnet50, Server at p99 <= 15 ms" in text
    assert cells(text, "<= 10 ms")[0][2] == "Server peak QPS (p99 <= 10 ms)"
    assert cells(text, "<= 10 ms")[1][1] == cells(text, "<= 15 ms")[1][1] == "2000.0"


def test_the_schema_types_the_serving_fields():
    check_record(served())
    check_record(served("offline"))
    for field, value, where in (("samples_per_s", math.nan, "samples_per_s"),
                                ("samples_per_s", "2000", "samples_per_s"), ("peak_qps", math.inf, "peak_qps"),
                                ("latency_ms", {"p99": math.nan}, "latency_ms.p99"),
                                ("latency_ms", {"p99": "12"}, "latency_ms.p99"), ("loadgen_valid", "yes", "loadgen_valid"),
                                ("loadgen_invalid_reasons", ["x" * 5000], "loadgen_invalid_reasons.0"),
                                ("peak_steps", [step(1.0, 1.0, True, 1.0, 2.0)] * 65, "peak_steps"),
                                ("serve_settings", {"percentile": 200.0}, "serve_settings.percentile"),
                                ("padded_batch_sizes", [-1], "padded_batch_sizes.0")):
        with pytest.raises(RecordError) as err:
            check_record(served(**{field: value}))
        assert err.value.field == where, field
    bad = served()
    bad["peak_steps"][1]["samples_per_s"] = math.nan
    with pytest.raises(RecordError) as err:
        check_record(bad)
    assert err.value.field == "peak_steps.1.samples_per_s"


def test_a_record_with_nan_samples_per_s_is_skipped_on_read(tmp_path, caplog):
    good = write(tmp_path, "good.json", served())
    nan = tmp_path / "records" / "nan.json"
    nan.write_text(json.dumps(served("offline")).replace('"samples_per_s": 2000.0', '"samples_per_s": NaN'))
    assert "NaN" in nan.read_text()
    assert read_record(nan) is None and read_record(good) is not None
    assert [r.path for r in load_records(tmp_path)] == [str(good)]
    assert any("nan.json" in m and "samples_per_s" in m for m in caplog.messages)


@pytest.mark.parametrize("text", [HOSTILE[0], HOSTILE[6], HOSTILE[9]])
def test_hostile_text_in_a_serving_record_is_escaped_in_the_report(tmp_path, text):
    out = tmp_path / "results"
    write(out, "a.json", served(network=text, loadgen_version=text))
    write(out, "b.json", served("offline", network=text, duration_note=text))
    write(out, "c.json", served(backend="onnxrt", network=text, peak_qps=None, loadgen_valid=False,
                                loadgen_invalid_reasons=[text], peak_stopped=text))
    make_report(out)
    page = (out / "report.html").read_text()
    assert_nothing_live(page)
    if text.startswith("<script>"):
        assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # the heading, a reason, version, note
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def _old_tables(out: Path) -> dict:
    return {p.name: p.read_text() for p in sorted((out / "table_outputs").iterdir()) if p.name != "served.md"}


def test_the_timing_tables_are_the_same_with_serving_records_beside_them(tmp_path):
    timing = [timing_record(batch_size=1), timing_record(batch_size=32, images_per_s=3000.0),
              timing_record(backend="tensorrt", precision="fp16", batch_size=32, images_per_s=9000.0, top1=69.5),
              timing_record(backend="onnxrt", precision="int8", batch_size=1, error="failed: boom", job_key="j9")]
    alone, both = tmp_path / "alone", tmp_path / "both"
    for i, r in enumerate(timing):
        write(alone, f"t{i}.json", r)
        write(both, f"t{i}.json", r)
    for i, r in enumerate(study()):  # resnet50's serving records as resnet18's, beside its timing; alexnet alone
        write(both, f"s{i}.json", {**r, "network": "resnet18" if r["network"] == "resnet50" else r["network"]})
    make_report(alone)
    wrote = make_report(both)
    assert _old_tables(alone) == _old_tables(both)  # worth-it, the network's tables, not-measured: unchanged
    names = sorted(p.name for p in (both / "table_outputs").iterdir())
    assert names == sorted([p.name for p in (alone / "table_outputs").iterdir()] + ["served.md"])
    assert {str(both / "plots" / f"serving-{n}.png") for n in ("resnet18", "alexnet")} <= set(wrote)
    page = (both / "report.html").read_text()
    assert page.index("Served within the budget") < page.index("Is TensorRT worth it?")
    assert page.index("latency against load") < page.index("Is TensorRT worth it?")
    assert "10 validation (9 shown; left out: 1 failed)" in page  # 3 timing rows and 6 serving rows shown
    ok = [r for r in load_records(both) if not r.error]
    assert str(worth_it_markdown(ok)) == str(worth_it_markdown([r for r in ok if r.role != "scenario"]))
    assert len(cells(results_table(timing_rows(latest_per_config(ok))))) == 1 + 3


def test_the_serving_curve_has_a_point_per_loadgen_run_in_the_order_of_target_qps(tmp_path):
    recs = study()
    series = as_read(plots.serving_points)(recs, "resnet50")
    assert [label for label, _, _ in series] == ["ONNX Runtime fp16", "TRT fp16", "Vanilla"]  # not alexnet's
    _, _, pts = series[2]
    assert pts == [(1150.0, 2.5, 8.0, True), (1490.0, 3.0, 12.5, True), (1650.0, 6.0, 22.0, False),
                   (1800.0, 9.0, 40.0, False)]  # target 1155 < 1500 < 1732 < 2310
    path = as_read(plots.serving_curve)(recs, "resnet50", tmp_path / "serving.png")
    assert path.is_file() and _not_blank(path)
    no_rate = served(peak_steps=[{**step(10.0, 9.0, False, 1.0, 2.0), "samples_per_s": None}])
    assert as_read(plots.serving_points)([no_rate], "resnet50") == []  # nothing to draw: the report draws no curve


def test_a_log_scale_labels_its_ticks_as_plain_numbers_never_as_mathtext():
    fig, ax = plots.plt.subplots()
    plots._log_if_wide(ax, [1.0, 60.0])
    assert ax.get_yscale() == "log"
    assert [ax.yaxis.get_major_formatter()(v, 0) for v in (2.0, 50.0, 1000.0)] == ["2", "50", "1000"]
    plots.plt.close(fig)


def test_a_loaded_host_marks_the_served_figures_unstable_as_timing_rows():
    calm = [served("offline", host_load_1m=0.5, host_cores=16), served(host_load_1m=0.5, host_cores=16)]
    busy = [served("offline", host_load_1m=40.0, host_cores=16), served(host_load_1m=40.0, host_cores=16)]
    assert cells(str(served_markdown(calm)), "### resnet50")[1][1:3] == ["2000.0", "1500.0"]
    assert cells(str(served_markdown(busy)), "### resnet50")[1][1:3] == ["2000.0 (unstable)", "1500.0 (unstable)"]
    stream = served("singlestream", host_load_1m=40.0, host_cores=16, samples_per_s=300.0)
    assert "300.0 (unstable)" in str(served_markdown([stream]))


def test_torchao_rows_take_their_place_in_the_served_and_worth_it_tables():
    """A backend's rows need no code of their own in the tables: torchao's served and timed rows, by the label its
    registry row gives them."""
    ao = served("offline", "torchao", "int8", samples_per_s=3000.0, options="dynamic activations")
    rows = {r[0]: r for r in cells(str(served_markdown([served("offline", samples_per_s=2000.0), ao])),
                                   "### resnet50")[1:]}
    assert rows["torchao int8 (dynamic activations)"][1] == "3000.0"
    timed = [{**served("offline", backend=b, precision=p, options=o), "role": "timing", "scenario": None,
              "batch_size": 256, "images_per_s": ips, "latency_model_p50": 10.0}
             for b, p, o, ips in (("torch", "fp32", "", 3000.0), ("torchao", "int8", "dynamic activations", 6000.0))]
    worth = {r[1]: r for r in cells(str(worth_it_markdown(timed)))[1:]}
    assert worth["torchao int8 (dynamic activations)"][2:4] == ["6000.0", "2.00x"]
