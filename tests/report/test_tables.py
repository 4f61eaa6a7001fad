"""Every table, cell by cell, from hand-made records: number formats, which record is shown, the dataset and
weights columns, the sort order, the headings, the comparison tables and the CSV of flips."""
from __future__ import annotations

import math

import pytest
import torch

from tests.report import R
from utils.backends.registry import SIDE_BY_SIDE_ROWS
from utils.measure.compare import CompareStats
from utils.report.doc import fmt, table
from utils.report.schema import typed
from utils.report.sections.cells import accuracy, row_notes, size_mib
from utils.report.sections.compare_tables import compare_columns_markdown, compare_groups, compare_markdown, flips_csv
from utils.report.sections.inspect_tables import inspect_markdown, profile_markdown
from utils.report.sections.results_tables import (percentile_table, results_table, side_by_side_markdown,
                                                  summary_markdown)
from utils.report.sections.worth_it_tables import not_measured_markdown, worth_it_markdown
from utils.report.select import (dataset_of, identity_columns, latest_compares, latest_per_config, over_top1_drop,
                                 random_weights, row_sort_key, study_order, top1_drops, unstable_reason)
from utils.report.terminal import fit_terminal, terminal_width

ENV = {"gpu": "NVIDIA H200", "cpu": "Xeon", "torch": "2.11", "onnxruntime": "1.30", "tensorrt": None}


def cells(text: str, heading: str = "") -> list:
    """The rows of the first Markdown table after `heading`, as lists of stripped cells (separator dropped)."""
    lines = text.split(heading, 1)[1].splitlines() if heading else text.splitlines()
    rows, started = [], False
    for ln in lines:
        if ln.startswith("|"):
            started = True
            if not set(ln) <= set("|-: "):
                rows.append([c.strip() for c in ln.strip()[1:-1].split("|")])
        elif started:
            break
    return rows


def from_header(text: str, start: str) -> list:
    """The rows of the table whose header line starts with `start`."""
    lines = text.splitlines()
    return cells("\n".join(lines[next(i for i, ln in enumerate(lines) if ln.startswith(start)):]))


def rec(**kw):
    base = {"kind": "validate", "record_version": 1, "network": "resnet18", "backend": "torch", "precision": "fp32",
            "options": "", "batch_size": 1, "mode": "pipelined", "dataset": "/data/imagenet/", "dataset_key": "k1",
            "images": 50000, "weights": "torchvision", "env": ENV, "time": "2026-11-29T04:00:00+00:00",
            "error": None}
    base.update(kw)
    if base["kind"] == "compare":
        base.setdefault("reference", "torch-fp32")
    if base["batch_size"] is None:  # never read from a file (the schema refuses it): a record made in memory
        return typed({**base, "batch_size": 1}).model_copy(update={"batch_size": None})
    return typed(base)


def test_number_formats():
    assert [fmt(v) for v in (None, math.nan, 1.23456, 9999, 10000, -12345, "x", 3)] == \
        ["-", "-", "1.23", "9999", "10,000", "-12,345", "x", "3"]
    assert fmt(1.23456, 3) == "1.235" and fmt(2.0, 1) == "2.0"
    assert size_mib(rec(size_mib=44.5912)) == "44.59" and size_mib(rec(size_mb=100.0)) == "95.37"
    assert size_mib(rec(size_mib=1.0, size_mb=100.0)) == "1.00" and size_mib(rec()) == "-"
    assert accuracy(rec(top1=12.0, weights="random (seed 0)"), "top1") == "12.00 (random weights)"
    assert accuracy(rec(top1=69.758, weights="torchvision"), "top1") == "69.76"
    assert accuracy(rec(top5=None), "top5") == "-" and accuracy(rec(top1=1.0, weights=None), "top1") == "1.00"
    assert dataset_of(R({"dataset": "/data/imagenet/", "images": 50000})) == "imagenet (50000 img)"
    assert dataset_of(R({"dataset": "demo"})) == "demo" and dataset_of(R({})) == "?"


def test_identity_columns_only_where_records_differ():
    a = rec()
    assert identity_columns([a, rec(backend="onnxrt")]) == []
    cols = identity_columns([a, rec(dataset="/x/demo", dataset_key="k2", images=20)])
    assert [h for h, _ in cols] == ["dataset"] and cols[0][1](a) == "imagenet (50000 img)"
    assert [h for h, _ in identity_columns([a, rec(images=100)])] == ["dataset"]  # same folder, fewer images
    cols = identity_columns([a, rec(weights="random (seed 0)")])
    assert [h for h, _ in cols] == ["weights"] and cols[0][1](a) == "torchvision"
    assert identity_columns([rec(weights="w", weights_id="same"), rec(weights="v", weights_id="same")]) == []


FULL = dict(latency_all_mean=1.23456, latency_all_max=2.0, latency_model_mean=1.0, latency_model_max=1.5,
            images_per_s=812.345, size_mib=44.5912, top1=69.758, top5=89.078, layers=60, params=11689512,
            latency_model_p50=0.9, latency_model_p90=1.1, latency_model_p99=1.4, latency_all_p50=1.2,
            latency_all_p90=1.5, latency_all_p99=1.9, latency_model_cv_percent=3.21, latency_all_cv_percent=1.5,
            latency_all_batches=100, prepare_s=12.34)


