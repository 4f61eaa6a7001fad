"""Compare mode: statistics checked against an independent numpy calculation, then real runners
(PyTorch vs ONNX Runtime fp32 and int8 Q/DQ) on the packaged photos and on random inputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import main
from utils.compare import CompareStats, compare_runners, to_scores
from utils.datasets import CachedDataset, SyntheticDataset
from utils.errors import ArtTRTError, cli_boundary
from utils.networks import Preprocess
from utils.runners.base import Runner


class TableRunner(Runner):
    """Returns fixed rows in order: lets the statistics be checked by hand."""

    backend = "table"

    def __init__(self, rows: np.ndarray):
        super().__init__(Preprocess())
        self.rows, self.i = torch.from_numpy(rows), 0

    def infer(self, x):
        out = self.rows[self.i:self.i + x.shape[0]]
        self.i += x.shape[0]
        return out


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_statistics_against_numpy_on_a_small_case():
    rng = np.random.default_rng(0)
    n, c = 7, 12
    ref = rng.standard_normal((n, c)) * 3
    other = ref + rng.standard_normal((n, c)) * 0.3
    other[2, :] = ref[2, ::-1]  # a flip for input 2
    labels = np.array([int(np.argmax(ref[i])) for i in range(n)])
    labels[5] = -1
    ds = CachedDataset(np.zeros((n, 3, 2, 2), np.uint8), labels, [f"f{i}" for i in range(n)], {})
    rtol, atol = 1e-2, 1e-3
    stats = compare_runners(TableRunner(ref.astype(np.float32)), TableRunner(other.astype(np.float32)), ds,
                            batch_size=3, rtol=rtol, atol=atol, progress=False)
    s = stats.summary()
    r32, o32 = ref.astype(np.float32).astype(np.float64), other.astype(np.float32).astype(np.float64)
    assert s["isclose_percent"] == pytest.approx(100 * np.isclose(o32, r32, rtol=rtol, atol=atol).mean())
    pr, po = _softmax(r32), _softmax(o32)
    sr, so = -np.sort(-pr, axis=1), -np.sort(-po, axis=1)
    ir, io_ = np.argsort(-pr, axis=1, kind="stable"), np.argsort(-po, axis=1, kind="stable")
    for k in range(10):
        assert s["rank_mae"][k] == pytest.approx(np.abs(sr[:, k] - so[:, k]).mean(), rel=1e-9)
        assert s["rank_class_diff_percent"][k] == pytest.approx(100 * (ir[:, k] != io_[:, k]).mean())
    assert s["top1_agreement_percent"] == pytest.approx(100 * (ir[:, 0] == io_[:, 0]).mean())
    overlap = np.mean([len(set(ir[i, :5]) & set(io_[i, :5])) / 5 for i in range(n)])
    assert s["top5_overlap_percent"] == pytest.approx(100 * overlap)
    assert s["max_abs_error"] == pytest.approx(np.abs(o32 - r32).max())
    assert s["rel_l2_error"] == pytest.approx(np.linalg.norm(o32 - r32) / np.linalg.norm(r32))
    flipped = [i for i in range(n) if ir[i, 0] != io_[i, 0]]
    assert [f["file"] for f in stats.flips] == [f"f{i}" for i in flipped] and 2 in flipped
    # reference is right on every labelled input here, so each labelled flip is right -> wrong
    assert s["right_to_wrong"] == len([i for i in flipped if labels[i] >= 0]) and s["wrong_to_right"] == 0
    assert s["labelled"] == n - 1 and s["ref_top1"] == 100.0


def test_probabilities_are_not_softmaxed_twice():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    assert torch.equal(to_scores(p), p.double())
    assert torch.allclose(to_scores(torch.tensor([[1.0, 2.0, 3.0]])).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_bad_inputs():
    ds = SyntheticDataset(2, 2)
    with pytest.raises(ArtTRTError, match="differ in shape"):
        compare_runners(TableRunner(np.zeros((2, 5), np.float32)), TableRunner(np.zeros((2, 6), np.float32)),
                        ds, 2, 1e-3, 1e-8, progress=False)
    with pytest.raises(ArtTRTError, match="must not be negative"):
        compare_runners(TableRunner(np.zeros((2, 5), np.float32)), TableRunner(np.zeros((2, 5), np.float32)),
                        ds, 2, -1e-3, 1e-8, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--compare", "-rtol=-1"], "must not be negative"),
    (["--compare", "--val_dataset"], "pass --dataset"),
    (["--compare", "--reference", "torch"], "BACKEND-PRECISION"),
])
def test_bad_compare_arguments(argv, message, tmp_path, capsys):
    assert cli_boundary(main.main, argv + ["--output", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_memory_stays_bounded():
    """Only running sums and flips are kept: the state does not grow with identical outputs."""
    s = CompareStats(1e-3, 1e-8)
    y = torch.randn(64, 1000)
    for _ in range(20):
        s.update(y, y.clone(), torch.full((64,), -1), ["x"] * 64)
    assert s.inputs == 1280 and not s.flips and s.summary()["isclose_percent"] == 100.0
    assert all(not isinstance(v, torch.Tensor) for v in vars(s).values())


def _records(folder):
    return [json.loads(p.read_text()) for p in (folder / "records").glob("compare-*.json")]


def test_torch_vs_onnxruntime_fp32_and_int8_on_the_packaged_photos(demo_data, tmp_path, capsys):
    base = ["--compare", "--network", "efficientnet_lite0", "--pretrained", "--val_dataset", "--dataset",
            str(demo_data), "--batch_size", "4", "--backend", "onnxrt", "--quiet", "--calib_size", "20"]
    assert main.main(base + ["--precision", "fp32", "--output", str(tmp_path / "fp32")]) == 0
    fp32 = _records(tmp_path / "fp32")[0]
    assert fp32["inputs"] == 20 and fp32["top1_agreement_percent"] == 100.0 and fp32["flips"] == 0
    assert fp32["max_abs_error"] < 1e-3 and fp32["isclose_percent"] > 99.0
    assert main.main(base + ["--precision", "int8", "--output", str(tmp_path / "int8"), "-rtol=1e-2"]) == 0
    int8 = _records(tmp_path / "int8")[0]
    assert int8["max_abs_error"] > fp32["max_abs_error"] * 100  # quantization is visible in the logits
    assert int8["top5_overlap_percent"] < 100.0 and int8["top1_agreement_percent"] >= 90.0
    # a flip is right->wrong, wrong->right, or one wrong class for another
    assert int8["ref_top1"] == 85.0 and int8["flips"] >= int8["right_to_wrong"] + int8["wrong_to_right"]
    out = capsys.readouterr().out
    assert "## Comparisons: onnxrt-int8 against torch-fp32 (20 inputs)" in out and "| rank | score MAE" in out
    md = list((tmp_path / "int8" / "compare").glob("*.md"))
    assert md and "Top-10 of the first input" in md[0].read_text()
    print(f"fp32: max abs {fp32['max_abs_error']:.2e}, isclose {fp32['isclose_percent']:.2f}%; "
          f"int8: top-1 agreement {int8['top1_agreement_percent']:.1f}%, top-5 overlap "
          f"{int8['top5_overlap_percent']:.1f}%, max abs {int8['max_abs_error']:.3f}, rel L2 {int8['rel_l2_error']:.3f}")


def test_random_inputs_and_flips_csv(demo_data, tmp_path):
    argv = ["--compare", "--network", "efficientnet_lite0", "--pretrained", "--backend", "onnxrt", "--precision",
            "int8", "--dataset", str(demo_data), "--calib_size", "20", "--num_inputs", "64", "--batch_size", "16",
            "--seed", "3", "--output", str(tmp_path), "--quiet"]
    assert main.main(argv) == 0
    rec = _records(tmp_path)[0]
    assert rec["inputs"] == 64 and rec["inputs_source"] == "random (seed 3)" and rec["labelled"] == 0
    flips = list((tmp_path / "compare").glob("*-flips.csv"))
    if rec["flips"]:
        rows = list(csv.DictReader(flips[0].open()))
        assert len(rows) == rec["flips"] and rows[0]["file"].startswith("random/")
    print(f"random inputs int8: top-1 agreement {rec['top1_agreement_percent']:.1f}%, flips {rec['flips']}")
