"""--inspect and --profile for a runner that has just been validated and timed (main.py -v), and --inspect for
build_trt.py: what the model file and the engine hold, where a quantized file drifts from fp32, and where the
time of a batch goes. Files go under the results folder (outputs/inspect/, outputs/profiles/); the record
keeps the summary, from which the report draws.

Usage:
    summary = inspect_runner(runner, "int8", facts, runner.info(), Path("outputs/inspect"), (8, 3, 224, 224))
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from utils.backends.base import Runner
from utils.backends.tensorrt.engine_layers import engine_layers, engine_precision_counts
from utils.core.fileio import atomic_write_text
from utils.models.drift import layer_drift, top_drift
from utils.models.onnx_layers import onnx_layers, polygraphy_text, precision_counts
from utils.report.sections.look_inside_tables import drift_doc, engine_layers_doc, onnx_layers_doc

log = logging.getLogger(__name__)
DRIFT_IMAGES = 8  # calibration images through both files for per-layer drift (ONNX Runtime, CPU)
QUANTIZED = ("int8", "fp8")


def write_drift(fp32_onnx: Path, quant_onnx: Path, calib_data: Path, folder: Path) -> Dict[str, Any]:
    """Per-layer drift of quant_onnx against fp32_onnx on the first DRIFT_IMAGES calibration images."""
    images = np.load(calib_data)[:DRIFT_IMAGES]  # allow_pickle stays False
    rows = layer_drift(fp32_onnx, quant_onnx, images)
    stem = folder / quant_onnx.stem
    atomic_write_text(stem.with_name(stem.name + ".drift.json"), json.dumps(rows, indent=1))
    ranked = {key: top_drift(rows, 5, key) for key in ("added_error", "relative_error")}
    atomic_write_text(stem.with_name(stem.name + ".drift.md"), drift_doc(rows, ranked))
    keep = ("name", "op", "weight", "relative_error", "added_error")
    return {"file": str(quant_onnx), "reference": str(fp32_onnx), "images": len(images), "layers": len(rows),
            "output_relative_error": rows[-1]["relative_error"],
            "top_added": [{k: r[k] for k in keep} for r in ranked["added_error"]],
            "table": str(stem.with_name(stem.name + ".drift.md"))}


def write_engine_inspection(info: Dict[str, Any], name: str, folder: Path) -> Dict[str, Any]:
    """<name>.engine-layers.json (the inspector's JSON) and .md (its table) under folder; returns the summary."""
    rows = engine_layers(info)
    stem = folder / name
    atomic_write_text(stem.with_name(stem.name + ".engine-layers.json"), json.dumps(info, indent=1))
    atomic_write_text(stem.with_name(stem.name + ".engine-layers.md"), engine_layers_doc(name, rows))
    return {"layers": len(rows), "precisions": engine_precision_counts(rows),
            "table": str(stem.with_name(stem.name + ".engine-layers.md"))}


def write_onnx_inspection(path: Path, folder: Path) -> Dict[str, Any]:
    """<stem>.layers.md, .layers.json and .polygraphy.txt under folder; returns the record's summary."""
    layers = onnx_layers(path)
    stem = folder / path.stem
    atomic_write_text(stem.with_name(stem.name + ".layers.json"), json.dumps(layers, indent=1))
    atomic_write_text(stem.with_name(stem.name + ".layers.md"), onnx_layers_doc(path.name, layers))
    atomic_write_text(stem.with_name(stem.name + ".polygraphy.txt"), polygraphy_text(path))
    return {"file": str(path), "layers": len(layers), "precisions": precision_counts(layers),
            "qdq_layers": sum(r["qdq"] for r in layers), "table": str(stem.with_name(stem.name + ".layers.md"))}


def inspect_model(onnx: Optional[Path], precision: str, facts: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """The ONNX file's layer table and, for a quantized file made from an fp32 one, its per-layer drift."""
    out: Dict[str, Any] = {}
    if onnx is not None and onnx.is_file():
        out["onnx"] = write_onnx_inspection(onnx, folder)
        source, calib = facts.get("source_onnx"), facts.get("calib_data")
        if precision in QUANTIZED and source and calib and Path(source).is_file() and Path(calib).is_file():
            out["drift"] = write_drift(Path(source), onnx, Path(calib), folder)
        elif precision in QUANTIZED:
            out["drift_note"] = "no per-layer drift: the fp32 file or the calibration images behind it are unknown"
    return out


def inspect_runner(runner: Runner, precision: str, facts: Dict[str, Any], info: Dict[str, Any], folder: Path,
                   shape: Tuple[int, ...]) -> Dict[str, Any]:
    """Everything --inspect says of one runner: its ONNX file, its engine, the drift of a quantized file."""
    onnx = info.get("onnx_file") or facts.get("onnx")
    out = inspect_model(Path(onnx) if onnx else None, precision, facts, folder)
    engine = runner.engine_information(shape)
    if engine is not None:
        name = Path(str(info.get("engine") or runner.name)).stem
        out["engine"] = write_engine_inspection(engine, name, folder)
    if not out:
        out["note"] = f"{runner.name} runs PyTorch modules: no ONNX file or engine to inspect (--profile shows its ops)"
        log.warning("--inspect: %s", out["note"])
    return out
