"""Records are checked on every read, the report escapes every text it did not write, and file names made from
record fields stay in the results folder: tampered, foreign and hostile records give a report or one warning,
never a traceback, a live element or a file outside. Property-based (Hypothesis) where the input is arbitrary."""
from __future__ import annotations

import copy
import json
import os
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import main
from tests.conftest import unchanged
from utils.report.records import load_records, read_record
from utils.report.report import STYLE, make_report
from utils.report.schema import Record, RecordError, check_record
from utils.report.schema_types import ENV_IDENTITY

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\" onmouseover=\"alert(1)", "' autofocus '",
           "[click](javascript:alert(1))", "![x](http://evil.example/x.png)", "</td></tr></table><iframe src=x>",
           "&lt;script&gt;", "$\\frac{1}{0", "| a | b |", "# heading", "**bold**", "`code`", "<!-- -->", "\x00\x07"]

# what the page itself writes: every element and attribute of a report is one of these
ALLOWED = {"html": set(), "head": set(), "meta": {"charset"}, "title": set(), "style": set(), "body": set(),
           "h1": set(), "h2": set(), "h3": set(), "h4": set(), "p": {"class"}, "strong": set(), "table": set(),
           "thead": set(), "tbody": set(), "tr": set(), "th": set(), "td": set(), "img": {"alt", "src"}}


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: List[tuple] = []
        self.style: List[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: List[tuple]) -> None:
        self.found.append((tag, attrs))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: List[tuple]) -> None:
        self.found.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style.append(data)

    def handle_comment(self, data: str) -> None:
        self.found.append(("<!--comment-->", []))


def assert_nothing_live(page: str) -> None:
    """No element, attribute or comment the report's template did not write; images only inline PNG data."""
    parser = Elements()
    parser.feed(page)
    for tag, attrs in parser.found:
        assert tag in ALLOWED, f"element {tag!r} in the report"
        for name, value in attrs:
            assert name in ALLOWED[tag], f"attribute {name}={value!r} on <{tag}>"
            if name == "src":
                assert value.startswith("data:image/png;base64,") and '"' not in value
        if tag == "p":
            assert all(v == "note" for n, v in attrs if n == "class")
    assert "".join(parser.style) == STYLE


def record(**over: Any) -> Dict[str, Any]:
    rec = {"record_version": 2, "kind": "validate", "time": "2026-12-02T10:00:00+00:00", "network": "resnet18",
           "backend": "torch", "precision": "fp32", "options": "", "batch_size": 1, "mode": "pipelined",
           "images_per_s": 100.0, "latency_model_p50": 1.0, "latency_model_p99": 1.2, "latency_model_mean": 1.0,
           "latency_model_max": 1.3, "latency_all_mean": 1.5, "latency_all_max": 2.0, "top1": 70.0, "top5": 90.0,
           "dataset": "/data/imagenet", "dataset_key": "k1", "images": 20, "weights": "random:seed0",
           "weights_id": "w1", "prepare_s": 0.5, "size_mib": 44.6, "layers": 68, "params": 11689512,
           "env": {"cpu": "some cpu", "torch": "2.14"}, "error": None, "command": "python main.py -v"}
    rec.update(over)
    return rec


