"""--inspect's and --profile's tables: layers by precision with the drift of a quantized file, and where the time
goes per batch."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from utils.report.doc import Doc, compose, fmt, table
from utils.report.select import row_label


def _counts(precisions: Optional[Dict[str, int]]) -> str:
    return ", ".join(f"{p} {n}" for p, n in (precisions or {}).items()) or "-"


def inspect_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """--inspect: how many layers of each model file and engine run at each precision, and where a quantized
    file drifts from fp32 (the layers that add the most relative error); empty when nothing was inspected."""
    recs = [r for r in records if isinstance(r.get("inspect"), dict) and r["kind"] == "validate"]
    if not recs:
        return compose()
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r in recs:
        i = r["inspect"]
        onnx, engine, drift = i.get("onnx") or {}, i.get("engine") or {}, i.get("drift") or {}
        rows.append([r.get("network"), row_label(r), onnx.get("layers"), _counts(onnx.get("precisions")),
                     onnx.get("qdq_layers"), engine.get("layers"), _counts(engine.get("precisions")),
                     fmt(drift.get("output_relative_error"), 4) if drift else i.get("note", "-")])
        if drift:
            parts += [f"### Per-layer drift: {row_label(r)} against fp32 ({drift['images']} calibration images)",
                      table(["layer", "op", "weight", "relative error", "added error"],
                               [[d["name"], d["op"], d.get("weight") or "", f"{d['relative_error']:.4f}",
                                 f"{d['added_error']:+.4f}"] for d in drift.get("top_added") or []])]
    head = table(["network", "runner", "ONNX layers", "ONNX layers by precision", "Q/DQ layers", "engine layers",
                     "engine layers by precision", "output drift (rel. L2)"], rows)
    return compose("## Inside the models (--inspect)", head, *parts)


def profile_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """--profile: per batch, wall time beside the host's operator time and the GPU's kernel time, and the
    operators that take the most; empty when nothing was profiled."""
    recs = sorted((r for r in records if isinstance(r.get("profile"), dict)
                   and r["profile"].get("wall_ms_per_batch") is not None),
                  key=lambda r: (str(r.get("network")), row_label(r), r["profile"].get("batch_size") or 0))
    if not recs:
        return compose()
    on_gpu = any(r["profile"].get("gpu_kernels_ms_per_batch") is not None for r in recs)
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r in recs:
        p = r["profile"]
        rows.append([r.get("network"), row_label(r), p.get("batch_size"), fmt(p.get("wall_ms_per_batch"), 3),
                     fmt(p.get("host_ops_ms_per_batch"), 3), fmt(p.get("gpu_kernels_ms_per_batch"), 3),
                     fmt(p.get("host_wait_ms_per_batch"), 3)])
        parts += [f"### Top operators: {row_label(r)}, batch {p.get('batch_size')} (per batch)",
                  table(["operator", "calls", "self CPU (ms)", "self GPU (ms)"],
                           [[o["op"], fmt(o["calls_per_batch"], 1), fmt(o["self_cpu_ms_per_batch"], 3),
                             fmt(o.get("self_gpu_ms_per_batch"), 3)] for o in (p.get("top_ops") or [])[:5]])]
    head = table(["network", "runner", "batch", "wall (ms)", "host in operators (ms)", "GPU kernels (ms)",
                     "host waiting (ms)"], rows)
    return compose("## Where the time goes (--profile, per batch)",
                   ("Wall time well above GPU kernel time: the host sets the pace. " if on_gpu else
                    "On the CPU the operators are the work: wall time above operator time is the framework's own "
                    "cost. ") + "Profiled batches run synchronised and carry the profiler's own cost (host time "
                   "most): read the shares; the latencies above are the timed figures.", head, *parts)
