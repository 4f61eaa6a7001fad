"""Top-1 with its confidence: each setup's top-1 and top-5 with 95 % Wilson intervals, and its top-1 against PyTorch
fp32's on the same images as a paired comparison (the change with Newcombe's interval, McNemar's exact p, the flips
each way, the classes that lose most) and a verdict in words (utils/core/confidence.py; docs/confidence.md).

Usage:
    doc = confidence_markdown(records)
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from utils.core.confidence import wilson
from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import ClassLoss, Record, SpeedCI
from utils.report.select import finite_number, images_key, is_reference, row_label, study_order

CONFIDENCE_HEADING = "## Top-1 with its confidence"

CONFIDENCE_NOTE = ("Intervals are 95 %: top-1 and top-5 by Wilson's score interval over the labelled images; the "
                   "change against Vanilla is paired (the same images: Newcombe's interval from the images "
                   "whose answers differ, McNemar's exact test), so it resolves far smaller changes than the two "
                   "top-1 intervals side by side. lost / gained: images right in Vanilla only / in this row only. "
                   "A change is measured only where its interval excludes 0; an interval wider than +-1 point that "
                   "holds 0 is too few images to tell. The images are taken as a sample of the images the model will "
                   "see: docs/confidence.md.")


def _interval(r: Record, key: str) -> str:
    pct, n = finite_number(getattr(r, key)), r.labelled_images or r.images
    if pct is None or not isinstance(n, int) or n <= 0:
        return "-"
    low, high = wilson(round(pct * n / 100.0), n)
    return f"{pct:.2f} ({100 * low:.2f}..{100 * high:.2f})"


def _class_name(loss: ClassLoss) -> str:
    return str(loss.name or f"class {loss.class_}")


def _row(r: Record, ref: Optional[Record]) -> List[Any]:
    n = r.labelled_images or r.images
    if r.paired_change_points is not None:
        change = (f"{r.paired_change_points:+.2f} ({r.paired_low_points:+.2f}..{r.paired_high_points:+.2f})")
        flips = f"{r.paired_lost} / {r.paired_gained}"
        p = f"{r.mcnemar_p:.3g}" if r.mcnemar_p is not None else "-"
        losing = ", ".join(f"{_class_name(c)} (-{c.lost})" for c in r.classes_losing or []) or "-"
        said = r.paired_verdict or "-"
    elif is_reference(r):
        change, flips, p, losing, said = "reference", "-", "-", "-", "-"
    else:
        drop = (None if ref is None or ref.top1 is None or r.top1 is None
                else float(r.top1) - float(ref.top1))
        change = f"{drop:+.2f} (unpaired)" if drop is not None else "-"
        flips, p, losing = "-", "-", "-"
        said = "no paired test: predictions or labels not kept" if drop is not None else "no reference"
    return [row_label(r), fmt(n), _interval(r, "top1"), _interval(r, "top5"), change, p, flips, losing, said]


def confidence_markdown(records: Sequence[Record]) -> Doc:
    """Per network, one row per setup with a top-1 (its accuracy pass: one figure whatever its batch sizes). Empty
    without a top-1."""
    best: Dict[Any, Record] = {}
    # a setup's timing rows carry its accuracy pass's figures: one row, the newest accuracy pass (its paired figures)
    for r in sorted((r for r in records if r.kind == "validate" and r.top1 is not None
                     and not r.error and r.scenario is None),
                    key=lambda r: (r.paired_change_points is not None, r.role == "accuracy",
                                   str(r.time or ""))):
        best[(r.network, row_label(r), images_key(r))] = r
    recs = study_order(list(best.values()))
    if not recs:
        return compose()
    parts: List[Any] = [CONFIDENCE_HEADING, CONFIDENCE_NOTE]
    for network in sorted({str(r.network) for r in recs}):
        mine = [r for r in recs if str(r.network) == network]
        refs = {images_key(r): r for r in mine if is_reference(r)}
        rows = [_row(r, refs.get(images_key(r))) for r in mine]
        parts += [f"### {network}", table(["runner", "images", "top-1 % (95 %)", "top-5 % (95 %)",
                                            "change vs Vanilla, points (paired 95 %)", "McNemar p",
                                            "lost / gained", "classes losing most", "verdict"], rows)]
    return compose(*parts)


SPEED_HEADING = "## Speed with its confidence"

SPEED_NOTE = ("95 % intervals; the column \"interval from\" says which each row carries. \"timed batches\": from "
              "the row's own timed batches by the moving-block bootstrap (blocks of consecutive batches, so a drift "
              "or a burst of slow batches is kept together), images/s scaled by the interval of the mean batch time: "
              "how much the figure could move within this run, not from one run to the next. \"N runs\" (--repeats "
              "N): the mean of N whole timed runs with its Student-t interval across them, which holds run-to-run "
              "noise too (not that of another boot or machine); \"unstable\" where the fastest run is more than "
              "10 % above the slowest (perf_analyzer's stability rule): a mean of runs that fall in two groups "
              "(a launch-bound batch 1 often does) is a weak figure. x Vanilla: the ratio of the two rows' "
              "images/s at the same batch size, its interval combining both rows' in log space (independent runs); "
              "one that holds 1.00 is no measurable difference (docs/confidence.md).")


STABLE_SPREAD_PERCENT = 10.0  # perf_analyzer's --stability-percentage: runs whose max / min is within 10 % are stable


def _speed_ci(r: Record) -> SpeedCI:
    """A row's speed_ci (an empty one where it has none)."""
    return r.speed_ci or SpeedCI()


