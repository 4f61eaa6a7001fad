"""The comparison loop: statistics checked against an independent numpy calculation, bounded memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.backends.base import Runner
from utils.core.errors import ArtTRTError
from utils.data.cache import CachedDataset, SyntheticDataset
from utils.data.preprocess import Preprocess
from utils.measure.compare import CompareStats, compare_runners, to_scores


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


def test_memory_stays_bounded():
    """Only running sums and flips are kept: the state does not grow with identical outputs."""
    s = CompareStats(1e-3, 1e-8)
    y = torch.randn(64, 1000)
    for _ in range(20):
        s.update(y, y.clone(), torch.full((64,), -1), ["x"] * 64)
    assert s.inputs == 1280 and not s.flips and s.summary()["isclose_percent"] == 100.0
    assert all(not isinstance(v, torch.Tensor) for v in vars(s).values())