def write(folder: Path, name: str, obj: Any) -> Path:
    p = folder / "records" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def hostile_folder(out: Path, text: str) -> None:
    """Records whose every text field (and a telemetry file's name) is `text`; a serving record among them."""
    recs = [record(network=text, backend="torch", options=text, dataset=text, weights=text, weights_id="w-" + text,
                   env={"cpu": text, "gpu": text, "torch": text}, command=text),
            record(network=text, backend=text, precision="fp16", batch_size=8, calib_method=text,
                   inspect={"onnx": {"layers": 3, "precisions": {text: 3}, "qdq_layers": 0},
                            "drift": {"images": 8, "output_relative_error": 0.1,
                                      "top_added": [{"name": text, "op": text, "weight": text,
                                                     "relative_error": 0.5, "added_error": 0.1}]}},
                   profile={"batch_size": 8, "wall_ms_per_batch": 2.0, "host_ops_ms_per_batch": 1.0,
                            "top_ops": [{"op": text, "calls_per_batch": 1.0, "self_cpu_ms_per_batch": 0.5}]}),
            record(network=text, backend="onnxrt", precision="int8", error=text, job_key="j-" + text[:20]),
            record(network=text, backend="tensorrt", precision="fp16", role="scenario", scenario="server", options=text,
                   serve_settings={"scenario": "server", "find_peak": True}, peak_search=text, peak_stopped=text,
                   loadgen_valid=False, loadgen_invalid_reasons=[text], loadgen_version=text, duration_note=text,
                   accuracy_error=text, latency_ms={"p99": 20.0}, peak_steps=[
                       {"target_qps": 10.0, "samples_per_s": 9.5, "loadgen_valid": False, "latency_ms": {"p50": 3.0,
                                                                                                      "p99": 20.0},
                        "loadgen_invalid_reasons": [text], "logs": text}]),
            {"record_version": 2, "kind": "compare", "time": "2026-12-02T11:00:00+00:00", "network": text,
             "reference": text, "backend": text, "precision": text, "inputs": 2, "rtol": 0.001, "atol": 1e-8,
             "isclose_percent": 50.0, "rank_mae": [0.1], "rank_logit_mae": [0.2], "rank_class_diff_percent": [0.0],
             "top1_agreement_percent": 100.0, "top5_overlap_percent": 100.0, "max_abs_error": 0.1, "flips": 0,
             "example_top10": [{"rank": 1, "ref_score": 0.5, "ref_class": 1, "other_score": 0.4, "other_class": 1,
                                "ref_label": text, "other_label": text}], "env": {"cpu": text}}]
    for i, r in enumerate(recs):
        write(out, f"r{i}.json", r)
    (out / "telemetry").mkdir(parents=True, exist_ok=True)
    safe = "".join(c for c in text if c not in "/\x00")[:80] or "x"
    (out / "telemetry" / f"telemetry-{safe}.csv").write_text(
        "t_s,label,phase,memory_used_mb,sm_util_percent,sm_clock_mhz,power_w\n"
        f"0.0,{json.dumps(text)},measure,100,50,1900,300\n0.1,x,measure,110,60,1900,310\n")


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE)
def test_a_report_of_hostile_names_has_nothing_live(tmp_path, text):
    out = tmp_path / "results"
    hostile_folder(out, text)
    make_report(out)
    page = (out / "report.html").read_text()
    assert_nothing_live(page)
    if text.startswith("<script>"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text, escaped where it stands


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=40))
def test_property_any_text_in_any_field_gives_a_report_with_nothing_live(tmp_path_factory, text):
    out = tmp_path_factory.mktemp("prop")
    hostile_folder(out, text)
    make_report(out)
    page = (out / "report.html").read_text()
    assert_nothing_live(page)
    assert "measured with" in page  # the first record's environment differs from the others': labelled
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_a_network_named_like_a_path_writes_nothing_outside_the_folder(tmp_path):
    beside = tmp_path / "README.md"
    beside.write_text("the user's own file\n")
    out = tmp_path / "project" / "results"
    write(out, "a.json", record(network="../../README"))
    write(out, "b.json", record(network="/etc/passwd", backend="onnxrt"))
    with unchanged(tmp_path / "README.md"):
        assert main.main(["--report", str(out)]) == 0
    assert not (tmp_path / "project" / "README.md").exists() and not (out / "README.md").exists()
    names = sorted(p.name for p in (out / "table_outputs").iterdir())
    assert all("/" not in n and not n.startswith(".") for n in names) and len(names) == 6  # 2 networks, worth-it, confidence
    assert any(n.startswith("README-") for n in names)  # a slug with a hash: never the path it spelt


BAD_RECORDS = {
    "bad-utf8.json": b'{"record_version": 2, "kind": "validate", "network": "\xff\xfe"}',
    "nan.json": json.dumps(record()).replace('"top1": 70.0', '"top1": NaN').encode(),
    "infinity.json": json.dumps(record()).replace('"images_per_s": 100.0', '"images_per_s": Infinity').encode(),
    "huge.json": json.dumps(record()).replace('"batch_size": 1', '"batch_size": ' + "9" * 400).encode(),
    "string-number.json": json.dumps(record(images_per_s="100")).encode(),
    "bool-batch.json": json.dumps(record(batch_size=True)).encode(),
    "list-env.json": json.dumps(record(env=[1, 2])).encode(),
    "no-kind.json": json.dumps({k: v for k, v in record().items() if k != "kind"}).encode(),
    "top1-200.json": json.dumps(record(top1=200.0)).encode(),
    "newer.json": json.dumps(record(record_version=99)).encode(),
    "deep.json": b'{"record_version": 2, "kind": "validate", "study_job": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "profile-wrong.json": json.dumps(record(profile={"wall_ms_per_batch": "x"})).encode(),
}


