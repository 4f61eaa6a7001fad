"""What a GPU could do at most: dense (no 2:4 sparsity) peak TFLOP/s by GPU model and precision, and peak memory
bandwidth, from NVIDIA's datasheets (the figures marked with sparsity halved, as the datasheets' footnotes say).
A GPU not in the table has no peak ("-" in the tables), never a guess.

Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM5 and PCIe), NVIDIA H200 Tensor Core GPU datasheet (SXM),
NVIDIA A100 Tensor Core GPU datasheet (SXM4/PCIe, 40 and 80 GB: the same compute), NVIDIA L4 datasheet.

Usage:
    peak("NVIDIA H100 80GB HBM3", "fp16", tf32=False)   # 989.5 (TFLOP/s), "H100 SXM5 FP16 Tensor Core"
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

# GPU (a pattern of torch.cuda.get_device_name) -> {unit: dense TFLOP/s (TOPS for int8)}, memory TB/s
PEAKS: Tuple[Tuple[str, str, Dict[str, float], float], ...] = (
    (r"H200 NVL", "H200 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "fp8": 1670.5,
                               "int8": 1670.5}, 4.8),
    (r"H200", "H200 SXM", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5, "fp8": 1979.0,
                           "int8": 1979.0}, 4.8),
    (r"H100 PCIe", "H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5, "fp8": 1513.0,
                                 "int8": 1513.0}, 2.0),
    (r"H100 80GB HBM3|H100 SXM", "H100 SXM5", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5,
                                                "fp8": 1979.0, "int8": 1979.0}, 3.35),
    (r"A100", "A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0}, 2.039),
    (r"\bL4\b", "L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0, "fp8": 242.5, "int8": 242.5}, 0.3),
)


def _row(gpu: Optional[str]) -> Optional[Tuple[str, Dict[str, float], float]]:
    for pattern, name, peaks, memory in PEAKS:
        if gpu and re.search(pattern, gpu):
            return name, peaks, memory
    return None


def peak(gpu: Optional[str], precision: str, tf32: bool = False) -> Optional[Tuple[float, str]]:
    """(dense peak TFLOP/s, which figure) of this GPU at this precision: fp32 is the CUDA cores' figure (strict
    fp32) unless TF32 was allowed; fp16/bf16/fp8/int8 the Tensor Cores'. None for an unknown GPU or precision."""
    row = _row(gpu)
    unit = "tf32" if precision == "fp32" and tf32 else precision
    if row is None or unit not in row[1]:
        return None
    kind = "CUDA cores" if unit == "fp32" else "Tensor Cores"
    return row[1][unit], f"{row[0]} {unit.upper()} {kind}, dense (NVIDIA datasheet)"


def memory_tbps(gpu: Optional[str]) -> Optional[float]:
    """The GPU's peak memory bandwidth, TB/s (None: unknown)."""
    row = _row(gpu)
    return row[2] if row else None


ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def compute_fields(gflops_per_image: Optional[float], images_per_s: Optional[float], gpu: Optional[str],
                   precision: str, tf32: bool = False, weights_mib: Optional[float] = None,
                   activations: Optional[int] = None, batch_size: int = 1) -> Dict[str, object]:
    """A record's achieved TFLOP/s (FLOPs per image x images/s) and its share of the GPU's dense peak at the
    precision that ran, with the two roofs of a roofline in images/s: the compute roof (peak / FLOPs per image) and,
    where the record has the bytes, the memory roof (peak bandwidth / an estimate of the bytes per image: the
    weights read once per batch, each activation written and read once at the precision's element size: a lower
    bound of the traffic, so the roof is an upper bound). {} without FLOPs or a rate; no peak or roof where the GPU
    is not in the table."""
    if not gflops_per_image or not images_per_s:
        return {}
    achieved = gflops_per_image * images_per_s / 1e3
    out: Dict[str, object] = {"achieved_tflops": round(achieved, 4)}
    got = peak(gpu, precision, tf32)
    if got is not None:
        out.update({"peak_tflops": got[0], "peak_source": got[1],
                    "percent_of_peak": round(100.0 * achieved / got[0], 3),
                    "compute_roof_images_per_s": round(got[0] * 1e3 / gflops_per_image, 1)})
        bandwidth = memory_tbps(gpu)
        if bandwidth and weights_mib and activations and precision in ELEMENT_BYTES and batch_size >= 1:
            per_image = weights_mib * 2**20 / batch_size + 2 * activations * ELEMENT_BYTES[precision]
            out["memory_roof_images_per_s"] = round(bandwidth * 1e12 / per_image, 1)
    return out
