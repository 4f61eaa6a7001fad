"""Per-layer drift of a quantized ONNX file: where int8/fp8 loses what the fp32 model computes.

Every layer output that the quantized file shares with the fp32 file it was made from (ModelOpt and ONNX
Runtime's quantizer keep the tensor names) is exposed as a graph output of both; a few calibration images run
through both with ONNX Runtime on the CPU, all graph optimisations off (so the quantized file runs as written:
fake-quantized, no fusion that would hide an output). For each layer:

  relative error = ||quantized - fp32||_2 / ||fp32||_2   over all images, and
  added error    = its relative error minus the largest of the layers that feed it (what this layer adds).

Error accumulates along the network, so the layer with the largest relative error is usually the last; the
one with the largest added error is where to look first. Memory stays bounded: one image at a time, running sums.

Usage:
    rows = layer_drift(Path("m-fp32.onnx"), Path("m-int8.onnx"), calib_images[:8])
    worst = top_drift(rows, 5, "added_error")  # (drawn by utils/report/sections/look_inside_tables.py)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

import numpy as np

from utils.core.errors import ArtTRTError
from utils.models.onnx_export import import_onnxruntime
from utils.models.onnx_layers import is_layer, onnx_layers, tensor_types

if TYPE_CHECKING:
    import onnx
else:
    from utils.core.deps import onnx


def _with_outputs(model: Any, names: List[str]) -> bytes:
    have = {o.name for o in model.graph.output}
    types = tensor_types(model)
    for n in names:
        if n not in have:
            elem = types.get(n, (onnx.TensorProto.FLOAT,))[0] or onnx.TensorProto.FLOAT
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, elem, None))
    return bytes(model.SerializeToString())


def _session(data: bytes) -> Any:
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def layer_drift(fp32_path: Path, quant_path: Path, images: np.ndarray) -> List[Dict[str, Any]]:
    """One row per shared layer output, in graph order: name, op, Q/DQ-fenced, relative and added error."""

    if len(images) < 1:
        raise ArtTRTError("per-layer drift needs at least one image")
    ref = onnx.load(str(fp32_path))
    quant = onnx.load(str(quant_path))
    ref_outputs = {o for n in ref.graph.node for o in n.output} | {o.name for o in ref.graph.output}
    layers = {r["name"]: r for r in onnx_layers(quant_path)}
    compared: List[Dict[str, Any]] = []
    for node in quant.graph.node:
        if not is_layer(node) or not node.output:
            continue
        out = node.output[0]
        if out in ref_outputs:
            row = layers.get(node.name or out, {})
            compared.append({"name": node.name or out, "op": node.op_type, "tensor": out, "qdq": row.get("qdq", False),
                             "weight": row.get("weight", ""), "inputs": [i for i in node.input if i]})
    if not compared:
        raise ArtTRTError(f"{quant_path.name} shares no layer output with {fp32_path.name}: it was not made from it")
    names = [c["tensor"] for c in compared]
    s_ref, s_q = _session(_with_outputs(ref, names)), _session(_with_outputs(quant, names))
    diff_sq = np.zeros(len(names))
    ref_sq = np.zeros(len(names))
    for img in images:
        feed_ref = {s_ref.get_inputs()[0].name: img[None].astype(np.float32)}
        feed_q = {s_q.get_inputs()[0].name: img[None].astype(np.float32)}
        a = s_ref.run(names, feed_ref)
        b = s_q.run(names, feed_q)
        for i, (x, y) in enumerate(zip(a, b)):
            x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
            diff_sq[i] += float(((y64 - x64) ** 2).sum())
            ref_sq[i] += float((x64 ** 2).sum())
    rel = {c["tensor"]: (math.sqrt(d / r) if r > 0 else math.inf) for c, d, r in zip(compared, diff_sq, ref_sq)}
    # what feeds each layer: the compared tensors upstream of its inputs, through Q/DQ and uncompared nodes
    producer = {o: n for n in quant.graph.node for o in n.output}

    def upstream(tensor: str, seen: set) -> List[str]:
        if tensor in rel:
            return [tensor]
        node = producer.get(tensor)
        if node is None or tensor in seen:
            return []
        seen.add(tensor)
        return [u for i in node.input if i for u in upstream(i, seen)]

    rows = []
    for c in compared:
        feeds = [u for i in c["inputs"] for u in upstream(i, set())]
        before = max((rel[u] for u in feeds), default=0.0)
        rows.append({"name": c["name"], "op": c["op"], "tensor": c["tensor"], "qdq": c["qdq"], "weight": c["weight"],
                     "relative_error": rel[c["tensor"]], "added_error": rel[c["tensor"]] - before,
                     "images": int(len(images))})
    return rows


def top_drift(rows: List[Dict[str, Any]], top: int = 5, key: str = "added_error") -> List[Dict[str, Any]]:
    """The Q/DQ-fenced layers (all layers where none is fenced) with the largest `key`, largest first."""
    fenced = [r for r in rows if r["qdq"]] or rows
    return sorted(fenced, key=lambda r: r[key], reverse=True)[:top]
