"""Cells that several tables show alike: a record's size, its top-1 or top-5 with its marks, its images/s."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from utils.report.doc import Doc, compose, fmt, footnote
from utils.report.schema import Record
from utils.report.select import (RANDOM_WEIGHTS, UNSTABLE, UNSTABLE_NOTE, random_weights, row_label, unstable_reason,
                                 unstable_reasons)


def size_mib(r: Record) -> str:
    """Size in MiB (2**20 bytes), as the original printed it; records before 2026-11-29 kept MB (10**6 bytes)."""
    if r.size_mib is not None:
        return fmt(float(r.size_mib), 2)
    return fmt(float(r.size_mb) * 1e6 / 2**20, 2) if r.size_mb is not None else "-"


def row_notes(records: Sequence[Record]) -> List[str]:
    """One sentence per network and row where the record knows something its figures hide: a torchao row that
    quantized only some layers (what ran in float), an fp16 file on ONNX Runtime's CPU provider (fp16 rounding in
    fp32 kernels, not fp16 kernels), an int8/fp8 Q/DQ file of ModelOpt's (its weights stored in fp32 behind the Q/DQ nodes; ONNX Runtime's quantizer
    stores int8 weights)."""
    seen: Dict[Tuple[str, str], Record] = {}
    for r in records:
        if not r.error and r.network and r.backend:
            seen.setdefault((str(r.network), row_label(r)), r)
    notes = []
    for (network, label), r in sorted(seen.items()):
        head = f"{label} on {network}"
        if r.quantized_layers is not None:
            share, convs = r.quantized_weight_share, int(r.conv_layers or 0)
            notes.append(f"{head} quantized {r.quantized_layers} of {r.linear_layers} Linear layers"
                         + (f" ({100 * float(share):.1f} % of the weights)" if share is not None else "")
                         + (f"; its {convs} convolutions ran in {r.float_layers or 'float'}, not quantized"
                            if convs else "")
                         + (f"; {r.kept_for_rows} Linear layers fed under 17 rows per image (a classifier head) "
                            "stayed float: torch._int_mm refuses fewer" if r.kept_for_rows else "") + ".")
        if r.ort_cpu_note and r.provider == "cpu":
            notes.append(f"{head}: {r.ort_cpu_note}.")
        if r.precision in ("int8", "fp8") and r.tool == "modelopt.onnx.quantization":
            size = size_mib(r)
            notes.append(f"{head}: the Q/DQ file stores its weights in fp32 beside their scales"
                         + (f" ({size} MiB)" if size != "-" else "") + ", so it is no smaller than fp32's; "
                         "TensorRT stores them in int8/fp8 when it builds an engine.")
    return notes


def accuracy(r: Record, key: str) -> str:
    """top-1 or top-5 of a record, marked where the network had random weights (the figure measures nothing) and
    where outputs were not numbers (those images count as wrong)."""
    v = getattr(r, key)
    if v is None:
        return "-"
    marks = [RANDOM_WEIGHTS] * random_weights(r)
    if r.nonfinite_outputs:
        marks.append(f"NaN/Inf on {r.nonfinite_outputs} img")
    if r.unrankable_outputs:
        marks.append(f"flat on {r.unrankable_outputs} img")
    return f"{fmt(v)} ({'; '.join(marks)})" if marks else fmt(v)


def rate(r: Record, peers: Sequence[Record]) -> str:
    """images/s, marked where the row's timing is unstable."""
    text = fmt(r.images_per_s, 1)
    return text + UNSTABLE if text != "-" and unstable_reason(r, peers) else text


def unstable_footnote(records: Sequence[Record]) -> Doc:
    """The "(unstable)" footnote with the reason of each marked row among records: said once on a page, however many
    tables mark rows (doc.Footnote); empty where none is marked."""
    why = unstable_reasons(records)
    return footnote("unstable", UNSTABLE_NOTE, why) if why else compose()
