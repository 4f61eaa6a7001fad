"""Latency statistics in trtexec's terms: mean, min, max, percentiles, std and coefficient of variation,
computed by NumPy (percentiles with its default linear interpolation; std over the population, as trtexec).

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