def test_results_and_percentile_tables_cell_by_cell():
    a = rec(**FULL)
    b = rec(backend="onnxrt", precision="fp16", options="cuda", dataset="/x/demo", dataset_key="k2", images=20,
            weights="random (seed 0)", top1=5.0)
    rows = cells(results_table([a, b]))
    assert rows[0] == ["network", "backend", "batch", "dataset", "weights", "Latency-all mean / max (ms)",
                       "Latency-model mean / max (ms)", "images/s", "size (MiB)", "top-1 (%)", "top-5 (%)", "layers",
                       "parameters"]
    assert rows[1] == ["resnet18", "Vanilla", "1", "imagenet (50000 img)", "torchvision", "1.235 / 2.000",
                       "1.000 / 1.500", "812.3", "44.59", "69.76", "89.08", "60", "11,689,512"]
    assert rows[2] == ["resnet18", "ONNX Runtime fp16 (cuda)", "1", "demo (20 img)", "random (seed 0)", "- / -",
                       "- / -", "-", "-", "5.00 (random weights)", "-", "-", "-"]
    p = cells(percentile_table([a]))
    assert p[0] == ["backend", "batch", "mode", "model p50 / p90 / p99 (ms)", "all p50 / p90 / p99 (ms)",
                    "model CV (%)", "all CV (%)", "timed batches"]
    assert p[1] == ["Vanilla", "1", "pipelined", "0.900 / 1.100 / 1.400", "1.200 / 1.500 / 1.900", "3.21", "1.50",
                    "100"]


def test_the_newest_record_of_each_setup_and_never_a_failed_one():
    old, new = rec(images_per_s=1.0), rec(images_per_s=2.0, time="2026-11-29T05:00:00+00:00")
    failed = rec(images_per_s=3.0, error="crashed")
    other_mode, other_data = rec(mode="sync"), rec(dataset_key="k9")
    other_weights, other_bs = rec(weights_id="w2"), rec(batch_size=8)
    assert latest_per_config([old, new, failed]) == [new]
    assert len(latest_per_config([old, other_mode, other_data, other_weights, other_bs])) == 5
    assert latest_per_config([rec(dataset="a", dataset_key=None), rec(dataset="b", dataset_key=None)]) != \
        latest_per_config([rec(dataset="a", dataset_key=None)])


def test_summary_sections_per_batch_size_in_backend_order():
    recs = [rec(backend="tensorrt", precision="int8", batch_size=256, **FULL),
            rec(backend="torch", precision="fp16", batch_size=256, images_per_s=5.0),
            rec(backend="torch", batch_size=256, images_per_s=4.0),
            rec(batch_size=1, images_per_s=3.0),
            rec(network="other", batch_size=1), rec(kind="compare", batch_size=1, reference="torch-fp32")]
    text = summary_markdown("resnet18", recs)
    lines = text.splitlines()
    assert lines[:3] == ["# resnet18", "", "Measured on NVIDIA H200, torch 2.11, ONNX Runtime 1.30, TensorRT not "
                                           "installed."]
    assert text.index("## Batch size 1") < text.index("## Batch size 256") and text.endswith("\n")
    rows = cells(text, "## Batch size 256")
    assert rows[0] == ["", "Latency-all mean / max (ms)", "Latency-model mean / max (ms)", "images/s", "size (MiB)",
                       "top-1 (%)", "top-5 (%)", "layers", "parameters", "prepare (s)"]
    assert [r[0] for r in rows[1:]] == ["Vanilla", "Vanilla fp16", "TRT int8"]
    assert rows[3] == ["TRT int8", "1.235 / 2.000", "1.000 / 1.500", "812.3", "44.59", "69.76", "89.08", "60",
                       "11,689,512", "12.34"]
    assert [r[0] for r in cells(text, "## Batch size 1")[1:]] == ["Vanilla"]
    percentiles = cells(text.split("## Batch size 256")[1], "Percentiles:")
    assert [r[0] for r in percentiles[1:]] == ["Vanilla", "Vanilla fp16", "TRT int8"]
    rtx = summary_markdown("resnet18", [rec(env={**ENV, "gpu": None, "tensorrt": "10.16", "tensorrt_rtx": "1.7"})])
    assert "Measured on Xeon, torch 2.11, ONNX Runtime 1.30, TensorRT 10.16, TensorRT-RTX 1.7." in rtx
    assert "Measured on ?, torch None" in summary_markdown("none", [])


def test_side_by_side_rows_and_what_was_not_measured():
    recs = [rec(batch_size=1, images_per_s=100.0, latency_model_p50=1.0, latency_model_p99=2.0, top1=70.0),
            rec(batch_size=256, images_per_s=2000.0, prepare_s=3.0),
            rec(backend="tensorrt", precision="int8", batch_size=256, images_per_s=9000.0, prepare_s=40.0, top1=69.0),
            rec(backend="tensorrt", precision="fp16", batch_size=1, images_per_s=500.0, prepare_s=30.0,
                latency_model_p50=0.2, latency_model_p99=0.3, top1=70.1)]
    text = side_by_side_markdown("resnet18", recs)
    assert text.startswith("# resnet18: is TensorRT worth it?\n\n") and text.endswith(".\n")
    rows = cells(text)
    assert rows[0] == ["backend", "images/s @ 1", "images/s @ 256", "latency-model p50 / p99 @ 1 (ms)", "top-1 (%)",
                       "prepare (s)"]
    assert rows[1:] == [["Vanilla", "100.0", "2000.0", "1.000 / 2.000", "70.00", "3.0"],
                        ["TRT fp16", "500.0", "-", "0.200 / 0.300", "70.10", "30.0"],
                        ["TRT int8", "-", "9000.0", "-", "69.00", "40.0"]]
    assert text.rstrip().endswith("Not measured in these records: torch fp16, compile fp16, onnxrt fp16.")
    custom = side_by_side_markdown("resnet18", recs, small=256, large=1)
    assert cells(custom)[1][:3] == ["Vanilla", "2000.0", "100.0"]
    at_ten = side_by_side_markdown("resnet18", [rec(batch_size=10, images_per_s=900.0, latency_model_p50=3.0,
                                                    latency_model_p99=4.0), rec(batch_size=4, images_per_s=400.0,
                                                                                latency_model_p50=2.0,
                                                                                latency_model_p99=2.5)])
    assert cells(at_ten)[0][1:4] == ["images/s @ 4", "images/s @ 10", "latency-model p50 / p99 @ 4 (ms)"]
    assert cells(at_ten)[1][:4] == ["Vanilla", "400.0", "900.0", "2.000 / 2.500"]  # the batches measured, not 1/256
    everything = [rec(backend=b, precision=p) for b, p in SIDE_BY_SIDE_ROWS]
    assert "Not measured" not in side_by_side_markdown("resnet18", everything)


