"""What LoadGen wrote, read as LoadGen means it: its detail log (mlperf_log_detail.txt) as a run's figures and verdict,
and its accuracy log (mlperf_log_accuracy.json) as a top-1.

Usage:
    fields = summarize(read_detail(folder / "mlperf_log_detail.txt"), "server")
    fields.update(accuracy_of(folder / "mlperf_log_accuracy.json", labels, count))
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import read_text
from utils.measure.scenarios import PERCENTILES, SCENARIOS

if TYPE_CHECKING:
    import numpy as np
else:
    from utils.core.deps import np


def read_detail(path: Path) -> Dict[str, Any]:
    """LoadGen's detail log as key -> value (the last of each key), each line parsed as JSON and nothing else;
    also "_errors" and "_warnings": the messages LoadGen marked so."""
    out: Dict[str, Any] = {"_errors": [], "_warnings": []}
    for line in read_text(path, "LoadGen's detail log").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            item = json.loads(line[len(":::MLLOG "):])
        except ValueError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        if meta.get("is_error"):
            out["_errors"].append(str(item.get("value"))[:500])
        elif meta.get("is_warning"):
            out["_warnings"].append(str(item.get("value"))[:500])
        out[item["key"]] = item.get("value")
    return out


def _number(value: Any) -> Optional[float]:
    """A finite non-negative number from a log value, else None (a NaN in a log is not a figure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _ms(ns: Any) -> Optional[float]:
    v = _number(ns)
    return None if v is None else round(v / 1e6, 4)


def summarize(detail: Dict[str, Any], scenario: str) -> Dict[str, Any]:
    """The record's figures of one performance run from LoadGen's detail log: VALID or not and why, samples/s,
    latency percentiles (ms) and the early-stopping verdict."""
    reasons = []
    if detail.get("result_validity") != "VALID":
        checks = {"result_perf_constraints_met": "the latency constraint was not met",
                  "result_min_duration_met": "it ran shorter than --duration",
                  "result_min_queries_met": "too few queries were answered",
                  "early_stopping_met": "too few queries for LoadGen's early-stopping estimate of the percentile"}
        reasons = [why for key, why in checks.items() if detail.get(key) is False]
        said = detail.get("result_invalid_reason")
        reasons += [f"LoadGen: {str(said)[:500]}"] if isinstance(said, str) and said.strip() else []
        reasons += [f"LoadGen: {e}" for e in detail["_errors"][:3]]
        if not reasons:
            reasons = [f"LoadGen said {str(detail.get('result_validity'))[:40]!r}"]
    row = SCENARIOS[scenario]
    per_query = "_per_query" if row.per_query else ""  # MultiStream's figure is the query's latency
    latency = {f"p{p.rstrip('0').rstrip('.')}": _ms(detail.get(f"result_{p}_percentile{per_query}_latency_ns"))
               for p in PERCENTILES}
    q = "_query" if per_query else ""
    latency.update({k: _ms(detail.get(f"result_{k}{q}_latency_ns")) for k in ("min", "mean", "max")})
    if row.rate_key:  # Offline, Server, SingleStream (one sample per query, one query after the other)
        served = _number(detail.get(row.rate_key))
    else:  # queries of samples_per_query samples, one after the other: samples over the mean query latency
        mean_ns = _number(detail.get("result_mean_query_latency_ns"))
        spq = _number(detail.get("effective_samples_per_query"))
        served = spq * 1e9 / mean_ns if mean_ns and spq else None
    early = detail.get("early_stopping_result")
    processed = _int(detail.get("result_query_count"))
    more = NEED_MORE.search(str(early or ""))
    return {"loadgen_valid": detail.get("result_validity") == "VALID", "loadgen_invalid_reasons": reasons,
            "loadgen_verdict": verdict(detail),
            "queries_needed": processed + int(more.group(1)) if more and processed is not None else None,
            "samples_per_s": round(served, 2) if served is not None else None,
            "scheduled_samples_per_s": _round(_number(detail.get("result_scheduled_samples_per_sec"))),
            "latency_ms": {k: v for k, v in latency.items() if v is not None},
            "early_stopping": str(early).strip()[:1000] if early is not None else None,
            "overlatency_queries": _int(detail.get("result_overlatency_query_count")),
            "queries": _int(detail.get("result_query_count"))}


# LoadGen's early-stopping text where a run had too few queries to judge its percentile (results.cc, 6.0.x):
# " * Run unsuccessful. * Processed 21 queries. * Would need to run at least 438 more queries, ..."
NEED_MORE = re.compile(r"Would need to run at least (\d+) more quer")
VALID, OVER_BOUND, TOO_FEW, INVALID = "valid", "over the latency bound", "too few queries", "invalid"


def verdict(detail: Dict[str, Any]) -> str:
    """LoadGen's verdict of a performance run in one word, from the booleans it logs (as its summary prints them):
    VALID; over the latency bound (its percentile constraint not met, whatever else); too few queries (the latency
    within the bound, but the early-stopping estimate, the minimum query count or the minimum duration not met: a
    longer run would judge it); else invalid for a reason of LoadGen's own (result_invalid_reason)."""
    if detail.get("result_validity") == "VALID":
        return VALID
    if detail.get("result_perf_constraints_met") is False:
        return OVER_BOUND
    if any(detail.get(k) is False for k in ("early_stopping_met", "result_min_queries_met",
                                             "result_min_duration_met")):
        return TOO_FEW
    return INVALID


def too_few_queries(res: Dict[str, Any]) -> bool:
    """True where a run is INVALID for its query count, not its latency (verdict TOO_FEW); a record written before
    the verdict was kept is read from its reasons, which name the same booleans."""
    if res.get("loadgen_verdict") is not None:
        return res["loadgen_verdict"] == TOO_FEW
    reasons = [str(r) for r in res.get("loadgen_invalid_reasons") or []]
    return (res.get("loadgen_valid") is False and "the latency constraint was not met" not in reasons
            and any(r.startswith(("too few queries", "it ran shorter")) for r in reasons))


def duration_for(res: Dict[str, Any], duration_s: float) -> Optional[float]:
    """The --duration (s, whole) that would give a run of res's rate the queries LoadGen said it needs."""
    need, got = res.get("queries_needed"), res.get("queries")
    if not need or not got or not duration_s:
        return None
    return float(math.ceil(duration_s * need / got))


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


def _int(v: Any) -> Optional[int]:
    n = _number(v)
    return None if n is None else int(n)


def accuracy_of(path: Path, labels: np.ndarray, count: int) -> Dict[str, Any]:
    """Top-1 from LoadGen's accuracy log (mlperf_log_accuracy.json: each response's qsl_idx and data, the int32
    top-1 class): every sample must be answered exactly once; unlabelled samples (label < 0) do not count."""
    try:
        items = json.loads(read_text(path, "LoadGen's accuracy log") or "[]")
    except ValueError as err:
        raise ArtTRTError(f"{path} is not JSON ({first_line(err)}): the accuracy run's responses are lost") from err
    pred = np.full(count, -2, dtype=np.int64)
    seen = np.zeros(count, dtype=np.int64)
    for item in items if isinstance(items, list) else []:
        try:
            i = int(item["qsl_idx"])
            data = bytes.fromhex(item["data"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= i < count and len(data) == 4:
            seen[i] += 1
            pred[i] = int(np.frombuffer(data, dtype=np.int32)[0])
    labelled = labels[:count] >= 0
    answered_once = int((seen == 1).sum())
    fields: Dict[str, Any] = {"accuracy_samples": count, "accuracy_answered_once": answered_once}
    if answered_once != count:
        fields["accuracy_error"] = (f"LoadGen logged {answered_once} of {count} samples answered exactly once: "
                                    "the top-1 is not given")
        return fields
    if labelled.any():
        fields["top1"] = round(100.0 * float((pred[labelled] == labels[:count][labelled]).mean()), 3)
        fields["labelled_images"] = int(labelled.sum())
    fields["images"] = count
    fields["nonfinite_outputs"] = int((pred == -1).sum())
    return fields
