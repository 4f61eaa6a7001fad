"""Argument groups that more than one script takes, defined once (main.py and build_trt.py).

Usage:
    add_engine_args(parser.add_argument_group("TensorRT build"), max_default="256")
    add_calibration_args(group)
"""
from __future__ import annotations

from typing import Any

Group = Any  # an ArgumentParser or an argument group


def add_engine_args(g: Group, max_default: str) -> None:
    """Optimisation profile, workspace, timing cache, rebuild and typing route of a TensorRT build."""
    g.add_argument("--min_batch", type=int, help="TensorRT profile minimum batch (default 1)")
    g.add_argument("--opt_batch", type=int, help="TensorRT profile optimum batch (default: --max_batch)")
    g.add_argument("--max_batch", type=int, help=f"TensorRT profile maximum batch (default: {max_default})")
    g.add_argument("--workspace", type=float, help="TensorRT workspace memory pool limit, GiB")
    g.add_argument("--timing_cache", help="timing cache file, reused across builds (default under weights/engines)")
    g.add_argument("--force", action="store_true", help="rebuild even if a cached engine matches")
    g.add_argument("--weak_typing", action="store_true",
                   help="TensorRT 10 builder flags (+ entropy calibrator for int8) on the fp32 ONNX file, "
                        "where the installed TensorRT still has them")


def add_calibration_args(g: Group) -> None:
    """How fp16/bf16/int8/fp8 ONNX files are made: calibration method and size, quantizer, I/O type."""
    g.add_argument("--calib_method", default="entropy", help="int8/fp8 calibration method (max, entropy)")
    g.add_argument("--calib_size", type=int, default=500, help="calibration images (capped by the dataset)")
    g.add_argument("--quantizer", choices=["auto", "modelopt", "ort"], default="auto",
                   help="who inserts Q/DQ nodes: ModelOpt, or ONNX Runtime's quantizer")
    g.add_argument("--fp16_io", action="store_true", help="AutoCast fp16/bf16: make the model's I/O fp16 too")