def _stats():
    s = CompareStats(1e-3, 1e-8, class_names=["tench", "goldfish", "shark"])
    ref = torch.tensor([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    other = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 1.0]])
    s.update(ref, other, torch.tensor([1, -1]), ["a.jpg", "b.jpg"])
    return s


def test_the_comparison_tables():
    s = _stats()
    text = compare_markdown(s, "torch-fp32", "onnxrt-int8")
    lines = text.splitlines()
    assert lines[0] == "## Comparisons: onnxrt-int8 against torch-fp32 (2 inputs)"
    assert lines[2] == "Output values equal under numpy.isclose (rtol=0.001, atol=1e-08): **66.67 %**"
    ranks = cells(text)
    assert ranks[0] == ["rank", "score MAE (logits)", "score MAE (probabilities)", "class differs (%)"]
    summ = s.summary()
    assert ranks[1] == ["1", f"{summ['rank_logit_mae'][0]:.3e}", f"{summ['rank_mae'][0]:.3e}", "50.00"]
    assert [r[0] for r in ranks[1:]] == ["1", "2", "3"]
    top = cells(text, "Top-10 of the first input:")
    assert top[0] == ["torch-fp32 score", "torch-fp32 label", "onnxrt-int8 score", "onnxrt-int8 label"]
    p = torch.softmax(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64), 0)
    assert top[1][:2] == [f"{float(p[0]):.5f}", "0 tench"] and top[1][3] == "1 goldfish"
    figures = from_header(text, "| top-1 agreement")
    assert figures[0] == ["top-1 agreement (%)", "top-5 overlap (%)", "max abs error", "relative L2 error", "flips"]
    assert figures[1] == ["50.00", "100.00", "2.000e+00", f"{summ['rel_l2_error']:.3e}", "1"]
    assert lines[-1] == ("On 1 labelled images: top-1 0.00 % (torch-fp32) vs 100.00 % (onnxrt-int8); flips "
                         "right->wrong 0, wrong->right 1.")
    unlabelled = CompareStats(0, 0)
    unlabelled.update(torch.zeros((1, 2)), torch.ones((1, 2)), torch.tensor([-1]), ["z"])
    assert "labelled images" not in compare_markdown(unlabelled, "a", "b")
    assert from_header(compare_markdown(unlabelled, "a", "b"), "| top-1 agreement")[1][3] == "-"


def test_the_flips_csv():
    s = _stats()
    p = torch.softmax(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64), 0)
    q = torch.softmax(torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), 0)
    assert flips_csv(s).splitlines() == ["file,true_class,ref_class,ref_score,other_class,other_score",
                                           f"a.jpg,1 goldfish,0 tench,{float(p[0]):.6f},1 goldfish,{float(q[1]):.6f}"]
    s.flips[0]["true_class"] = None
    assert flips_csv(s).splitlines()[1].startswith("a.jpg,,0 tench,")


def _summary(mae, isclose=99.0, flips=1):
    return {"inputs": 20, "rank_mae": mae, "rank_logit_mae": [m * 10 for m in mae],
            "rank_class_diff_percent": [5.0 * (i + 1) for i in range(len(mae))], "isclose_percent": isclose,
            "top1_agreement_percent": 95.0, "top5_overlap_percent": 97.5, "max_abs_error": 0.25, "flips": flips}


def test_the_columns_table_of_several_runners():
    text = compare_columns_markdown([("onnxrt-fp16", _summary([0.001, 0.002])),
                                       ("onnxrt-int8", _summary([0.01], isclose=50.0, flips=3))], "torch-fp32", "net")
    assert text.startswith("## net: comparisons against torch-fp32 (20 inputs)\n") and text.endswith("\n")
    assert cells(text, "Score MAE at each rank, logits:") == [["rank", "onnxrt-fp16", "onnxrt-int8"],
                                                              ["1", "1.000e-02", "1.000e-01"], ["2", "2.000e-02", "-"]]
    assert cells(text, "Score MAE at each rank, probabilities:")[1:] == [["1", "1.000e-03", "1.000e-02"],
                                                                         ["2", "2.000e-03", "-"]]
    assert cells(text, "Class differs at each rank (%):")[1:] == [["1", "5.00", "5.00"], ["2", "10.00", "-"]]
    summary = from_header(text, "|                     | onnxrt-fp16")
    assert summary == [["", "onnxrt-fp16", "onnxrt-int8"], ["isclose (%)", "99.00", "50.00"],
                       ["top-1 agreement (%)", "95.00", "95.00"], ["top-5 overlap (%)", "97.50", "97.50"],
                       ["max abs error", "2.500e-01", "2.500e-01"], ["NaN/Inf outputs", "0", "0"],
                       ["flips", "1", "3"]]


def _compare_rec(backend, precision, time="2026-11-29T04:00:00+00:00", **kw):
    r = {"kind": "compare", "network": "net", "weights": "w", "reference": "torch-fp32", "backend": backend,
         "precision": precision, "inputs_source": "random", "dataset": None, "inputs": 20, "batch_size": 4,
         "time": time, "record_version": 2, **_summary([0.1])}
    r.update(kw)
    return typed(r)


