"""Outputs that are not numbers are caught: per image on the device in the timing loop (no prediction, counted
wrong, never the argmax of NaNs), in the record, a warning, the tables, the gate and --compare (NaN/Inf counts,
errors over finite inputs only, never "max abs error 0")."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import main
from tests.measure.test_timing import CLASSES, Clock, ClockRunner, Phase, labelled_dataset
from tests.report import as_read
from utils.core.errors import cli_boundary
from utils.measure.compare import CompareStats
from utils.measure.measurement import MeasureOptions
from utils.measure.timing import measure
from utils.report.sections.cells import accuracy

accuracy = as_read(accuracy)
from utils.report.select import over_top1_drop

over_top1_drop = as_read(over_top1_drop)


class BrokenRunner(ClockRunner):
    """ClockRunner whose outputs are NaN for class-0 images, Inf for class-1 images, and all zero (nothing ranks)
    for class-2 images; the rest right."""

    def infer(self, x):
        y = super().infer(x)
        label = (x[:, 0, 0, 0] * 255).round().long()
        y[label == 0, 3] = float("nan")
        y[label == 1, 0] = float("inf")
        y[label == 2] = 0.0
        return y


def test_images_whose_outputs_are_not_numbers_have_no_prediction_and_count_wrong():
    clock, phase = Clock(), Phase()
    runner = BrokenRunner(clock, 1.0, False, phase)
    res = measure(runner, labelled_dataset(20), MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False),
                  num_outputs=CLASSES, telemetry=phase)
    s = res.summary()
    labels = np.arange(20) % CLASSES
    assert s["nonfinite_outputs"] == 4 and s["unrankable_outputs"] == 2  # classes 0 and 1 twice each; class 2 twice
    assert (res.predictions[labels < 3] == -1).all() and (res.predictions[labels >= 3] == labels[labels >= 3]).all()
    # class 0 images used to count right: the argmax of a NaN row, or the first of equal scores, is class 0 / 1
    assert s["top1"] == pytest.approx(100.0 * 14 / 20) and s["top5"] == pytest.approx(100.0 * 14 / 20)


def test_tables_mark_the_row_and_the_gate_fails_it_whatever_the_drop():
    ref = {"kind": "validate", "network": "n", "backend": "torch", "precision": "fp32", "batch_size": 1,
           "top1": 70.0, "dataset_key": "d", "images": 20, "weights_id": "w", "time": "1", "mode": "pipelined"}
    nan = {**ref, "precision": "fp16", "top1": 70.0, "nonfinite_outputs": 3, "time": "2"}
    flat = {**ref, "backend": "onnxrt", "top1": 69.0, "unrankable_outputs": 20, "time": "3"}
    assert accuracy(nan, "top1") == "70.00 (NaN/Inf on 3 img)" and accuracy(flat, "top1") == "69.00 (flat on 20 img)"
    over = over_top1_drop([ref, nan, flat], max_drop=100.0)
    assert sorted((r.backend, r.precision, d) for r, d in over) == [("onnxrt", "fp32", None),
                                                                        ("torch", "fp16", None)]
    assert over_top1_drop([ref], max_drop=0.0) == []


def test_compare_counts_nan_per_side_and_takes_errors_over_finite_inputs_only():
    s = CompareStats(1e-3, 1e-8)
    ref = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    other = torch.tensor([[1.0, 2.0, 3.5], [float("nan")] * 3, [3.0, 2.0, float("inf")]])
    s.update(ref, other, torch.tensor([2, 2, 0]), ["a", "b", "c"])
    out = s.summary()
    assert out["other_nonfinite"] == 2 and out["ref_nonfinite"] == 0 and out["finite_inputs"] == 1
    assert out["max_abs_error"] == pytest.approx(0.5)  # max(0, nan) is 0 in Python: not here
    assert out["top1_agreement_percent"] == pytest.approx(100 / 3)  # a NaN row agrees with nothing
    assert out["other_top1"] == pytest.approx(100 / 3) and out["ref_top1"] == pytest.approx(100.0)
    assert [f["other_class"] for f in s.flips] == [-1, -1]
    all_nan = CompareStats(0, 0)
    all_nan.update(ref, torch.full_like(ref, float("nan")), torch.tensor([-1, -1, -1]), ["a", "b", "c"])
    assert all_nan.summary()["max_abs_error"] is None and all_nan.summary()["isclose_percent"] is None


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory):
    """resnet18 (random, seed 0) with one NaN in the classifier's bias: every image's outputs hold a NaN."""
    from utils.models.networks import load_network

    state = load_network("resnet18").model.state_dict()
    state["fc.bias"][7] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "nan-resnet18.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_a_study_of_nan_weights_warns_marks_and_fails_the_gate(tmp_path, demo_data, nan_weights, capsys):
    out = tmp_path / "out"
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--weights", str(nan_weights), "--dataset",
                                  str(demo_data), "--backends", "torch", "--batch_sizes", "4", "8",
                                  "--max_top1_drop", "100", "--output", str(out), "--quiet", "--duration", "0"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "top-1 gate: resnet18 Vanilla gave NaN/Inf or unranked outputs on 20 images" in err
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    acc = next(r for r in recs if r["role"] == "accuracy")
    assert acc["nonfinite_outputs"] == 20 and acc["top1"] == 0.0 and acc["top5"] == 0.0
    assert all(r["nonfinite_outputs"] == 20 for r in recs)  # timing rows carry their accuracy pass's count
    assert "(random weights; NaN/Inf on 20 img)" not in (out / "table_outputs" / "resnet18.md").read_text()
    assert "NaN/Inf on 20 img" in (out / "table_outputs" / "resnet18.md").read_text()


@pytest.mark.slow
def test_compare_of_a_nan_onnx_file_reports_counts_not_a_max_error_of_zero(tmp_path, demo_data, capsys):
    import onnx
    from onnx import numpy_helper

    from utils.models.chain import onnx_for
    from utils.models.networks import load_network

    good, _ = onnx_for(load_network("resnet18"), (-1, 3, 224, 224))
    proto = onnx.load(str(good))
    for i, t in enumerate(proto.graph.initializer):
        arr = numpy_helper.to_array(t)
        if arr.shape == (1000,):  # the classifier's bias
            arr = arr.copy()
            arr[3] = np.nan
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(proto, str(bad))
    rc = cli_boundary(main.main, ["--compare", "--network", "resnet18", "--onnx", str(bad), "--backend", "onnxrt",
                                  "--val_dataset", "--dataset", str(demo_data), "--output", str(tmp_path / "o"),
                                  "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ONNX Runtime gave NaN or Inf on 20 of 20 inputs" in out or "gave NaN or Inf on 20 of 20 inputs" in out
    assert "max abs error" in out and "0.000e+00" not in out
    rec = json.loads(next((tmp_path / "o" / "records").glob("*.json")).read_text())
    assert rec["other_nonfinite"] == 20 and rec["max_abs_error"] is None and rec["top1_agreement_percent"] == 0.0


def test_a_one_output_model_is_never_flagged_as_unranked():
    from utils.core.predictions import output_flags

    flags = output_flags(torch.tensor([[3.0], [float("nan")]]))
    assert flags.tolist() == [[False, False], [True, False]]
    assert output_flags(torch.zeros(2, 3)).tolist() == [[False, True], [False, True]]


@pytest.mark.slow
def test_nan_outputs_under_loadgen_are_warned_marked_and_gated(tmp_path, demo_data, nan_weights, capsys):
    """Issue 40: a serving run's outputs are checked as a timing run's: LoadGen's accuracy run counts the images with
    no prediction, a warning says so, and --max_top1_drop fails (it read timing rows only)."""
    out = tmp_path / "out"
    rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--weights", str(nan_weights), "--dataset",
                                  str(demo_data), "--backends", "torch", "--scenario", "offline", "--duration", "0.5",
                                  "--max_batch", "4", "--max_top1_drop", "100", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "Vanilla offline bs4: of 20 images, 20 gave NaN or Inf outputs" in err
    assert "top-1 gate: resnet18 Vanilla gave NaN/Inf or unranked outputs on 20 images" in err
    (rec,) = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert rec["scenario"] == "offline" and rec["nonfinite_outputs"] == 20 and isinstance(rec["host_load_1m"], float)


@pytest.mark.parametrize("precision, says", [
    ("fp16", "else fp16 rounded the scores' differences away: try bf16 or fp32"),  # all equal is no overflow
    ("int8", "int8 quantization lost the outputs: check the calibration images"),
    ("fp32", "the weights or the model itself give them"),
])
def test_the_warning_gives_the_advice_of_the_rows_precision(precision, says, caplog):
    import logging

    from utils.study.validate import warn_if_not_numbers
    warn_if_not_numbers = as_read(warn_if_not_numbers)

    rec = {"network": "vit_b_16", "backend": "onnxrt", "precision": precision, "batch_size": 4, "images": 8,
           "unrankable_outputs": 8}
    with caplog.at_level(logging.WARNING, logger="utils.study.validate"):
        warn_if_not_numbers(rec, "ONNX Runtime")
    assert len(caplog.messages) == 1 and says in caplog.messages[0]
    assert "8 gave outputs that are all equal" in caplog.messages[0]
    assert "all-zero head" in caplog.messages[0]  # flat outputs in every precision: fp32's may be flat too
    assert "overflow" not in caplog.messages[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.study.validate"):  # NaN/Inf in fp16: the overflow advice
        warn_if_not_numbers({**rec, "unrankable_outputs": 0, "nonfinite_outputs": 2}, "ONNX Runtime")
    assert ("fp16 overflows where fp32 does not" in caplog.messages[0]) == (precision == "fp16")


def test_the_latency_warning_names_its_network_and_pass_and_is_said_once(caplog):
    import logging

    from utils.study.validate import warn_if_unstable
    warn_if_unstable = as_read(warn_if_unstable)

    rec = {"network": "resnet50", "batch_size": 256, "latency_unstable": True, "latency_model_cv_percent": 6.4,
           "latency_all_cv_percent": 6.2}
    with caplog.at_level(logging.WARNING, logger="utils.study.validate"):
        warn_if_unstable({**rec, "role": "accuracy"}, "Vanilla")  # the accuracy pass: not the figures shown
        warn_if_unstable({**rec, "role": "timing", "timing": "bounded"}, "Vanilla")
        warn_if_unstable({**rec, "role": "timing", "timing": "bounded", "latency_unstable": False}, "Vanilla")
        warn_if_unstable({**rec, "role": "whole pass", "timing": "whole pass", "batch_size": 8}, "Vanilla")
    assert caplog.messages == ["resnet50 Vanilla bs256, timed run: latency varies by more than 2.5% (CV model 6.4%, "
                               "all 6.2%): treat the mean with care",
                               "resnet50 Vanilla bs8, whole pass: latency varies by more than 2.5% (CV model 6.4%, "
                               "all 6.2%): treat the mean with care"]
