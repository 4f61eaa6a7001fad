"""--inspect's and --profile's tables: layers by precision with the drift of a quantized file, and where the time
goes per batch."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import Record
from utils.report.schema_types import Drift, LayerCounts
from utils.report.select import row_label


def _counts(precisions: Optional[Dict[str, int]]) -> str:
    return ", ".join(f"{p} {n}" for p, n in (precisions or {}).items()) or "-"


def inspect_markdown(records: Sequence[Record]) -> Doc:
    """--inspect: how many layers of each model file and engine run at each precision, and where a quantized
    file drifts from fp32 (the layers that add the most relative error); empty when nothing was inspected."""
    recs = [r for r in records if r.inspect is not None and r.kind == "validate"]
    if not recs:
        return compose()
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r in recs:
        i = r.inspect
        assert i is not None
        onnx, engine = i.onnx or LayerCounts(), i.engine or LayerCounts()
        drift: Optional[Drift] = i.drift
        rows.append([r.network, row_label(r), onnx.layers, _counts(onnx.precisions),
                     onnx.qdq_layers, engine.layers, _counts(engine.precisions),
                     fmt(drift.output_relative_error, 4) if drift else i.note or "-"])
        if drift:
            parts += [f"### Per-layer drift: {row_label(r)} against fp32 ({drift.images} calibration images)",
                      table(["layer", "op", "weight", "relative error", "added error"],
                               [[d.name, d.op, d.weight or "", f"{d.relative_error:.4f}",
                                 f"{d.added_error:+.4f}"] for d in drift.top_added])]
    head = table(["network", "runner", "ONNX layers", "ONNX layers by precision", "Q/DQ layers", "engine layers",
                     "engine layers by precision", "output drift (rel. L2)"], rows)
    return compose("## Inside the models (--inspect)", head, *parts)


def profile_markdown(records: Sequence[Record]) -> Doc:
    """--profile: per batch, wall time beside the host's operator time and the GPU's kernel time, and the
    operators that take the most; empty when nothing was profiled."""
    profiled = [(r, r.profile) for r in records if r.profile is not None and r.profile.wall_ms_per_batch is not None]
    recs = sorted(profiled, key=lambda rp: (str(rp[0].network), row_label(rp[0]), rp[1].batch_size or 0))
    if not recs:
        return compose()
    on_gpu = any(p.gpu_kernels_ms_per_batch is not None for _, p in recs)
    rows: List[List[Any]] = []
    parts: List[Any] = []
    for r, p in recs:
        rows.append([r.network, row_label(r), p.batch_size, fmt(p.wall_ms_per_batch, 3),
                     fmt(p.host_ops_ms_per_batch, 3), fmt(p.gpu_kernels_ms_per_batch, 3),
                     fmt(p.host_wait_ms_per_batch, 3)])
        parts += [f"### Top operators: {row_label(r)}, batch {p.batch_size} (per batch)",
                  table(["operator", "calls", "self CPU (ms)", "self GPU (ms)"],
                           [[o.op, fmt(o.calls_per_batch, 1), fmt(o.self_cpu_ms_per_batch, 3),
                             fmt(o.self_gpu_ms_per_batch, 3)] for o in p.top_ops[:5]])]
    head = table(["network", "runner", "batch", "wall (ms)", "host in operators (ms)", "GPU kernels (ms)",
                     "host waiting (ms)"], rows)
    return compose("## Where the time goes (--profile, per batch)",
                   ("Wall time well above GPU kernel time: the host sets the pace. " if on_gpu else
                    "On the CPU the operators are the work: wall time above operator time is the framework's own "
                    "cost. ") + "Profiled batches run synchronised and carry the profiler's own cost (host time "
                   "most): read the shares; the latencies above are the timed figures.", head, *parts)