def test_comparisons_are_grouped_like_the_original_and_only_the_latest_counts():
    recs = [_compare_rec("onnxrt", "int8", isclose=1.0), _compare_rec("onnxrt", "fp32"),
            _compare_rec("onnxrt", "fp16"), _compare_rec("onnxrt", "int8", time="2026-11-29T05:00:00+00:00",
                                                         isclose_percent=42.0),
            _compare_rec("compile", "fp16"), _compare_rec("onnxrt", "fp16", network="alone"),
            _compare_rec("onnxrt", "fp16", inputs=50), _compare_rec("onnxrt", "fp32", inputs=50)]
    latest = latest_compares(recs)
    assert len(latest) == 7 and [r.isclose_percent for r in latest if r.precision == "int8"] == [42.0]
    groups = compare_groups(recs)
    assert len(groups) == 2  # 20 inputs (four runners) and 50 inputs (two); "alone" has one runner
    names = cells(groups[0], "Score MAE at each rank, logits:")[0]
    assert names == ["rank", "torch.compile fp16", "ONNX Runtime fp32", "ONNX Runtime fp16", "ONNX Runtime int8"]
    assert from_header(groups[0], "|  ")[1][-1] == "42.00"  # the summary table: isclose of the newest int8
    assert groups[1].startswith("## net: comparisons against Vanilla (50 inputs)")
    options = [_compare_rec("onnxrt", "fp16", other_facts={"options": "cpu"}),
               _compare_rec("onnxrt", "fp16", other_facts={"options": "cuda"})]
    assert len(latest_compares(options)) == 2


def test_inside_tables_and_profiles():
    assert inspect_markdown([rec()]) == "" and profile_markdown([rec(profile={"note": "cpu"})]) == ""
    drift = {"images": 8, "output_relative_error": 0.17712, "top_added": [
        {"name": "node_Conv_825", "op": "Conv", "weight": "_blocks.5", "relative_error": 0.17691, "added_error": 0.0966}]}
    r = rec(backend="onnxrt", precision="int8", inspect={
        "onnx": {"layers": 70, "precisions": {"int8": 60, "fp32": 10}, "qdq_layers": 60},
        "engine": {"layers": 50, "precisions": {"Int8": 45, "Float": 5}}, "drift": drift})
    plain = rec(inspect={"onnx": {"layers": 70, "precisions": None}, "note": "no engine: not TensorRT"})
    text = inspect_markdown([r, plain, rec(kind="compare", inspect={}, reference="torch-fp32")])
    assert text.startswith("## Inside the models (--inspect)\n")
    rows = cells(text)
    assert rows[0] == ["network", "runner", "ONNX layers", "ONNX layers by precision", "Q/DQ layers", "engine layers",
                       "engine layers by precision", "output drift (rel. L2)"]
    assert rows[1] == ["resnet18", "ONNX Runtime int8", "70", "int8 60, fp32 10", "60", "50", "Int8 45, Float 5",
                       "0.1771"]
    assert rows[2] == ["resnet18", "Vanilla", "70", "-", "-", "-", "-", "no engine: not TensorRT"]
    assert cells(text, "### Per-layer drift: ONNX Runtime int8 against fp32 (8 calibration images)") == [
        ["layer", "op", "weight", "relative error", "added error"],
        ["node_Conv_825", "Conv", "_blocks.5", "0.1769", "+0.0966"]]
    ops = [{"op": f"op{i}", "calls_per_batch": 53.0, "self_cpu_ms_per_batch": 0.0, "self_gpu_ms_per_batch": 0.5 - i / 10}
           for i in range(6)]
    prof = rec(profile={"batch_size": 1, "wall_ms_per_batch": 7.399, "host_ops_ms_per_batch": 5.787,
                        "gpu_kernels_ms_per_batch": 0.741, "host_wait_ms_per_batch": 0.025, "top_ops": ops})
    text = profile_markdown([prof])
    assert text.startswith("## Where the time goes (--profile, per batch)\n\nWall time well above GPU kernel time: "
                           "the host sets the pace.")  # GPU kernels were timed: a GPU's words
    assert cells(text) == [["network", "runner", "batch", "wall (ms)", "host in operators (ms)", "GPU kernels (ms)",
                            "host waiting (ms)"], ["resnet18", "Vanilla", "1", "7.399", "5.787", "0.741", "0.025"]]
    top = cells(text, "### Top operators: Vanilla, batch 1 (per batch)")
    assert top[0] == ["operator", "calls", "self CPU (ms)", "self GPU (ms)"] and len(top) == 6  # the top five
    assert top[1] == ["op0", "53.0", "0.000", "0.500"]


def test_rows_sort_by_backend_then_precision_then_options():
    recs = [rec(backend="tensorrt", precision="fp16"), rec(backend="x", precision="fp32"),
            rec(backend="torch", precision="int8"), rec(backend="torch", precision="fp16", options="b"),
            rec(backend="torch", precision="fp16", options="a"), rec(backend="torch", precision="zz")]
    order = sorted(recs, key=row_sort_key)
    assert [(r.backend, r.precision, r.options) for r in order] == [
        ("torch", "fp16", "a"), ("torch", "fp16", "b"), ("torch", "int8", ""), ("torch", "zz", ""),
        ("tensorrt", "fp16", ""), ("x", "fp32", "")]


@pytest.mark.parametrize("header, rows, expected", [(["a", "b"], [[1.5, None]], [["a", "b"], ["1.50", "-"]])])
def test_markdown_formats_every_cell(header, rows, expected):
    assert cells(table(header, rows)) == expected


def skeleton(text: str) -> list:
    """The lines of a document that are not table rows: headings, sentences and the blank lines between."""
    return [ln for ln in text.splitlines() if not ln.startswith("|")]


