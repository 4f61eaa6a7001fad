"""main.py -v --inspect --profile: what lands in the record, the printed tables and the report."""
from __future__ import annotations

import pytest
import json
from pathlib import Path

import main
from tests.conftest import squeeze
from utils.core.errors import cli_boundary


def _records(folder):
    return {(r["backend"], r["precision"], r["batch_size"]): r  # the timed jobs (a sweep's accuracy pass aside)
            for r in (json.loads(p.read_text()) for p in (folder / "records").glob("*.json"))
            if r.get("role") != "accuracy"}


@pytest.mark.slow
def test_inspect_and_profile_through_main(demo_data, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data), "--output", str(out),
            "--quiet", "--inspect", "--profile"]
    assert main.main(base + ["--backend", "onnxrt", "--precision", "int8", "--calib_size", "20",
                             "--batch_size", "4"]) == 0
    assert main.main(base + ["--backend", "torch", "--batch_sizes", "1", "2"]) == 0
    assert main.main(base + ["--backend", "torch", "--batch_sizes", "1", "--sync"]) == 0  # a trace of its own
    printed = squeeze(capsys.readouterr().out)
    recs = _records(out)
    int8 = recs[("onnxrt", "int8", 4)]
    i = int8["inspect"]
    assert i["onnx"]["layers"] == 94 and i["onnx"]["precisions"] == {"int8": 49, "fp32": 45}
    assert i["onnx"]["qdq_layers"] == 49 and "engine" not in i
    assert int8["layers"] == 94  # the row's count is --inspect's (the QDQ file has 290 nodes)
    d = i["drift"]
    assert d["images"] == 8 and d["layers"] == 94 and 0.02 < d["output_relative_error"] < 0.5
    assert len(d["top_added"]) == 5 and all(t["op"] == "Conv" for t in d["top_added"])
    assert (out / "inspect" / (int8["onnx_file"].rsplit("/", 1)[1][:-5] + ".drift.md")).is_file()
    assert "one opaque call" in int8["profile"]["note"]  # ONNX Runtime on the CPU: nothing for the profiler
    # torch: a profile per batch size, layers once (there is no file to inspect: a note says so)
    every = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert all("profile" not in r for r in every if r.get("role") == "accuracy")  # profiled: timed jobs only
    traces = [r["profile"]["trace"] for r in every if "trace" in r.get("profile", {})]
    assert len(traces) == len(set(traces)) == 3 and all(Path(t).is_file() for t in traces)
    t1 = next(r for r in every if r["backend"] == "torch" and r["batch_size"] == 1 and r["mode"] == "pipelined")
    t2 = recs[("torch", "fp32", 2)]
    assert "no ONNX file or engine" in t1["inspect"]["note"] and "inspect" not in t2
    for r, bs in ((t1, 1), (t2, 2)):
        p = r["profile"]
        assert p["batch_size"] == bs and p["batches"] == 5 and (out / "profiles").joinpath(
            p["trace"].rsplit("/", 1)[1]).is_file()
        events = json.loads((out / "profiles" / p["trace"].rsplit("/", 1)[1]).read_text())["traceEvents"]
        assert [e.get("name") for e in events].count("aten::conv2d") == 49 * 5  # each Conv2d, each batch
    # printed after the tables, and on the report page
    assert "## Inside the models (--inspect)" in printed and "## Where the time goes (--profile, per batch)" in printed
    top = d["top_added"][0]
    assert f"| {top['name']} | Conv | {top['weight']} | {top['relative_error']:.4f} |" in printed
    page = (out / "report.html").read_text()
    assert "Inside the models" in page and "Where the time goes" in page and top["weight"] in page


def test_inspect_and_profile_need_a_validation(capsys):
    assert cli_boundary(main.main, ["--compare", "--inspect"]) == 2
    assert "--inspect and --profile look inside a validation run: add -v" in capsys.readouterr().err
