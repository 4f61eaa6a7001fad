"""Cells that several tables show alike: a record's size, its top-1 or top-5 with its marks, its images/s."""
from __future__ import annotations

from typing import Any, Dict, Sequence

from utils.report.doc import fmt
from utils.report.select import RANDOM_WEIGHTS, UNSTABLE, random_weights, unstable_reason


def size_mib(r: Dict[str, Any]) -> str:
    """Size in MiB (2**20 bytes), as the original printed it; records before 2026-11-29 kept MB (10**6 bytes)."""
    if r.get("size_mib") is not None:
        return fmt(float(r["size_mib"]), 2)
    return fmt(float(r["size_mb"]) * 1e6 / 2**20, 2) if r.get("size_mb") is not None else "-"


def accuracy(r: Dict[str, Any], key: str) -> str:
    """top-1 or top-5 of a record, marked where the network had random weights (the figure measures nothing) and
    where outputs were not numbers (those images count as wrong)."""
    v = r.get(key)
    if v is None:
        return "-"
    marks = [RANDOM_WEIGHTS] * random_weights(r)
    if r.get("nonfinite_outputs"):
        marks.append(f"NaN/Inf on {r['nonfinite_outputs']} img")
    if r.get("unrankable_outputs"):
        marks.append(f"flat on {r['unrankable_outputs']} img")
    return f"{fmt(v)} ({'; '.join(marks)})" if marks else fmt(v)


def rate(r: Dict[str, Any], peers: Sequence[Dict[str, Any]]) -> str:
    """images/s, marked where the row's timing is unstable."""
    text = fmt(r.get("images_per_s"), 1)
    return text + UNSTABLE if text != "-" and unstable_reason(r, peers) else text
