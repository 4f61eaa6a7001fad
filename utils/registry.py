"""The one table of what exists (after Ultralytics' export_formats()): backends, their precisions and needs.

argparse choices, row labels and the checks for unsupported combinations all read this table.
A new backend is a new runner module and a row here.

Usage:
    check_combination("onnxrt", "int8", device="cpu")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from utils.errors import ArtTRTError

PRECISIONS: Tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class Backend:
    name: str
    label: str  # row label in tables ("Vanilla" is the original's name for plain PyTorch)
    precisions: Tuple[str, ...]
    gpu_only_precisions: Tuple[str, ...]  # precisions that need a CUDA GPU
    needs_gpu: bool
    install_hint: str
    uses_onnx: bool


BACKENDS: Dict[str, Backend] = {
    "torch": Backend("torch", "Vanilla", ("fp32", "fp16", "bf16"), ("fp16", "bf16"), False,
                     "pip install torch torchvision", False),
    "compile": Backend("compile", "torch.compile", ("fp32", "fp16", "bf16"), ("fp16", "bf16"), False,
                       "pip install torch (with a C++ compiler for inductor on the CPU)", False),
    "onnxrt": Backend("onnxrt", "ONNX Runtime", ("fp32", "fp16", "bf16", "int8", "fp8"), ("bf16", "fp8"), False,
                      "pip install onnxruntime-gpu (or onnxruntime without NVIDIA GPUs)", True),
    "tensorrt": Backend("tensorrt", "TRT", PRECISIONS, PRECISIONS, True,
                        "pip install tensorrt-cu13 (or tensorrt-cu12) from NVIDIA's package index; "
                        "tensorrt-rtx on RTX GPUs", True),
}


def check_combination(backend: str, precision: str, device: str) -> None:
    """Refuses, in one sentence, a backend/precision/device combination that cannot run."""
    if backend not in BACKENDS:
        raise ArtTRTError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    b = BACKENDS[backend]
    if precision not in b.precisions:
        raise ArtTRTError(f"the {backend} backend has no {precision}: it runs {', '.join(b.precisions)}")
    on_gpu = device.startswith("cuda")
    if (b.needs_gpu or precision in b.gpu_only_precisions) and not on_gpu:
        raise ArtTRTError(f"{b.label} {precision} needs a CUDA GPU: add --device cuda"
                          + (" on a machine with one" if b.needs_gpu else ""))


def row_label(rec: Dict[str, Any]) -> str:
    """'Vanilla', 'Vanilla fp16', 'TRT int8', 'ONNX Runtime fp32 (cpu)', with options that change figures."""
    b = BACKENDS.get(rec.get("backend", ""))
    label = b.label if b else str(rec.get("backend"))
    prec = rec.get("precision", "fp32")
    text = label if (label == "Vanilla" and prec == "fp32") else f"{label} {prec}"
    extras = []
    if rec.get("backend") == "onnxrt" and rec.get("provider"):
        extras.append(rec["provider"])
    if rec.get("compile_mode"):
        extras.append(rec["compile_mode"])
    if rec.get("cuda_graph"):
        extras.append("CUDA graph")
    if rec.get("calib_method"):
        extras.append(f"{rec['calib_method']}, {rec.get('calib_images')} img")
    if rec.get("engine_shapes") == "static":
        extras.append("static")
    if rec.get("mode") == "sync" and str(rec.get("device", "")).startswith("cuda"):
        extras.append("sync")  # on the CPU every run is synchronous: say it only where it differs
    return text + (f" ({', '.join(extras)})" if extras else "")