def test_tampered_records_are_skipped_with_one_warning_each_and_the_report_is_drawn(tmp_path, caplog, capsys):
    out = tmp_path / "results"
    good = write(out, "good.json", record())
    for name, data in BAD_RECORDS.items():
        (out / "records" / name).write_bytes(data)
    os.mkfifo(out / "records" / "fifo.json")  # would block a read forever
    done: List[int] = []
    t = threading.Thread(target=lambda: done.append(main.main(["--report", str(out)])), daemon=True)
    t.start()
    t.join(120)
    assert done == [0], "the report hung or failed"
    err = capsys.readouterr().err
    skipped = [ln[len("WARNING "):] for ln in err.splitlines() if ln.startswith("WARNING skipped ")]
    assert "Traceback" not in err
    for name in BAD_RECORDS:  # each gets its one warning, those that are not JSON at all too (issue 40)
        assert sum(name in m for m in skipped) == 1, (name, skipped)
    assert any("bad-utf8.json: a record that cannot be read (not UTF-8)" in m for m in skipped)
    assert any("deep.json: a record that cannot be read (nested too deep)" in m for m in skipped)
    assert any("nan.json" in m for m in skipped) and any("top1" in m for m in skipped if "top1-200" in m)
    assert any("batch_size" in m for m in skipped if "huge.json" in m)
    assert [r.path for r in load_records(out)] == [str(good)]
    assert "1 validation (1 shown) and 0 comparison (0 shown) records" in (out / "report.html").read_text()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                                                     max_size=4), max_leaves=20)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(sorted(record())), json_values, max_size=8),
       env=st.dictionaries(st.sampled_from([*ENV_IDENTITY, "host", "python"]), json_values, max_size=6),
       raw=st.binary(max_size=60))
def test_property_any_json_or_bytes_is_a_record_that_fits_or_none(tmp_path_factory, fields, env, raw):
    folder = tmp_path_factory.mktemp("rec")
    rec = {**record(), **fields}
    if isinstance(rec.get("env"), dict):  # another environment, of any values
        rec["env"] = {**rec["env"], **env}
    p = folder / "r.json"
    p.write_text(json.dumps(rec))
    got = read_record(p)
    try:
        check_record(json.loads(json.dumps(rec)))
        fits = all(not (isinstance(v, float) and v != v) for v in rec.values())  # NaN is no JSON number
    except RecordError:
        fits = False
    assert (got is not None) == fits
    (folder / "raw.json").write_bytes(raw)
    assert read_record(folder / "raw.json") is None or isinstance(read_record(folder / "raw.json"), Record)
    if got is not None:  # a record that fits goes into every table without a traceback
        out = tmp_path_factory.mktemp("rep")
        write(out, "a.json", rec)
        write(out, "b.json", record(backend="onnxrt"))
        make_report(out)
        assert_nothing_live((out / "report.html").read_text())


def test_records_the_code_writes_fit_the_schema_and_hold_no_nan(tmp_path):
    from utils.report.records import Recorder, make_record

    rec = Recorder(tmp_path).write(make_record("validate", "python main.py", network="n", backend="torch",
                                               precision="fp32", batch_size=1, latency_all_std=float("nan"),
                                               images_per_s=float("inf")))
    text = Path(rec.path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = read_record(Path(rec.path))
    assert back is not None and back.images_per_s is None and back.latency_all_std is None
    check_record(copy.deepcopy({k: v for k, v in back.as_dict().items() if k != "_path"}))


LOADGEN_KEYS = ["result_validity", "result_perf_constraints_met", "result_min_duration_met", "result_min_queries_met",
                "early_stopping_met", "early_stopping_result", "result_invalid_reason", "result_query_count",
                "result_completed_samples_per_sec", "result_samples_per_second", "result_scheduled_samples_per_sec",
                "result_99.00_percentile_latency_ns", "result_mean_latency_ns", "effective_samples_per_query",
                "result_mean_query_latency_ns", "result_overlatency_query_count"]


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.dictionaries(st.sampled_from(LOADGEN_KEYS), json_values, max_size=12),
       junk=st.lists(st.text(max_size=40), max_size=5), scenario=st.sampled_from(["offline", "server", "singlestream",
                                                                                   "multistream"]))
def test_property_any_loadgen_detail_log_reads_as_a_verdict_and_a_record_that_fits(tmp_path_factory, items, junk,
                                                                                    scenario):
    """Issue 40: whatever LoadGen's detail log holds (any value under its keys, lines that are not its own), it reads
    as one of LoadGen's verdicts and figures a record can hold; too few queries is never a missed bound."""
    from utils.measure.loadgen_logs import OVER_BOUND, TOO_FEW, VALID, read_detail, summarize, too_few_queries

    folder = tmp_path_factory.mktemp("lg")
    lines = [":::MLLOG " + json.dumps({"key": k, "value": v, "metadata": {}}) for k, v in items.items()] + junk
    (folder / "mlperf_log_detail.txt").write_text("\n".join(lines))
    res = summarize(read_detail(folder / "mlperf_log_detail.txt"), scenario)
    assert res["loadgen_verdict"] in (VALID, OVER_BOUND, TOO_FEW, "invalid")
    assert (res["loadgen_verdict"] == VALID) == (items.get("result_validity") == "VALID") == res["loadgen_valid"]
    if items.get("result_perf_constraints_met") is False and not res["loadgen_valid"]:
        assert not too_few_queries(res) and res["loadgen_verdict"] == OVER_BOUND
    rec = record(role="scenario", scenario=scenario, **{k: v for k, v in res.items()})
    try:
        check_record(json.loads(json.dumps(rec)))
    except RecordError as err:  # only a figure LoadGen would never write (negative, or not a number) is refused
        assert any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items.values()), err
