"""The comparison loop: statistics checked against an independent numpy calculation, bounded memory."""
from __future__ import annotations

import math

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


def test_isclose_scales_the_tolerance_by_the_reference():
    """numpy.isclose(other, ref): |other - ref| <= atol + rtol * |ref|. 101 against a reference of 100 at
    rtol 0.00995 is not close (1 > 0.995); with the roles swapped it is (1 <= 1.00495). Equality is close."""
    def close(ref, other, rtol, atol):
        s = CompareStats(rtol=rtol, atol=atol)
        s.update(torch.tensor([ref]), torch.tensor([other]), torch.tensor([-1]), ["a"])
        return s.close, s.values, s.summary()["isclose_percent"]

    assert close([100.0, 0.0], [101.0, 0.0], 0.00995, 0.0) == (1, 2, 50.0)
    assert close([101.0, 0.0], [100.0, 0.0], 0.00995, 0.0) == (2, 2, 100.0)
    assert close([100.0, 0.0], [101.0, 0.0], 0.0, 1.0) == (2, 2, 100.0)  # |diff| == atol: close
    assert close([100.0, 0.0], [101.0, 0.0], 0.0, 0.999) == (1, 2, 50.0)


def test_flips_both_ways_labels_and_logit_ranks_by_hand():
    """Five inputs over three classes, worked out by hand: one right->wrong, one wrong->right, one flip where
    both are wrong, one unlabelled flip, one agreement."""
    ref = torch.tensor([[3.0, 1.0, 0.0],    # ref says 0, label 1: other (1) goes wrong -> right
                        [3.0, 1.0, 0.0],    # ref says 0, label 0: other (1) goes right -> wrong
                        [0.0, 1.0, 3.0],    # ref says 2, label 0, other says 1: both wrong
                        [0.0, 3.0, 1.0],    # both say 1, label 1
                        [3.0, 0.0, 1.0]])   # ref says 0, other 2, no label
    other = torch.tensor([[1.0, 2.0, 0.0],
                          [1.0, 2.0, 0.0],
                          [0.0, 3.0, 1.0],
                          [0.0, 3.0, 1.0],
                          [1.0, 0.0, 3.0]])
    labels = torch.tensor([1, 0, 0, 1, -1])
    s = CompareStats(1e-3, 1e-8, class_names=["tench", "goldfish", "shark"])
    s.update(ref[:2], other[:2], labels[:2], ["a", "b"])  # two batches, as the loop gives them
    s.update(ref[2:], other[2:], labels[2:], ["c", "d", "e"])
    out = s.summary()
    assert (out["right_to_wrong"], out["wrong_to_right"], out["flips"], out["labelled"]) == (1, 1, 4, 4)
    assert out["ref_top1"] == 50.0 and out["other_top1"] == 50.0 and out["top1_agreement_percent"] == 20.0
    assert [(f["file"], f["true_class"], f["ref_class"], f["other_class"]) for f in s.flips] == [
        ("a", 1, 0, 1), ("b", 0, 0, 1), ("c", 0, 2, 1), ("e", None, 0, 2)]
    p = torch.softmax(torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64), 0)
    assert s.flips[0]["ref_score"] == pytest.approx(float(p[0]))
    # each side's k-th largest logit, whatever its class: rank 1 is 3 vs 2 twice, else equal; ranks 2-3 equal
    assert out["rank_logit_mae"] == pytest.approx([2 / 5, 0.0, 0.0])
    assert out["rank_class_diff_percent"] == pytest.approx([80.0, 80.0, 0.0])
    assert out["top5_overlap_percent"] == pytest.approx(100.0)  # three classes: the top-3 sets always agree
    assert [(e["rank"], e["ref_class"], e["other_class"]) for e in out["example_top10"]] == [
        (1, 0, 1), (2, 1, 0), (3, 2, 2)]  # the first input's ranks
    assert out["example_top10"][0]["ref_score"] == pytest.approx(float(p[0]))
    assert s.label(1) == "1 goldfish" and s.label(3) == "3" and s.label(-1) == "none (NaN/Inf output)"
    assert CompareStats(0, 0).label(2) == "2"