def run_spread(r: Record) -> Optional[float]:
    """How far a --repeats row's fastest run is above its slowest, percent (None for a row of one run)."""
    return finite_number(_speed_ci(r).spread_percent)


def interval_from(r: Record) -> str:
    """Which interval a row's speed figures carry: across whole runs (--repeats; with the runs' spread where it is
    beyond perf_analyzer's 10 % stability rule) or from its timed batches."""
    ci = _speed_ci(r)
    if ci.runs:
        spread = run_spread(r)
        return f"{ci.runs} runs" + (f", unstable: {spread:.0f} % apart" if spread is not None
                                       and spread > STABLE_SPREAD_PERCENT else "")
    return "timed batches" if ci.images_per_s else "-"


def _pair(r: Record, key: str) -> Any:
    got = getattr(_speed_ci(r), key)
    ok = isinstance(got, (list, tuple)) and len(got) == 2 and all(isinstance(x, (int, float)) for x in got)
    return list(got) if ok else None


def _with(value: Any, pair: Any, digits: int) -> str:
    if finite_number(value) is None:
        return "-"
    return f"{value:.{digits}f}" + (f" ({pair[0]:.{digits}f}..{pair[1]:.{digits}f})" if pair else "")


def speed_change(new: Record, old: Record) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """(ratio, low, high) of new's images/s over old's, the 95 % interval combining both rows' intervals in log space
    (independent runs); (None, None, None) without both rates, low/high None where either row has no interval."""
    a, b = finite_number(new.images_per_s), finite_number(old.images_per_s)
    if not a or not b or a <= 0 or b <= 0:
        return None, None, None
    ratio = a / b
    pa, pb = _pair(new, "images_per_s"), _pair(old, "images_per_s")
    if not pa or not pb or min(pa + pb) <= 0:
        return ratio, None, None
    half = math.hypot(math.log(pa[1] / pa[0]), math.log(pb[1] / pb[0])) / 2  # half-widths in log space (~1.96 se)
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def speed_ratio(r: Record, ref: Record) -> str:
    """images/s of r over ref's with its 95 % interval (speed_change), or the point where either row has no
    interval; "no measurable difference" where the interval holds 1."""
    ratio, low, high = speed_change(r, ref)
    if ratio is None:
        return "-"
    if low is None or high is None:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x ({low:.2f}..{high:.2f})" + (" no measurable difference" if low <= 1.0 <= high else "")


def speed_markdown(records: Sequence[Record]) -> Doc:
    """Per network, each timing row's images/s, latency-model p50 and p99 with their intervals, and its speed over
    PyTorch fp32's at the same batch. Empty where no row has an interval."""
    recs = [r for r in study_order(records) if r.images_per_s and r.role != "accuracy"]
    if not any(_pair(r, "images_per_s") for r in recs):
        return compose()
    parts: List[Any] = [SPEED_HEADING, SPEED_NOTE]
    for network in sorted({str(r.network) for r in recs}):
        mine = [r for r in recs if str(r.network) == network]
        refs = {(images_key(r), r.batch_size): r for r in mine if is_reference(r)}
        rows = [[row_label(r), r.batch_size, _with(r.images_per_s, _pair(r, "images_per_s"), 1),
                 _with(r.latency_model_p50, _pair(r, "latency_model_p50"), 3),
                 _with(r.latency_model_p99, _pair(r, "latency_model_p99"), 3),
                 "reference" if is_reference(r) else speed_ratio(r, refs[(images_key(r), r.batch_size)])
                 if (images_key(r), r.batch_size) in refs else "-", interval_from(r)] for r in mine]
        parts += [f"### {network}", table(["runner", "batch", "images/s (95 %)", "latency-model p50 ms (95 %)",
                                            "p99 ms (95 %)", "x Vanilla (95 %)", "interval from"], rows)]
    return compose(*parts)
