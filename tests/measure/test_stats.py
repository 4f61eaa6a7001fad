"""Latency statistics in trtexec's terms, against numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.measure.stats import latency_stats, unstable


def test_latency_stats_against_numpy():
    rng = np.random.default_rng(1)
    v = rng.gamma(2.0, 1.5, size=257)
    s = latency_stats(v.tolist())
    assert s["mean"] == pytest.approx(v.mean()) and s["std"] == pytest.approx(v.std())
    assert s["min"] == v.min() and s["max"] == v.max() and s["count"] == 257
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(v, q))
    assert s["cv_percent"] == pytest.approx(100 * v.std() / v.mean())
    assert unstable(s)  # a gamma sample varies far more than 2.5 %
    steady = latency_stats([10.0, 10.1, 9.9, 10.0])
    assert not unstable(steady) and steady["p50"] == 10.0
    assert math.isnan(latency_stats([])["mean"])


def test_no_latencies_give_every_key_as_nan_and_count_zero():
    s = latency_stats([])
    assert set(s) == set(latency_stats([1.0]))  # the same keys as a real summary: tables never miss one
    assert s["count"] == 0 and all(math.isnan(v) for k, v in s.items() if k != "count")
    assert not unstable(s) and not unstable({})  # no figure is not an unstable figure


def test_sub_millisecond_latencies_and_zero():
    """TensorRT batches take well under 1 ms: their CV is a number; an all-zero list (a clock that did not move)
    has none rather than a division by zero."""
    s = latency_stats([0.5, 0.52, 0.48, 0.5])
    assert s["cv_percent"] == pytest.approx(100 * np.std([0.5, 0.52, 0.48, 0.5]) / 0.5)
    assert math.isnan(latency_stats([0.0, 0.0])["cv_percent"])
    assert latency_stats([3, 4])["mean"] == 3.5  # integers are averaged as floats


def test_trtexec_rule_is_strictly_above_two_and_a_half_percent():
    assert not unstable({"cv_percent": 2.5}) and unstable({"cv_percent": 2.51})
    assert not unstable({"cv_percent": math.nan})