class FirstPixelRunner(Runner):
    """Logits naming the class written in each image's first pixel; fixed-shape when asked (then it must be
    given full batches: it records what it saw)."""

    backend = "pixel"

    def __init__(self, fixed: bool):
        super().__init__(Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
        self.fixed, self.seen = fixed, []

    @property
    def fixed_shape(self) -> bool:
        return self.fixed

    def infer(self, x):
        self.seen.append(x.shape[0])
        label = (x[:, 0, 0, 0] * 255).round().long()
        return torch.nn.functional.one_hot(label, 4).float() * 5


def test_a_fixed_shape_runner_gets_full_batches_and_its_padding_is_dropped():
    images = np.zeros((5, 3, 2, 2), np.uint8)
    images[:, 0, 0, 0] = [0, 1, 2, 3, 1]
    ds = CachedDataset(images, np.array([0, 1, 2, 3, 1]), [f"f{i}" for i in range(5)], {})
    fixed, free = FirstPixelRunner(True), FirstPixelRunner(False)
    s = compare_runners(free, fixed, ds, batch_size=4, rtol=0.0, atol=0.0, progress=False).summary()
    assert fixed.seen == [4, 4] and free.seen == [4, 1]
    assert s["inputs"] == 5 and s["isclose_percent"] == 100.0 and s["other_top1"] == 100.0 and s["flips"] == 0
    limited = compare_runners(FirstPixelRunner(False), FirstPixelRunner(False), ds, batch_size=2, rtol=0.0,
                              atol=0.0, limit=3, progress=False).summary()
    assert limited["inputs"] == 3 and limited["labelled"] == 3


def test_scores_are_softmax_unless_already_probabilities():
    assert torch.allclose(to_scores(torch.tensor([[0.5, 0.2, 0.3]])), torch.tensor([[0.5, 0.2, 0.3]]).double())
    neg = torch.tensor([[1.2, -0.1, -0.1]])  # sums to 1 but is not a distribution: logits, softmaxed
    assert torch.allclose(to_scores(neg), torch.softmax(neg.double(), 1))
    near = torch.tensor([[0.5, 0.2, 0.3009]])  # within 1e-3 of summing to one: kept
    assert torch.equal(to_scores(near), near.double())
    assert not torch.equal(to_scores(torch.tensor([[0.5, 0.2, 0.302]])), torch.tensor([[0.5, 0.2, 0.302]]).double())


def test_summary_edges_one_input_tiny_and_zero_references():
    s = CompareStats(1e-3, 1e-8)
    s.update(torch.tensor([[2.0]]), torch.tensor([[2.0]]), torch.tensor([0]), ["only"])  # one input, one class
    out = s.summary()
    assert out["isclose_percent"] == 100.0 and out["top1_agreement_percent"] == 100.0 and out["inputs"] == 1
    assert out["rtol"] == 1e-3 and out["atol"] == 1e-8 and out["rel_l2_error"] == 0.0
    small = CompareStats(0.0, 0.0)
    small.update(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.1, 0.3]]), torch.tensor([-1]), ["s"])
    assert small.summary()["rel_l2_error"] == pytest.approx(0.1 / math.sqrt(0.05), rel=1e-6)  # |ref| < 1
    zero = CompareStats(0.0, 0.0)
    zero.update(torch.zeros((1, 2)), torch.ones((1, 2)), torch.tensor([-1]), ["z"])
    assert zero.summary()["rel_l2_error"] is None and zero.summary()["max_abs_error"] == 1.0  # no 0/0
    assert CompareStats(0.0, 0.0).summary()["isclose_percent"] is None  # nothing compared yet: no figure


def test_scores_in_the_example_and_the_flips_are_each_sides_own():
    ref, other = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[0.0, 1.0, 3.0]])
    s = CompareStats(1e-3, 1e-8, class_names=["tench", "goldfish", "shark"])
    s.update(ref, other, torch.tensor([0]), ["x"])
    pr, po = torch.softmax(ref.double(), 1)[0], torch.softmax(other.double(), 1)[0]
    ex = s.summary()["example_top10"]
    assert [e["other_score"] for e in ex] == pytest.approx(sorted(po.tolist(), reverse=True))
    assert [e["ref_score"] for e in ex] == pytest.approx(sorted(pr.tolist(), reverse=True))
    assert s.flips[0]["other_score"] == pytest.approx(float(po[2])) and s.flips[0]["ref_score"] == pytest.approx(
        float(pr[0]))
    assert s.label(0) == "0 tench"


def test_probabilities_are_recognised_row_by_row():
    two = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.2, 0.6]])  # each row sums to 1; a zero is a probability
    assert torch.equal(to_scores(two), two.double())
    halves = torch.tensor([[0.5, 0.0], [0.5, 0.0]])  # the whole batch sums to 1, no row does: logits
    assert torch.allclose(to_scores(halves), torch.softmax(halves.double(), 1))
