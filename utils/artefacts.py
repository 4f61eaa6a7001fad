"""Cached build steps: network -> ONNX -> precision-converted ONNX -> engine, each keyed by what made it.

Composable like Polygraphy's loaders; every artefact sits under weights/ with a JSON sidecar that
says how it was made, and is reused until what it was made from changes.

Usage:
    path, facts = onnx_for(net, (-1, 3, 224, 224))
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from utils.fileio import atomic_write_json, cache_key, file_sha256, read_json
from utils.networks import Network

log = logging.getLogger(__name__)


def weights_dir() -> Path:
    return Path(os.environ.get("ARTTRT_WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))


def weights_id(net: Network) -> str:
    """What the network's weights are, for cache keys: a file hash, a packaged name, or random+seed."""
    if os.path.isfile(net.weights):
        return "sha256:" + file_sha256(net.weights)[:16]
    return net.weights


def onnx_for(net: Network, input_shape: Sequence[int], exporter: str = "auto",
             folder: Optional[Path] = None) -> Tuple[Path, Dict[str, Any]]:
    """The exported ONNX file of `net` at `input_shape`, exported once and reused.

    Returns:
        (path, facts) where facts holds the export facts and seconds spent now (0 when cached).
    """
    from utils.onnx_export import OPSET, export_onnx

    folder = folder or weights_dir() / "onnx"
    b = "dyn" if int(input_shape[0]) == -1 else f"b{int(input_shape[0])}"
    key = cache_key({"network": net.name, "weights": weights_id(net), "shape": list(input_shape),
                     "exporter": exporter, "opset": OPSET, "num_classes": net.num_classes})
    path = folder / f"{net.name}-{b}-{input_shape[2]}x{input_shape[3]}-fp32-{key}.onnx"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        facts = read_json(sidecar)
        log.info("reusing %s", path)
        return path, {**facts, "prepare_s": 0.0, "cached": True}
    t0 = time.perf_counter()
    facts = export_onnx(net, path, input_shape, exporter=exporter)
    facts.update({"network": net.name, "weights": net.weights, "input_shape": list(input_shape), "key": key})
    atomic_write_json(sidecar, facts)
    return path, {**facts, "prepare_s": round(time.perf_counter() - t0, 3), "cached": False}
