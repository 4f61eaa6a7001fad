"""What each image costs and how much of the GPU a row used: FLOPs and activations per image (utils.models.flops),
achieved TFLOP/s and its share of the GPU's dense peak at the precision that ran (utils.measure.peaks, NVIDIA's
datasheets; "-" for a GPU not in the table and on the CPU).

Usage:
    doc = compute_markdown(records)
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from utils.report.doc import Doc, compose, fmt, table
from utils.report.select import finite_number, row_label, study_order

COMPUTE_HEADING = "## What each image costs, and how much of the GPU it used"

COMPUTE_NOTE = ("FLOPs per image count a multiply-add as 2 (PyTorch's FlopCounterMode on one fp32 image; attention "
                "counted as its matrix products); activations are the elements those operators write (fvcore's and "
                "timm's measure). Achieved TFLOP/s = FLOPs per image x images/s; % of peak divides it by the GPU's "
                "dense (no 2:4 sparsity) peak at the precision that ran, from NVIDIA's datasheets: fp32 the CUDA "
                "cores' figure (strict fp32), TF32 where --tf32 allowed it, fp16/bf16/fp8/int8 the Tensor Cores'. "
                "A low share at batch 1 is launch or copy time, not arithmetic; a GPU not in the table reads \"-\".")


def compute_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """Per network, its FLOPs and activations per image, and each timing row's achieved TFLOP/s and % of peak. Empty
    where no record has FLOPs."""
    recs = [r for r in study_order(records) if finite_number(r.get("gflops_per_image")) and r.get("images_per_s")
            and r.get("role") != "accuracy" and not r.get("error")]
    if not recs:
        return compose()
    parts: List[Any] = [COMPUTE_HEADING, COMPUTE_NOTE]
    for network in sorted({str(r.get("network")) for r in recs}):
        mine = [r for r in recs if str(r.get("network")) == network]
        first = mine[0]
        acts = first.get("activations_per_image")
        parts.append(f"### {network}: {first['gflops_per_image']:.2f} GFLOPs per image"
                     + (f", {acts / 1e6:.2f} M activations" if isinstance(acts, int) else ""))
        rows = [[row_label(r), r.get("device") or "-", r.get("batch_size"), fmt(r.get("images_per_s"), 1),
                 fmt(r.get("achieved_tflops"), 2), fmt(r.get("peak_tflops"), 1),
                 fmt(r.get("percent_of_peak"), 1)] for r in mine]
        parts.append(table(["runner", "device", "batch", "images/s", "achieved TFLOP/s", "peak TFLOP/s (dense)",
                            "% of peak"], rows))
    return compose(*parts)
