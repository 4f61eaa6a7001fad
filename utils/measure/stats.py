"""Latency statistics in trtexec's terms: mean, min, max, percentiles, std and coefficient of variation,
computed by NumPy (percentiles with its default linear interpolation; std over the population, as trtexec).

Usage:
    s = latency_stats([1.2, 1.3, 1.25])   # milliseconds
    s["p99"], s["cv_percent"]
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import numpy as np

CV_WARN_PERCENT = 2.5  # trtexec warns when the coefficient of variation exceeds 2.5 %
PERCENTILES = (50, 90, 99)


def latency_stats(values_ms: Sequence[float]) -> Dict[str, float]:
    """Summary of per-batch latencies in ms; empty input gives NaNs and count 0."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": math.nan, "min": math.nan, "max": math.nan, "std": math.nan,
                "cv_percent": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    mean, std = float(v.mean()), float(v.std())
    out = {"count": int(v.size), "mean": mean, "min": float(v.min()), "max": float(v.max()), "std": std,
           "cv_percent": 100.0 * std / mean if mean > 0 else math.nan}
    out.update({f"p{q}": float(p) for q, p in zip(PERCENTILES, np.percentile(v, PERCENTILES))})
    return out


def unstable(stats: Dict[str, float]) -> bool:
    """True when the coefficient of variation is above trtexec's 2.5 % rule."""
    cv = stats.get("cv_percent", math.nan)
    return bool(np.isfinite(cv) and cv > CV_WARN_PERCENT)


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def block_bootstrap(values_ms: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                    ) -> Dict[str, Any]:
    """95 % intervals of the mean, p50 and p99 of per-batch latencies by the moving-block bootstrap (Künsch 1989):
    blocks of consecutive batches (length about n^(1/3)) resampled whole, so a drift or a burst of slow batches
    (clocks, another process) stays together instead of averaging away as it would if batches were drawn one by one.
    {} with fewer than 10 batches (too few to say)."""
    v = np.asarray(values_ms, dtype=np.float64)
    n = v.size
    if n < 10:
        return {}
    block = max(1, int(round(n ** (1 / 3))))
    k = -(-n // block)
    rng = np.random.default_rng(seed)
    means, p50s, p99s = [], [], []
    for chunk in range(0, resamples, 100):  # in chunks: at most 100 x n values at once
        m = min(100, resamples - chunk)
        starts = rng.integers(0, n - block + 1, size=(m, k))
        idx = (starts[:, :, None] + np.arange(block)).reshape(m, -1)[:, :n]
        sample = v[idx]
        means.append(sample.mean(axis=1))
        p50s.append(np.percentile(sample, 50, axis=1))
        p99s.append(np.percentile(sample, 99, axis=1))
    out: Dict[str, Any] = {"batches": int(n), "block": block, "resamples": resamples}
    for name, got in (("mean", means), ("p50", p50s), ("p99", p99s)):
        low, high = np.percentile(np.concatenate(got), [2.5, 97.5])
        out[name] = [float(low), float(high)]
    return out
