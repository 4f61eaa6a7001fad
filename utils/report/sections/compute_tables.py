"""What each image costs and how much of the GPU a row used: FLOPs and activations per image (utils.models.flops),
achieved TFLOP/s and its share of the GPU's dense peak at the precision that ran (utils.measure.peaks, NVIDIA's
datasheets; "-" for a GPU not in the table and on the CPU); where each batch's time goes (copies, compute,
enqueue) with trtexec's diagnosis; and each runner's cold start.

Usage:
    doc = compute_markdown(records)
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import Record
from utils.report.select import finite_number, row_label, study_order

COMPUTE_HEADING = "## What each image costs, and how much of the GPU it used"

COMPUTE_NOTE = ("FLOPs per image count a multiply-add as 2 (PyTorch's FlopCounterMode on one fp32 image; attention "
                "counted as its matrix products); activations are the elements those operators write (fvcore's and "
                "timm's measure). Achieved TFLOP/s = FLOPs per image x images/s; % of peak divides it by the GPU's "
                "dense (no 2:4 sparsity) peak at the precision that ran, from NVIDIA's datasheets: fp32 the CUDA "
                "cores' figure (strict fp32), TF32 where --tf32 allowed it, fp16/bf16/fp8/int8 the Tensor Cores'. "
                "A low share at batch 1 is launch or copy time, not arithmetic; a GPU not in the table reads "
                "\"-\". The roofs, images/s: compute = peak / FLOPs per image; memory (an estimate) = peak "
                "bandwidth / (the weights once per batch + each activation written and read once at the precision's "
                "size), a lower bound of the traffic and so an upper bound of the speed; the lower roof is the one "
                "that binds.")


SPLIT_HEADING = "## Where each batch's time goes"

SPLIT_NOTE = ("Mean ms per timed batch: copy-in (host to device), normalise, the model (compute) and copy-out (top "
              "classes, flags and logits back to the host), which add up to latency-all; enqueue is the host's time to "
              "issue the batch (trtexec's Enqueue Time). On a GPU, trtexec's diagnosis from the medians: "
              "enqueue-bound where the enqueue is above 0.8 x the compute (the GPU waits for the host: CUDA graphs "
              "or a larger batch help), H2D- or D2H-bound where that copy takes at least as long as the compute, "
              "else compute-bound. On the CPU nothing is copied, and no diagnosis is given.")


def split_markdown(records: Sequence[Record]) -> Doc:
    """Each timing row's time split (utils.measure.measurement.time_split) and trtexec's diagnosis; empty where no
    row has one."""
    recs = [r for r in study_order(records) if r.time_split is not None and r.role != "accuracy"
            and not r.error]
    if not recs:
        return compose()
    rows = []
    for r in recs:
        ts = r.time_split
        rows.append([r.network, row_label(r), r.device or "-", r.batch_size,
                     *(fmt(getattr(ts, k), 3)
                       for k in ("h2d_ms", "normalize_ms", "compute_ms", "d2h_ms", "enqueue_ms")),
                     r.bound or "-"])
    return compose(SPLIT_HEADING, SPLIT_NOTE,
                   table(["network", "runner", "device", "batch", "copy-in ms", "normalise ms", "compute ms",
                          "copy-out ms", "enqueue ms (host)", "diagnosis"], rows))


COLD_HEADING = "## Cold start: what a user waits for before the first answer"

COLD_NOTE = ("Seconds, from the setup's first job (later batch sizes reuse the runner): the ONNX export, the "
             "precision conversion and the engine build (0 where a cache was hit: \"caches\" names each), the load "
             "(ONNX Runtime's session, the engine's deserialization, the model to the device), the runner's own "
             "preparation (torch.compile, CUDA graph capture) and the first batch, copy-in to copy-out.")


def cold_start_markdown(records: Sequence[Record]) -> Doc:
    """Each setup's cold start (utils.study.validate.cold_start), newest first-job record of each; empty without."""
    newest: Dict[Any, Record] = {}
    for r in sorted((r for r in records if r.cold_start is not None and not r.error),
                    key=lambda r: str(r.time or "")):
        newest[(r.network, row_label(r), r.device, r.setup_key)] = r  # a rerun: its newest
    recs = study_order(list(newest.values()))
    if not recs:
        return compose()
    rows = []
    for r in recs:
        c = r.cold_start
        caches = ", ".join(f"{k} {v}" for k, v in sorted(c.caches.items())) or "-"
        rows.append([r.network, row_label(r), r.device or "-", r.batch_size,
                     *(fmt(getattr(c, k), 3) for k in ("export_s", "convert_build_s", "load_s", "runner_prepare_s",
                                                   "first_batch_s", "total_s")), caches])
    return compose(COLD_HEADING, COLD_NOTE,
                   table(["network", "runner", "device", "first batch size", "export s", "convert / build s", "load s",
                          "compile / capture s", "first batch s", "total s", "caches"], rows))


def compute_markdown(records: Sequence[Record], every: Optional[Sequence[Record]] = None) -> Doc:
    """Per network, its FLOPs and activations per image, and each timing row's achieved TFLOP/s and % of peak; then
    the time split and the cold starts (read from `every` record, default records: a setup's first job may be its
    accuracy pass, which the latest timing rows leave out). Empty where no record has any of them."""
    every = records if every is None else every
    recs = [r for r in study_order(records) if finite_number(r.gflops_per_image) and r.images_per_s
            and r.role != "accuracy" and not r.error]
    if not recs:
        return compose(split_markdown(records), cold_start_markdown(every))
    parts: List[Any] = [COMPUTE_HEADING, COMPUTE_NOTE]
    for network in sorted({str(r.network) for r in recs}):
        mine = [r for r in recs if str(r.network) == network]
        first = mine[0]
        acts = first.activations_per_image
        parts.append(f"### {network}: {first.gflops_per_image or 0:.2f} GFLOPs per image"
                     + (f", {acts / 1e6:.2f} M activations" if isinstance(acts, int) else ""))
        rows = [[row_label(r), r.device or "-", r.batch_size, fmt(r.images_per_s, 1),
                 fmt(r.achieved_tflops, 2), fmt(r.peak_tflops, 1),
                 fmt(r.percent_of_peak, 1), fmt(r.compute_roof_images_per_s, 0),
                 fmt(r.memory_roof_images_per_s, 0)] for r in mine]
        parts.append(table(["runner", "device", "batch", "images/s", "achieved TFLOP/s", "peak TFLOP/s (dense)",
                            "% of peak", "compute roof img/s", "memory roof img/s (est.)"], rows))
    return compose(*parts, split_markdown(records), cold_start_markdown(every))
