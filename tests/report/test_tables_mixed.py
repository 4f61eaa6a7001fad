"""The mixed-precision search's record block and its table (utils/report/tables.mixed_precision_markdown), cell by
cell: light tests, apart from the real searches of tests/models/test_mixed_precision.py."""
from __future__ import annotations

import math

import pytest

from tests.conftest import squeeze
from utils.report.doc import Table
from utils.report.schema import typed_all, RecordError, check_record
from utils.report.sections.mixed_precision_tables import MIXED_PRECISION_HEADER, _step_names, mixed_precision_markdown


def _block(**over):
    step = {"k": 0, "kept": [], "added": [], "top1": 75.0, "drop": 12.5, "size_mib": 4.5, "file": "a.onnx",
            "within": False}
    block = {"budget": 1.0, "precision": "int8", "fp32_top1": 87.5, "heldout_images": 16, "heldout_dataset": "/d",
             "heldout_rule": "the 16 images of d that calibration did not pick", "heldout_files": ["x/1.jpg"],
             "calib_images": 4, "ranked_layers": 5, "final_k": 2, "kept": ["c4", "c1"], "met": True,
             "final_onnx": "/w/m-int8-2.onnx", "search_file": "/w/m.search.json", "search_s": 12.0, "cached": False,
             "steps": [step, {**step, "k": 5, "kept": ["c4", "c1", "c0", "c2", "c3"], "added": ["c4", "c1", "c0", "c2",
                                                                                              "c3"], "top1": 87.5,
                                "drop": 0.0, "size_mib": 4.8, "file": "b.onnx", "within": True},
                       {**step, "k": 2, "kept": ["c4", "c1"], "added": ["c4", "c1"], "top1": 87.5, "drop": 0.0,
                        "size_mib": 4.6, "file": "m-int8-2.onnx", "within": True},
                       {**step, "k": 1, "kept": ["c4"], "added": ["c4"], "top1": 81.25, "drop": 6.25, "size_mib": 4.55,
                        "file": "c.onnx", "within": False}]}
    block.update(over)
    return {"record_version": 2, "kind": "validate", "network": "efficientnet_lite0", "backend": "onnxrt",
            "precision": "int8", "batch_size": 1, "options": "cpu", "preparation": {"mixed_precision": block}}


def _markdown(records):
    return mixed_precision_markdown(typed_all(records))  # as the report reads them


def test_the_schema_takes_the_search_and_refuses_a_figure_that_is_not_a_number():
    check_record(_block())
    bad = _block()
    bad["preparation"]["mixed_precision"]["steps"][1]["top1"] = math.nan
    with pytest.raises(RecordError) as err:
        check_record(bad)
    assert err.value.field == "preparation.mixed_precision.steps.1.top1"
    with pytest.raises(RecordError):
        check_record(_block(fp32_top1=math.inf))
    with pytest.raises(RecordError):
        check_record(_block(heldout_rule="x" * 5000))


def test_the_table_shows_every_step_in_the_order_measured():
    rec = _block()
    text = squeeze(str(_markdown([rec, {**rec, "batch_size": 8}])))  # one search, shown once
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    del lines[1]  # the rule under the header
    assert lines == ["| k (layers kept) | newly kept | top-1 (%) | drop (points) | drop, paired 95 % | size (MiB) | "
                     "within budget |",
                     "| 0 | - | 75.00 | 12.50 | - | 4.50 | no |",
                     "| 5 | c4, c1, c0 (+2 more) | 87.50 | 0.00 | - | 4.80 | yes |",
                     "| 2 | c4, c1 | 87.50 | 0.00 | - | 4.60 | yes |",
                     "| 1 | c4 | 81.25 | 6.25 | - | 4.55 | no |"]
    assert ("Budget 1 points below fp32's top-1 of 87.50% on 16 held-out images (the 16 images of d that calibration "
            "did not pick); calibrated on 4 images: 2 of 5 ranked layers kept in high precision. File: "
            "m-int8-2.onnx.") in text
    assert "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)" in text
    assert _markdown([{**rec, "preparation": {}}]) == ""


def _lines(text):
    return [ln for ln in squeeze(str(text)).splitlines() if not set(ln) <= set("|-: ")]


def _rows(text):
    return [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in _lines(text) if ln.startswith("|")]


def test_step_names_the_first_three_and_how_many_more():
    assert _step_names([]) == "-"
    assert _step_names(["a"]) == "a"
    assert _step_names(["a", "b", "c"]) == "a, b, c"  # exactly three: no "(+0 more)"
    assert _step_names(["a", "b", "c", "d"]) == "a, b, c (+1 more)"
    assert _step_names(["a", "b", "c", "d", "e", "f"], most=2) == "a, b (+4 more)"
    assert _step_names(("a", "b"), most=2) == "a, b"