def test_document_layouts_line_by_line():
    s = _stats()
    assert skeleton(compare_markdown(s, "torch-fp32", "onnxrt-int8")) == [
        "## Comparisons: onnxrt-int8 against torch-fp32 (2 inputs)", "",
        "Output values equal under numpy.isclose (rtol=0.001, atol=1e-08): **66.67 %**", "", "",
        "Top-10 of the first input:", "", "", "",
        "On 1 labelled images: top-1 0.00 % (torch-fp32) vs 100.00 % (onnxrt-int8); flips right->wrong 0, "
        "wrong->right 1."]
    cols = compare_columns_markdown([("a-fp16", _summary([0.1])), ("a-int8", {**_summary([0.2]), "inputs": 30})],
                                      "torch-fp32", "net")
    assert skeleton(cols) == ["## net: comparisons against torch-fp32 (20 inputs)", "",
                              "Score MAE at each rank, logits:", "", "", "Score MAE at each rank, probabilities:", "",
                              "", "Class differs at each rank (%):", "", ""]
    two = [rec(**FULL), rec(backend="onnxrt", **FULL)]
    assert skeleton(summary_markdown("resnet18", two)) == [
        "# resnet18", "", "Measured on NVIDIA H200, torch 2.11, ONNX Runtime 1.30, TensorRT not installed.", "",
        "## Batch size 1", "", "", "Percentiles:", ""]
    drift = {"images": 8, "output_relative_error": 0.1, "top_added": [
        {"name": "n1", "op": "Conv", "relative_error": 0.1, "added_error": 0.05}]}
    recs = [rec(inspect={"onnx": {"layers": 3}, "drift": drift}),
            rec(backend="onnxrt", inspect={"onnx": {"layers": 3}, "drift": drift}), rec(inspect={})]
    text = inspect_markdown(recs)
    assert skeleton(text) == ["## Inside the models (--inspect)", "", "",
                              "### Per-layer drift: Vanilla against fp32 (8 calibration images)", "", "",
                              "### Per-layer drift: ONNX Runtime fp32 against fp32 (8 calibration images)", ""]
    assert text.endswith("|\n")  # the last table, then the end
    assert cells(text)[3][-1] == "-"  # inspected, no drift and no note
    assert cells(text, "### Per-layer drift: Vanilla")[1] == ["n1", "Conv", "", "0.1000", "+0.0500"]  # no weight
    ops = [{"op": "k", "calls_per_batch": 1.0, "self_cpu_ms_per_batch": 0.1}]
    prof = {"batch_size": 1, "wall_ms_per_batch": 1.0, "host_ops_ms_per_batch": 0.5, "top_ops": ops}
    text = profile_markdown([rec(profile=dict(prof, batch_size=8)), rec(backend="onnxrt", profile=prof),
                               rec(profile=prof)])
    assert skeleton(text) == [  # on the CPU no GPU is said to be there; each runner's batches in order
        "## Where the time goes (--profile, per batch)", "",
        "On the CPU the operators are the work: wall time above operator time is the framework's own cost. Profiled "
        "batches run synchronised and carry the profiler's own cost (host time most): read the shares; the latencies "
        "above are the timed figures.", "",
        "", "### Top operators: ONNX Runtime fp32, batch 1 (per batch)", "", "",
        "### Top operators: Vanilla, batch 1 (per batch)", "", "", "### Top operators: Vanilla, batch 8 (per batch)", ""]
    assert text.endswith("|\n")
    assert cells(text)[1][-2:] == ["-", "-"]  # no GPU figures on the CPU


def test_more_edges_of_the_cells():
    assert dataset_of(rec(dataset="/data/imagenet-ABX/", images=None)) == "imagenet-ABX"
    assert size_mib(rec(size_mb=1e6)) == "953674.32"
    assert not random_weights(rec(weights=None)) and random_weights(rec(weights="random (seed 3)"))
    no_options = typed({k: v for k, v in rec().as_dict().items() if k != "options"})
    assert sorted([rec(options="A"), no_options], key=row_sort_key)[0] is no_options
    a, b = rec(dataset_key="k1", images=20), rec(dataset="/x/other", dataset_key="k2", images=20)
    side = side_by_side_markdown("resnet18", [a, b])  # two datasets: a dataset column, one row each
    assert [r[:2] for r in cells(side)[1:]] == [["Vanilla", "imagenet (20 img)"], ["Vanilla", "other (20 img)"]]
    assert cells(side)[1][-1] == "0.0"  # no preparation recorded: nothing spent
    summ = summary_markdown("resnet18", [a, b])
    assert [r[:2] for r in cells(summ, "## Batch size 1")[1:]] == [["Vanilla", "imagenet (20 img)"],
                                                                   ["Vanilla", "other (20 img)"]]


def test_which_records_are_the_same_setup():
    failed_first = [rec(error="boom", images_per_s=1.0, time="1"), rec(images_per_s=2.0, time="2"),
                    rec(network="other", time="3")]
    assert [r.images_per_s for r in latest_per_config(failed_first) if r.network == "resnet18"] == [2.0]
    by_folder = [rec(dataset_key=None, dataset="a"), rec(dataset_key=None, dataset="b")]
    assert len(latest_per_config(by_folder)) == 2
    by_weights = [rec(weights_id=None, weights="a"), rec(weights_id=None, weights="b")]
    assert len(latest_per_config(by_weights)) == 2
    same_id = [rec(weights_id="x", weights="a"), rec(weights_id="x", weights="b")]
    assert len(latest_per_config(same_id)) == 1
    base = _compare_rec("onnxrt", "fp16")
    for field, value in (("weights", "w2"), ("reference", "torch-fp16"), ("inputs_source", "dataset"),
                         ("dataset", "/d"), ("batch_size", 8)):
        assert len(latest_compares([base, base.with_fields(**{field: value})])) == 2, field
    assert len(latest_compares([base.with_fields(other_facts={}), base.with_fields(other_facts={"options": ""})])) == 1
    for field, value in (("weights", "w2"), ("inputs_source", "dataset"), ("dataset", "/d")):
        pair = [_compare_rec("onnxrt", "fp16"), _compare_rec("onnxrt", "int8", **{field: value})]
        assert compare_groups(pair) == [], field  # not the same inputs or weights: no shared table
    odd = [_compare_rec("onnxrt", "fp16"), _compare_rec("onnxrt", "int4"), _compare_rec("onnxrt", "fp32")]
    names = cells(compare_groups(odd)[0], "Score MAE at each rank, logits:")[0]
    assert names == ["rank", "ONNX Runtime fp32", "ONNX Runtime fp16", "ONNX Runtime int4"]  # unknown precision: last


