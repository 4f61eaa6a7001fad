"""The tables --inspect writes beside a run's results (outputs/inspect/): an ONNX file's layers, a quantized file's
per-layer drift from fp32, a TensorRT engine's layers; and the log's table of a --mixed_precision search. The lower
layers return rows (utils/models/onnx_layers.py, drift.py, mixed_precision.py, utils/backends/tensorrt/
engine_layers.py); they are drawn here, with the one table helper (utils/report/doc.py).

Usage:
    text = onnx_layers_doc("x-int8.onnx", onnx_layers(path))
"""
from __future__ import annotations

import collections
from typing import Any, Dict, List, Sequence

from utils.report.doc import Doc, compose, table


def _counts(rows: Sequence[Dict[str, Any]], key: str = "precision") -> str:
    return ", ".join(f"{p} {n}" for p, n in collections.Counter(r[key] for r in rows).most_common())


def onnx_layers_doc(title: str, layers: List[Dict[str, Any]]) -> Doc:
    """One row per ONNX layer: op, name, weight, precision, Q/DQ, parameters, inputs, outputs."""
    rows = [[i, r["op"], r["name"], r["weight"], r["precision"], "yes" if r["qdq"] else "", f"{r['params']:,}",
             "; ".join(r["inputs"]), "; ".join(r["outputs"])] for i, r in enumerate(layers)]
    return compose(f"# {title}", f"{len(layers)} layers ({_counts(layers)}); "
                                 f"{sum(r['params'] for r in layers):,} parameters.",
                   table(["#", "op", "name", "weight", "precision", "Q/DQ", "parameters", "inputs", "outputs"], rows))


def drift_doc(rows: List[Dict[str, Any]], ranked: Dict[str, List[Dict[str, Any]]]) -> Doc:
    """Per-layer drift against fp32: the layers that add the most error, and those with the largest relative error
    (ranked: utils.models.drift.top_drift by each key)."""
    def part(key: str) -> Doc:
        return table(["layer", "op", "weight", "output", "relative error", "added error"],
                     [[r["name"], r["op"], r["weight"], r["tensor"], f"{r['relative_error']:.4f}",
                       f"{r['added_error']:+.4f}"] for r in ranked[key]])

    n = rows[0]["images"] if rows else 0
    last = rows[-1] if rows else None
    head = (f"Per-layer drift against fp32 on {n} calibration images ({len(rows)} layers compared; "
            f"the output's relative error {last['relative_error']:.4f})." if last else "No layer compared.")
    return compose(head, "Layers that add the most error:", part("added_error"),
                   "Layers with the largest relative error:", part("relative_error"))


def engine_layers_doc(title: str, rows: List[Dict[str, Any]]) -> Doc:
    """One row per engine layer (TensorRT's engine inspector): type, precision, name, tactic."""
    note = "" if any(r["type"] != "?" for r in rows) else (
        " The engine was built without ProfilingVerbosity.DETAILED: names only.")
    return compose(f"# {title}", f"{len(rows)} engine layers ({_counts(rows)}).{note}",
                   table(["#", "type", "precision", "name", "tactic"],
                         [[i, r["type"], r["precision"], r["name"], r["tactic"]] for i, r in enumerate(rows)]))
