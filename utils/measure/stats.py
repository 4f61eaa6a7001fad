"""Latency statistics in trtexec's terms: mean, min, max, percentiles, std and coefficient of variation.

Usage:
    s = latency_stats([1.2, 1.3, 1.25])   # milliseconds
    s["p99"], s["cv_percent"]
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

CV_WARN_PERCENT = 2.5  # trtexec warns when the coefficient of variation exceeds 2.5 %
PERCENTILES = (50, 90, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    pos = (n - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def latency_stats(values_ms: Sequence[float]) -> Dict[str, float]:
    """Summary of per-batch latencies in ms; empty input gives NaNs and count 0."""
    v = sorted(float(x) for x in values_ms)
    n = len(v)
    if n == 0:
        return {"count": 0, "mean": math.nan, "min": math.nan, "max": math.nan, "std": math.nan,
                "cv_percent": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    mean = math.fsum(v) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / n)  # population std, as trtexec
    out = {"count": n, "mean": mean, "min": v[0], "max": v[-1], "std": std,
           "cv_percent": 100.0 * std / mean if mean > 0 else math.nan}
    out.update({f"p{q}": percentile(v, q) for q in PERCENTILES})
    return out


def unstable(stats: Dict[str, float]) -> bool:
    """True when the coefficient of variation is above trtexec's 2.5 % rule."""
    cv = stats.get("cv_percent", math.nan)
    return bool(np.isfinite(cv) and cv > CV_WARN_PERCENT)