def test_a_record_without_a_batch_size_comes_first():
    text = summary_markdown("resnet18", [rec(batch_size=1), rec(batch_size=None, backend="onnxrt")])
    assert text.index("## Batch size None") < text.index("## Batch size 1")


# --- the study's tables ----------------------------------------------------------------------------------------

def _study_records():
    """resnet18: PyTorch fp32 (the reference) and ONNX Runtime int8 at batch 1 and 256, with an accuracy pass;
    mobilenet_v2: PyTorch fp32 only."""
    out = []
    for net, backend, precision, top1, ips, p50, key in (
            ("resnet18", "torch", "fp32", 70.0, (400.0, 8000.0), (2.0, 30.0), "s-ref"),
            ("resnet18", "onnxrt", "int8", 67.5, (1000.0, 32000.0), (0.5, 8.0), "s-int8"),
            ("mobilenet_v2", "torch", "fp32", 71.0, (300.0, 9000.0), (3.0, 25.0), "s-mb")):
        for bs, i, p in ((1, ips[0], p50[0]), (256, ips[1], p50[1])):
            out.append(rec(network=net, backend=backend, precision=precision, batch_size=bs, top1=top1, role="timing",
                           images_per_s=i, latency_model_p50=p, setup_key=key, weights_id="w-" + net))
        out.append(rec(network=net, backend=backend, precision=precision, batch_size=256, top1=top1, role="accuracy",
                       images_per_s=1.0, setup_key=key, weights_id="w-" + net, time="2026-11-29T03:00:00+00:00",
                       agree_top1_percent=100.0 if backend == "torch" else 96.25))
    return out


def test_worth_it_across_networks_cell_by_cell():
    text = worth_it_markdown(_study_records(), max_drop=2.0)
    assert text.startswith("# Is TensorRT worth it? Every network\n")
    rows = cells(text)
    assert rows[0] == ["network", "runner", "images/s @ largest batch", "x Vanilla (images/s)",
                       "latency-model p50 @ smallest (ms)", "x Vanilla (latency)", "top-1 (%)", "top-1 drop (points)",
                       "same top-1 as Vanilla (%)", "drop <= 2"]
    assert rows[1:] == [
        ["mobilenet_v2", "Vanilla", "9000.0", "1.00x", "3.000", "1.00x", "71.00", "+0.00", "100.00", "ok"],
        ["resnet18", "Vanilla", "8000.0", "1.00x", "2.000", "1.00x", "70.00", "+0.00", "100.00", "ok"],
        # 32000 / 8000 = 4.00x the images/s; 2.0 / 0.5 = 4.00x the speed; 70 - 67.5 = 2.5 points > 2: over
        ["resnet18", "ONNX Runtime int8", "32000.0", "4.00x", "0.500", "4.00x", "67.50", "+2.50", "96.25", "OVER"]]
    assert text.count("TRT was not measured in these records") == 1  # no TensorRT row: said once, under the heading
    with_trt = _study_records() + [rec(network="resnet18", backend="tensorrt", precision="fp16", batch_size=256,
                                       images_per_s=50000.0, role="timing", weights_id="w-resnet18")]
    assert "was not measured in these records" not in worth_it_markdown(with_trt)
    # without a gate, no gate column; the accuracy pass (images/s 1.0) is never the row shown at its batch size
    plain = cells(worth_it_markdown(_study_records()))
    assert len(plain[0]) == 9 and all("1.0" != r[2] for r in plain[1:])
    assert worth_it_markdown([]) == ""


def test_worth_it_without_a_reference_divides_by_nothing_and_two_datasets_each_by_their_own():
    recs = [r for r in _study_records() if r.backend != "torch" or r.network == "mobilenet_v2"]
    rows = cells(worth_it_markdown(recs))
    int8 = next(r for r in rows if r[1] == "ONNX Runtime int8")
    assert int8[3] == "-" and int8[5] == "-" and int8[7] == "-"  # no PyTorch fp32 of resnet18: no ratio, no drop
    two = _study_records() + [rec(network="resnet18", backend="torch", precision="fp32", batch_size=256, top1=10.0,
                                  role="timing", images_per_s=7000.0, dataset_key="k2", images=500,
                                  setup_key="s-other", weights_id="w-resnet18")]
    rows = cells(worth_it_markdown(two))
    r18 = [r for r in rows if r[0] == "resnet18"]
    assert {r[1] for r in r18} == {"Vanilla / imagenet (50000 img)", "Vanilla / imagenet (500 img)",
                                   "ONNX Runtime int8 / imagenet (50000 img)"}
    # two datasets under one network: each row divides by the PyTorch fp32 row of its own images (issue 27)
    alone = next(r for r in cells(worth_it_markdown(_study_records())) if r[1] == "ONNX Runtime int8")
    by_label = {r[1]: r for r in r18}
    assert by_label["ONNX Runtime int8 / imagenet (50000 img)"][3] == alone[3] != "-"
    assert by_label["Vanilla / imagenet (500 img)"][3] == "1.00x" == by_label["Vanilla / imagenet (50000 img)"][3]


