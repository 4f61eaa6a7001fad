"""The original project's tables: one row per validation record, a network's summary per batch size with its
percentiles, and "is TensorRT worth it?" side by side for one network.

Usage:
    print(results_table(records)); doc = summary_markdown("resnet50", records)
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from utils.backends.registry import SIDE_BY_SIDE_ROWS
from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import Record
from utils.report.schema_types import Env
from utils.report.sections.cells import accuracy, rate, row_notes, size_mib, unstable_footnote
from utils.report.select import (UNSTABLE, env_differs, identity_columns, latest_per_config, row_label, row_sort_key,
                                 timing_rows)

MAIN_HEADER = ["network", "backend", "batch", "Latency-all mean / max (ms)", "Latency-model mean / max (ms)",
               "images/s", "size (MiB)", "top-1 (%)", "top-5 (%)", "layers", "parameters"]


def results_table(records: Sequence[Record]) -> str:
    """The original's columns, one row per validation record (and dataset / weights where they differ)."""
    extra = identity_columns(records)
    rows = []
    for r in records:
        rows.append([r.network, row_label(r), r.batch_size, *[f(r) for _, f in extra],
                     f"{fmt(r.latency_all_mean, 3)} / {fmt(r.latency_all_max, 3)}",
                     f"{fmt(r.latency_model_mean, 3)} / {fmt(r.latency_model_max, 3)}",
                     rate(r, records), size_mib(r), accuracy(r, "top1"), accuracy(r, "top5"),
                     r.layers, r.params])
    return table(MAIN_HEADER[:3] + [h for h, _ in extra] + MAIN_HEADER[3:], rows)


def percentile_table(records: Sequence[Record]) -> str:
    several = len({r.network for r in records}) > 1  # a study: say which network each row is
    # dataset, weights, environment where one network's rows differ in them (networks differ in weights anyway)
    needed = {name for net in {r.network for r in records}
              for name, _ in identity_columns([r for r in records if r.network == net])}
    extra = [(name, f) for name, f in identity_columns(records) if name in needed]
    header = ["network"] * several + ["backend", *[h for h, _ in extra], "batch", "mode", "model p50 / p90 / p99 (ms)",
                                      "all p50 / p90 / p99 (ms)", "model CV (%)", "all CV (%)", "timed batches"]
    rows = []
    for r in records:
        rows.append([r.network] * several + [row_label(r), *[f(r) for _, f in extra], r.batch_size,
                                                    r.mode,
                     " / ".join(fmt(getattr(r, f"latency_model_p{q}"), 3) for q in (50, 90, 99)),
                     " / ".join(fmt(getattr(r, f"latency_all_p{q}"), 3) for q in (50, 90, 99)),
                     fmt(r.latency_model_cv_percent), fmt(r.latency_all_cv_percent),
                     r.latency_all_batches])
    return table(header, rows)


def summary_markdown(network: str, records: Sequence[Record]) -> Doc:
    """Per network: one section per batch size (rows Vanilla / TRT fp32 / ... ), then the percentiles."""
    recs = [r for r in latest_per_config(timing_rows(records))
            if r.network == network]  # kind first: a comparison never hides the validation of its setup
    by_bs: Dict[Optional[int], List[Record]] = defaultdict(list)
    for r in recs:
        by_bs[r.batch_size].append(r)
    header = ["", "Latency-all mean / max (ms)", "Latency-model mean / max (ms)", "images/s", "size (MiB)",
              "top-1 (%)", "top-5 (%)", "layers", "parameters", "prepare (s)"]
    parts: List[Any] = [f"# {network}"]
    env = recs[0].env if recs else Env()
    if env_differs(recs):  # never one machine's name over another's rows
        parts.append("Measured in several environments: each row's is in its \"measured with\" column.")
    else:
        parts.append(f"Measured on {env.gpu or env.cpu or '?'}, torch {env.torch}, "
                     f"ONNX Runtime {env.onnxruntime}, TensorRT {env.tensorrt or 'not installed'}"
                     + (f", TensorRT-RTX {env.tensorrt_rtx}" if env.tensorrt_rtx else "") + ".")
    for bs in sorted(by_bs, key=lambda b: b or 0):
        extra = identity_columns(by_bs[bs])
        rows = []
        for r in sorted(by_bs[bs], key=lambda r: row_sort_key(r)):
            rows.append([row_label(r), *[f(r) for _, f in extra],
                         f"{fmt(r.latency_all_mean, 3)} / {fmt(r.latency_all_max, 3)}",
                         f"{fmt(r.latency_model_mean, 3)} / {fmt(r.latency_model_max, 3)}",
                         rate(r, by_bs[bs]), size_mib(r), accuracy(r, "top1"), accuracy(r, "top5"),
                         r.layers, r.params, r.prepare_s])
        tab = table(header[:1] + [h for h, _ in extra] + header[1:], rows)
        parts += [f"## Batch size {bs}", tab, unstable_footnote(by_bs[bs]), "Percentiles:",
                  percentile_table(sorted(by_bs[bs], key=row_sort_key))]
    return compose(*parts)


def side_by_side_markdown(network: str, records: Sequence[Record], small: Optional[int] = None,
                          large: Optional[int] = None) -> Doc:
    """Is TensorRT worth it? One row per backend and precision: images/s at the smallest and largest batch the
    records of this network measured (or small / large), latency-model p50/p99 at the smallest, top-1 and
    preparation time. Rows that were not measured say so."""
    recs = [r for r in latest_per_config(timing_rows(records))
            if r.network == network]  # kind first: a comparison never hides the validation of its setup
    sizes = sorted({int(r.batch_size) for r in recs if r.batch_size}) or [1]
    small, large = small or sizes[0], large or sizes[-1]
    extra = identity_columns(recs)
    groups: Dict[Tuple[str, ...], Dict[int, Record]] = defaultdict(dict)
    keys: Dict[Tuple[str, ...], Any] = {}
    for r in recs:  # one row per label, and per dataset / weights where those differ
        key = (row_label(r), *[f(r) for _, f in extra])
        groups[key][int(r.batch_size)] = r
        keys[key] = (r.backend, r.precision)
    rows = []
    for key in sorted(groups, key=lambda k: (row_sort_key(next(iter(groups[k].values()))), k)):
        by = groups[key]
        s, l_ = by.get(small), by.get(large)
        top1 = next((accuracy(r, "top1") for r in by.values() if r.top1 is not None), None)
        prep = max((r.prepare_s or 0.0) for r in by.values())
        rows.append([*key, rate(s, [r for r in recs if r.batch_size == small]) if s else "-",
                     rate(l_, [r for r in recs if r.batch_size == large]) if l_ else "-",
                     f"{fmt(s.latency_model_p50, 3)} / {fmt(s.latency_model_p99, 3)}" if s else "-",
                     top1, fmt(prep, 1)])
    missing = [f"{b} {p}" for b, p in SIDE_BY_SIDE_ROWS if (b, p) not in keys.values()]
    text = table(["backend", *[h for h, _ in extra], f"images/s @ {small}", f"images/s @ {large}",
                     f"latency-model p50 / p99 @ {small} (ms)", "top-1 (%)", "prepare (s)"], rows)
    shaky = any(UNSTABLE in str(cell) for row in rows for cell in row)
    return compose(f"# {network}: is TensorRT worth it?", text,
                   "Not measured in these records: " + ", ".join(missing) + "." if missing else None,
                   unstable_footnote(recs) if shaky else None, *row_notes(recs))
