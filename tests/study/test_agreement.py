"""Records are written once (issue 39): an accuracy record carries its agreement with PyTorch fp32 when it is written
(a study runs each network's PyTorch fp32 setup first, whatever the order of --backends); an agreement that could
not be known then (the reference measured by a later run) is computed in memory for the tables, and neither a
later run nor --report rewrites a record file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import main
from tests.report import R
from tests.study.test_study import FAST, table_rows
from utils.study.agreement import top1_agreement, with_agreement

STUDY = ["-v", "--network", "mobilenet_v3_small", "--synthetic", "6", "--batch_sizes", "2", "3", "--device", "cpu",
         *FAST]


def _files(out: Path):
    """Every record file's bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((out / "records").glob("*.json"))}


def _accuracy(out: Path, backend: str):
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("validate-*.json")]
    return next(r for r in recs if r["backend"] == backend and r["role"] == "accuracy")


@pytest.mark.slow
def test_the_reference_runs_first_and_each_record_is_written_once(tmp_path, capsys):
    out = tmp_path / "o"
    assert main.main([*STUDY, "--backends", "onnxrt", "torch", "--output", str(out)]) == 0
    onnx, ref = _accuracy(out, "onnxrt"), _accuracy(out, "torch")
    assert onnx["agree_top1_ref_key"] == ref["job_key"] and onnx["agree_top1_images"] == 6  # in the file as written
    a = np.load(out / onnx["predictions_file"], allow_pickle=False)
    b = np.load(out / ref["predictions_file"], allow_pickle=False)
    assert onnx["agree_top1_percent"] == top1_agreement(a, b)["agree_top1_percent"]
    assert ref["agree_top1_percent"] == 100.0 and ref["agree_top1_ref_key"] == ref["job_key"]
    before = _files(out)
    assert main.main(["--report", str(out), "--quiet"]) == 0
    assert main.main([*STUDY, "--backends", "onnxrt", "torch", "--output", str(out)]) == 0  # all found done
    assert _files(out) == before  # neither --report nor a rerun wrote a record again


@pytest.mark.slow
def test_an_agreement_known_only_later_is_shown_never_written(tmp_path, capsys):
    out = tmp_path / "o"
    assert main.main([*STUDY, "--backends", "onnxrt", "--output", str(out)]) == 0
    first = _files(out)
    onnx = _accuracy(out, "onnxrt")
    assert "agree_top1_percent" not in onnx  # no PyTorch fp32 predictions of these images yet
    assert main.main([*STUDY, "--backends", "torch", "--output", str(out)]) == 0
    shown = table_rows((out / "table_outputs" / "worth-it.md").read_text(), "# Is TensorRT worth it? Every network")
    ref = _accuracy(out, "torch")
    a = np.load(out / onnx["predictions_file"], allow_pickle=False)
    b = np.load(out / ref["predictions_file"], allow_pickle=False)
    expected = top1_agreement(a, b)["agree_top1_percent"]
    row = next(r for r in shown if r[1].startswith("ONNX Runtime"))
    assert row[8] == f"{expected:.2f}"  # the folder's tables show it ...
    assert {k: v for k, v in _files(out).items() if k in first} == first  # ... the first run's files are as written
    page = (out / "report.html").read_text()
    assert f"<td>{expected:.2f}</td>" in page


def test_with_agreement_fills_copies_and_leaves_the_records_alone(tmp_path):
    (tmp_path / "predictions").mkdir()
    np.save(tmp_path / "predictions" / "r.npy", np.array([1, 2, 3, -1]), allow_pickle=False)
    np.save(tmp_path / "predictions" / "o.npy", np.array([1, 2, 0, 5]), allow_pickle=False)
    common = {"kind": "validate", "network": "n", "weights_id": "w", "dataset_key": "d", "images": 4,
              "role": "accuracy", "precision": "fp32", "options": ""}
    ref = R({**common, "backend": "torch", "predictions_file": "predictions/r.npy", "job_key": "R",
             "agree_top1_percent": 100.0, "agree_top1_ref_key": "R"})
    other = R({**common, "backend": "onnxrt", "predictions_file": "predictions/o.npy", "job_key": "O"})
    elsewhere = other.with_fields(dataset_key="another", job_key="E")  # other images: no reference, left as it is
    outside = other.with_fields(predictions_file="../o.npy", job_key="X")  # a name leading out of the folder
    got = with_agreement(tmp_path, [ref, other, elsewhere, outside])
    assert got[0] is ref and got[2] is elsewhere and got[3] is outside
    assert got[1] == other.with_fields(agree_top1_percent=round(100 * 2 / 3, 3), agree_top1_images=3,
                                       agree_top1_ref_key="R")  # over the 3 images the reference ranks; -1 is none
    assert other.agree_top1_percent is None  # a copy: the record itself is untouched


@pytest.mark.slow
def test_a_study_keeps_labels_and_reports_the_paired_change(tmp_path, capsys, demo_data):
    """Issue 41: each accuracy pass keeps its labels beside its predictions, so a runner's record carries its paired
    change against PyTorch fp32 (the same photos), and the console and report show it with Wilson's intervals; a
    reference measured only later is paired in memory for the tables."""
    from utils.core.confidence import paired_change

    out = tmp_path / "o"
    argv = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data), "--batch_sizes",
            "4", "--device", "cpu", *FAST]
    assert main.main([*argv, "--backends", "onnxrt", "--output", str(out)]) == 0
    assert "paired_verdict" not in _accuracy(out, "onnxrt")  # no reference yet
    assert main.main([*argv, "--backends", "torch", "--output", str(out)]) == 0
    onnx, ref = _accuracy(out, "onnxrt"), _accuracy(out, "torch")
    labels = np.load(out / ref["labels_file"], allow_pickle=False)
    assert labels.shape == (20,) and (labels >= 0).all()
    want = paired_change(np.load(out / onnx["predictions_file"]), np.load(out / ref["predictions_file"]), labels)
    assert want["paired_images"] == 20 and want["paired_verdict"].startswith("too few images to tell")
    table = (out / "table_outputs" / "confidence.md").read_text()
    row = next(r for r in table_rows(table, "### efficientnet_lite0") if r[0].startswith("ONNX Runtime"))
    assert row[2] == "85.00 (63.96..94.76)"  # 17 of 20, Wilson
    assert row[4] == (f"{want['paired_change_points']:+.2f} ({want['paired_low_points']:+.2f}.."
                      f"{want['paired_high_points']:+.2f})") and row[-1] == want["paired_verdict"]
    assert main.main([*argv, "--backends", "torch", "onnxrt", "--output", str(out), "--force"]) == 0
    said = capsys.readouterr().out
    assert "## Top-1 with its confidence" in said
    written = [json.loads(p.read_text()) for p in (out / "records").glob("validate-*.json")]
    newest = max((r for r in written if r["backend"] == "onnxrt" and r["role"] == "accuracy"), key=lambda r: r["time"])
    assert newest["paired_images"] == 20 and newest["paired_verdict"] == want["paired_verdict"]  # as written