def test_top1_drops_and_the_gate():
    recs = _study_records()
    drops = {(r.network, r.backend, r.batch_size, r.role): d for r, d in top1_drops(recs)}
    assert drops[("resnet18", "onnxrt", 1, "timing")] == pytest.approx(2.5)
    assert drops[("resnet18", "torch", 256, "timing")] == 0.0 and drops[("mobilenet_v2", "torch", 1, "timing")] == 0.0
    over = over_top1_drop(recs, 2.0)
    assert [(r.network, r.backend, d) for r, d in over] == [("resnet18", "onnxrt", pytest.approx(2.5))]
    assert over_top1_drop(recs, 2.5) == [] and len(over_top1_drop(recs, 2.49)) == 1  # strictly more than
    failed = recs + [rec(network="resnet18", backend="onnxrt", precision="fp16", top1=0.0, error="boom")]
    assert len(over_top1_drop(failed, 2.0)) == 1  # a failed row has no top-1 to judge
    no_ref = [r for r in recs if r.backend != "torch"]
    assert over_top1_drop(no_ref, 0.0) == [] and all(d is None for _, d in top1_drops(no_ref))


def test_not_measured_rows_group_jobs_and_a_later_success_clears_them():
    recs = [rec(backend="torch", precision="int8", batch_size=bs, role=role, job_key=f"k{bs}{role}",
                error="skipped: the torch backend has no int8")
            for bs, role in ((1, "timing"), (256, "accuracy"), (256, "timing"))]
    recs.append(rec(backend="onnxrt", precision="fp16", options="cuda", batch_size=256, role="accuracy",
                    job_key="kf", error="boom"))
    recs.append(rec(backend="onnxrt", precision="fp16", options="cuda", batch_size=1, role="timing",
                    job_key="kg", error="not run: boom"))
    rows = cells(not_measured_markdown(recs))
    assert rows == [["network", "runner", "jobs", "why"],
                    ["resnet18", "onnxrt fp16 (cuda)", "accuracy bs256", "boom"],
                    ["resnet18", "onnxrt fp16 (cuda)", "timing bs1", "not run: boom"],
                    ["resnet18", "torch int8", "timing bs1, accuracy bs256, timing bs256",
                     "skipped: the torch backend has no int8"]]
    fixed = recs + [rec(backend="onnxrt", precision="fp16", batch_size=256, role="accuracy", job_key="kf")]
    assert "accuracy bs256 | boom" not in not_measured_markdown(fixed).replace("  ", " ")
    assert len(cells(not_measured_markdown(fixed))) == 3
    assert not_measured_markdown([rec(job_key="x")]) == "" and not_measured_markdown([rec(error="e")]) == ""


def test_study_order_and_the_network_column_of_percentiles():
    recs = _study_records()
    order = [(r.network, r.backend, r.batch_size) for r in study_order(recs) if r.role == "timing"]
    assert order == [("mobilenet_v2", "torch", 1), ("mobilenet_v2", "torch", 256), ("resnet18", "torch", 1),
                     ("resnet18", "torch", 256), ("resnet18", "onnxrt", 1), ("resnet18", "onnxrt", 256)]
    assert cells(percentile_table(recs))[0][0] == "network"  # several networks: each row says which
    assert cells(percentile_table([r for r in recs if r.network == "resnet18"]))[0][0] == "backend"


def test_an_accuracy_pass_never_hides_the_timing_of_its_batch_size():
    acc = rec(batch_size=256, role="accuracy", images_per_s=1.0, time="2026-11-29T05:00:00+00:00")  # newer
    timing = rec(batch_size=256, role="timing", images_per_s=9.0, time="2026-11-29T04:00:00+00:00")
    assert [r.images_per_s for r in latest_per_config([acc, timing])] == [9.0]
    assert [r.images_per_s for r in latest_per_config([acc])] == [1.0]  # alone, it stands for its batch


@pytest.mark.parametrize("row, peers, why", [
    ({"host_load_1m": 3.7, "host_cores": 2, "latency_all_cv_percent": 1.0}, [], "host loaded (load average 3.7 on 2 cores)"),
    ({"host_load_1m": 2.0, "host_cores": 2, "latency_all_cv_percent": 1.0}, [], None),  # at the core count: not over
    ({"latency_all_cv_percent": 50.5}, [], "latency CV 50.5 %"),  # above 50 % whatever the peers
    ({"latency_all_cv_percent": 50.0}, [], None),
    ({"latency_all_cv_percent": 12.1}, [2.0, 4.0, 3.0], "latency CV 12.1 % against its peers' median 3.0 %"),
    ({"latency_all_cv_percent": 8.9}, [2.0, 3.0], None),  # 3x the median (2.5) but under the 10 % floor
    ({"latency_all_cv_percent": 12.0}, [2.0, 3.0, 5.0, 4.0],  # the even median (3 + 4) / 2: 3 x 3.5 = 10.5 < 12
     "latency CV 12.0 % against its peers' median 3.5 %"),
    ({"latency_all_cv_percent": 10.4}, [2.0, 3.0, 5.0, 4.0], None),  # under 10.5
    ({"latency_all_cv_percent": 30.0}, [11.0, 9.0], None),  # not 3x the peers' median 10.0
    ({"latency_all_cv_percent": float("nan")}, [1.0], None),
    ({}, [1.0], None),
])
def test_a_row_is_unstable_when_the_host_was_loaded_or_its_cv_is_far_above_its_peers(row, peers, why):
    row = rec().model_copy(update=row)  # unchecked: a NaN CV never comes from a record read, but is still no figure
    rows = [row] + [rec(latency_all_cv_percent=cv) for cv in peers]
    assert unstable_reason(row, rows) == why