def test_the_headings_the_intro_and_a_search_that_missed_its_budget():
    step = {"k": 5, "kept": ["c0"], "top1": 80.0, "drop": 7.46, "size_mib": None, "file": "x.onnx", "within": False}
    rec = _block(met=False, heldout_rule=None, budget=0.25, fp32_top1=87.456, final_onnx="C:\\w\\run\\m-int8-5.onnx",
                 steps=[step, {**step, "k": 3, "added": ["c1", "c2", "c3"], "size_mib": 4.567, "within": True}])
    text = str(_markdown([rec]))
    assert _lines(text)[:3] == [
        "## Mixed precision within a top-1 budget (--mixed_precision)",
        "Each step keeps the k layers that add the most error (ranked on calibration images) out of quantization and "
        "measures top-1 on held-out images; k is bisected, which assumes that keeping more layers never lowers top-1: "
        "every step is shown, so a step where it does is visible. A step is within budget as the --max_top1_drop "
        "gate judges a row: where the whole paired 95 % interval of its drop against fp32 on the same images is "
        "within the budget; inconclusive (the interval holds the budget) counts as not within, so the search keeps "
        "more layers.",
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)"]
    assert _lines(text)[3] == (
        "Budget 0.25 points below fp32's top-1 of 87.46% on 16 held-out images (not named); calibrated on 4 images: "
        "NOT met: even with all 5 ranked layers kept out of quantization the drop is over budget; that file is used. "
        "File: m-int8-5.onnx.")
    # a step that names no added layer shows "-"; no size, "-"; exactly three names, no "(+0 more)"
    assert _rows(text) == [MIXED_PRECISION_HEADER, ["5", "-", "80.00", "7.46", "-", "-", "no"],
                           ["3", "c1, c2, c3", "80.00", "7.46", "-", "4.57", "yes"]]
    assert "File: ." in str(_markdown([_block(final_onnx=None)]))
    # a step judged on its paired interval (searches since version 2), and MLPerf's share as the budget
    judged = {**step, "drop_interval": [0.41, 2.1], "outcome": "inconclusive"}
    text = str(_markdown([_block(steps=[judged], budget=1.0, budget_rule="1%", fp32_top1=80.0)]))
    assert _rows(text)[1] == ["5", "-", "80.00", "7.46", "0.41..2.10", "-", "inconclusive"]
    assert "Budget 0.80 points (1% of fp32's top-1) below fp32's top-1 of 80.00%" in squeeze(text)


def test_records_that_hold_no_search_or_failed_are_left_out_and_runners_are_listed_once():
    rec = _block()
    trt = {**rec, "backend": "tensorrt", "options": ""}
    for wrong in ({**rec, "preparation": "x"}, {**rec, "preparation": {"mixed_precision": "x"}}):
        with pytest.raises(RecordError):  # never read: the schema refuses it
            _markdown([wrong])
    for bad in ({**rec, "kind": "compare", "reference": "torch-fp32"}, {**rec, "error": "it failed"},
                {**rec, "preparation": None}):
        assert str(_markdown([bad])) == ""
        text = str(_markdown([{**bad, "backend": "tensorrt", "options": ""}, rec]))
        assert "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)\n" in squeeze(text) + "\n"
    text = squeeze(str(_markdown([trt, rec, {**rec, "batch_size": 4}])))
    assert [ln for ln in text.splitlines() if ln.startswith("###")] == [
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32), TRT int8 (mixed, 2 layers fp32)"]
    assert text.count("Budget ") == 1


def test_one_section_per_network_search_file_and_final_file_in_order():
    def search(network="efficientnet_lite0", **over):
        return {**_block(**over), "network": network}

    # ordered by network, search file and final file as text (a search without a final file sorts as "None"),
    # not by the budget; given in another order
    recs = [search("resnet18", budget=1.0), search(search_file="/w/other.search.json", budget=2.0),
            search(final_onnx=None, final_k=4, budget=5.0), search(final_onnx="/w/m-int8-3.onnx", final_k=3, budget=3.0),
            search(budget=4.0)]
    text = squeeze(str(_markdown(recs)))
    heads = [ln for ln in text.splitlines() if ln.startswith(("###", "Budget"))]
    assert [ln.split(" points")[0] if ln.startswith("Budget") else ln for ln in heads] == [
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)", "Budget 4",
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 3 layers fp32)", "Budget 3",
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 4 layers fp32)", "Budget 5",
        "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)", "Budget 2",
        "### resnet18: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)", "Budget 1"]
    assert "kept in high precision. File: m-int8-3.onnx." in text
    assert text.count("| k (layers kept) |") == 5


def test_the_engine_column_only_where_some_step_read_its_layer_precisions_back():
    step = {"k": 0, "kept": [], "added": [], "top1": 75.0, "drop": 12.5, "size_mib": 4.5, "file": "a.onnx",
            "within": False}
    steps = [{**step, "engine": {"built": False, "why": "no TensorRT"}},
             {**step, "k": 1, "engine": {"built": True, "layer_precisions": None}},
             {**step, "k": 2},
             {**step, "k": 3, "engine": {"built": True, "layer_precisions": {"fp32": 3, "int8": 40, "fp16": 3}}}]
    rows = _rows(_markdown([_block(steps=steps)]))
    assert rows[0] == MIXED_PRECISION_HEADER + ["engine layers (TensorRT)"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert [r[-1] for r in rows[1:]] == ["not built", "not read", "-", "int8 40, fp16 3, fp32 3"]
    # engines built but none read back: no column, in the Markdown nor in the table's header for the HTML
    doc = _markdown([_block(steps=steps[:3])])
    rows = _rows(doc)
    assert rows[0] == MIXED_PRECISION_HEADER and all(len(r) == 7 for r in rows)
    assert [b.header for b in doc.blocks if isinstance(b, Table)] == [tuple(MIXED_PRECISION_HEADER)]
    assert "engine layers" not in doc.html()
    # a search with no step: the header alone, without the column
    assert _rows(_markdown([_block(steps=[])])) == [MIXED_PRECISION_HEADER]
