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
