"""The mixed-precision search's record block and its table (utils/report/tables.mixed_precision_markdown), cell by
cell: light tests, apart from the real searches of tests/models/test_mixed_precision.py."""
from __future__ import annotations

import math

import pytest

from tests.conftest import squeeze
from utils.report.schema import RecordError, check_record
from utils.report.tables import mixed_precision_markdown


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
    text = squeeze(str(mixed_precision_markdown([rec, {**rec, "batch_size": 8}])))  # one search, shown once
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    del lines[1]  # the rule under the header
    assert lines == ["| k (layers kept) | newly kept | top-1 (%) | drop (points) | size (MiB) | within budget |",
                     "| 0 | - | 75.00 | 12.50 | 4.50 | no |",
                     "| 5 | c4, c1, c0 (+2 more) | 87.50 | 0.00 | 4.80 | yes |",
                     "| 2 | c4, c1 | 87.50 | 0.00 | 4.60 | yes |",
                     "| 1 | c4 | 81.25 | 6.25 | 4.55 | no |"]
    assert ("Budget 1 points below fp32's top-1 of 87.50% on 16 held-out images (the 16 images of d that calibration "
            "did not pick); calibrated on 4 images: 2 of 5 ranked layers kept in high precision. File: "
            "m-int8-2.onnx.") in text
    assert "### efficientnet_lite0: ONNX Runtime int8 (cpu, mixed, 2 layers fp32)" in text
    assert mixed_precision_markdown([{**rec, "preparation": {}}]) == ""