def test_an_unstable_row_marks_its_images_per_s_and_every_speed_up_computed_from_it():
    recs = _study_records()
    ref = next(r for r in recs if r.backend == "torch" and r.network == "resnet18" and r.batch_size == 256
               and r.role == "timing")
    ref.host_load_1m, ref.host_cores = 5.0, 2  # the reference was timed on a loaded host
    rows = cells(worth_it_markdown(recs))
    by = {(r[0], r[1]): r for r in rows[1:]}
    assert by[("resnet18", "Vanilla")][2] == "8000.0 (unstable)" and by[("resnet18", "Vanilla")][3] == "1.00x (unstable)"
    assert by[("resnet18", "ONNX Runtime int8")][2] == "32000.0"  # its own timing is fine ...
    assert by[("resnet18", "ONNX Runtime int8")][3] == "4.00x (unstable)"  # ... its speed-up divides by a shaky one
    assert by[("resnet18", "ONNX Runtime int8")][5] == "4.00x"  # the latency at batch 1 used steady rows only
    assert by[("mobilenet_v2", "Vanilla")][2] == "9000.0"
    assert "(unstable): the row's timing is not to be trusted" in worth_it_markdown(recs)
    assert "(unstable)" not in worth_it_markdown(_study_records())
    side = side_by_side_markdown("resnet18", recs)
    assert "| 8000.0 (unstable) |" in side and "(unstable): the row's timing" in side
    summary = summary_markdown("resnet18", recs)
    assert "| 8000.0 (unstable) |" in summary and summary.count("(unstable): the row's timing") == 1
    assert "(unstable)" in results_table([ref]) and "(unstable)" not in results_table([ref.with_fields(host_load_1m=1.0)])


def test_a_table_fits_the_terminal_by_leaving_out_what_tells_least(monkeypatch):
    """Issue 27: a 230-character table in an 80-column terminal. The printed table drops, in order, parameters,
    layers, top-5, size, latency-all, a network or batch that every row shares, then the model latency's max, until
    it fits, and says what it left out; a file or a pipe (no COLUMNS) keeps every column."""
    def demo(backend, images_per_s, bs=1, network="efficientnet_lite0"):
        return rec(network=network, backend=backend, batch_size=bs, images_per_s=images_per_s, top1=85.0,
                   top5=95.0, latency_all_mean=29.562, latency_all_max=48.87, latency_model_mean=18.644,
                   latency_model_max=24.726, size_mb=18.7, layers=94, params=4631006)

    full = results_table([demo("onnxrt", 27.2), demo("torch", 3.5)])
    assert fit_terminal(full, None) == full
    assert fit_terminal(full, max(map(len, full.splitlines()))) == full  # exactly as wide: as it is
    text = fit_terminal(full, 80)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert cells(text)[0] == ["backend", "model ms", "images/s", "top-1 (%)"]
    assert cells(text)[1:] == [["ONNX Runtime fp32", "18.644", "27.2", "85.00"], ["Vanilla", "18.644", "3.5", "85.00"]]
    note = " ".join(ln for ln in lines if not ln.startswith("|"))
    assert note == ("(to fit 80 columns, left out: parameters, layers, top-5 (%), size (MiB), Latency-all mean / max "
                    "(ms), network (each row's is efficientnet_lite0), batch (each row's is 1), Latency-model max; "
                    "every column is in the report)")
    several = results_table([demo("torch", 3.5, 1, "resnet18"), demo("torch", 9.9, 8)])
    narrow = fit_terminal(several, 100)
    assert cells(narrow)[0][:2] == ["network", "backend"] and "batch" in cells(narrow)[0]  # they differ: kept
    assert max(map(len, narrow.splitlines())) <= 100
    monkeypatch.setenv("COLUMNS", "123")
    assert terminal_width() == 123
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert terminal_width() is None


def test_the_tables_say_what_the_record_knows():
    """An fp16 file on ONNX Runtime's CPU provider runs fp32 kernels; ModelOpt's int8 file keeps fp32 weights."""
    ort = {"network": "lite0", "backend": "onnxrt", "provider": "cpu", "options": "cpu"}
    notes = row_notes([rec(**{**ort, "precision": "fp16", "ort_cpu_note": "ONNX Runtime's CPU provider has no fp16 "
                                                                            "Conv kernel"}),
                       rec(**{**ort, "precision": "int8", "tool": "modelopt.onnx.quantization", "size_mib": 17.84}),
                       rec(**{**ort, "precision": "int8", "network": "other", "tool":
                              "onnxruntime.quantization.quantize_static", "size_mib": 4.6}),
                       rec(**{**ort, "precision": "fp16", "provider": "cuda", "options": "cuda",
                              "ort_cpu_note": "no fp16 Conv kernel"})])
    assert notes == ["ONNX Runtime fp16 (cpu) on lite0: ONNX Runtime's CPU provider has no fp16 Conv kernel.",
                     "ONNX Runtime int8 (cpu) on lite0: the Q/DQ file stores its weights in fp32 beside their scales "
                     "(17.84 MiB), so it is no smaller than fp32's; TensorRT stores them in int8/fp8 when it builds an "
                     "engine."]


def test_the_unstable_footnote_is_said_once_per_page_with_every_marked_rows_reason(tmp_path):
    """Issue 43: the worth-it table, each network's side-by-side and its per-batch summary all mark the loaded row;
    report.html and the console summary say the note once, at their end, with every marked row's reason; each
    .md file, a page of its own, says it once too."""
    from utils.report.layout import View, summary_docs
    from utils.report.report import make_report

    recs = _study_records()
    for r in recs:
        if r.network == "resnet18" and r.backend == "torch" and r.role == "timing":
            r.host_load_1m, r.host_cores = 5.0, 2  # batch 1 and 256 of the reference timed on a loaded host
    note = "timing is not to be trusted"  # (HTML writes the apostrophe before it as &#39;)
    make_report(tmp_path, records=recs)
    page = (tmp_path / "report.html").read_text()
    assert page.count(note) == 1 and page.index(note) > page.rindex("<table>")
    said = page[page.index(note):]
    assert "resnet18 Vanilla bs1: host loaded" in said and "resnet18 Vanilla bs256: host loaded" in said
    for name in ("worth-it.md", "resnet18.md", "resnet18-side-by-side.md"):
        assert (tmp_path / "table_outputs" / name).read_text().count(note) == 1, name
    docs = summary_docs(View.of(recs))
    assert sum(d.count(note) for d in docs) == 1 and note in docs[-1]
    assert note not in "".join(summary_docs(View.of(_study_records())))
