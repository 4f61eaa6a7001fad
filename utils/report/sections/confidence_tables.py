"""Top-1 with its confidence: each setup's top-1 and top-5 with 95 % Wilson intervals, and its top-1 against PyTorch
fp32's on the same images as a paired comparison (the change with Newcombe's interval, McNemar's exact p, the flips
each way, the classes that lose most) and a verdict in words (utils/measure/confidence.py; docs/confidence.md).

Usage:
    doc = confidence_markdown(records)
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from utils.measure.confidence import wilson
from utils.report.doc import Doc, compose, fmt, table
from utils.report.select import finite_number, images_key, is_reference, row_label, study_order

CONFIDENCE_HEADING = "## Top-1 with its confidence"

CONFIDENCE_NOTE = ("Intervals are 95 %: top-1 and top-5 by Wilson's score interval over the labelled images; the "
                   "change against PyTorch fp32 is paired (the same images: Newcombe's interval from the images "
                   "whose answers differ, McNemar's exact test), so it resolves far smaller changes than the two "
                   "top-1 intervals side by side. lost / gained: images right in PyTorch fp32 only / in this row only. "
                   "A change is measured only where its interval excludes 0; an interval wider than +-1 point that "
                   "holds 0 is too few images to tell. The images are taken as a sample of the images the model will "
                   "see: docs/confidence.md.")


def _interval(r: Dict[str, Any], key: str) -> str:
    pct, n = finite_number(r.get(key)), r.get("labelled_images") or r.get("images")
    if pct is None or not isinstance(n, int) or n <= 0:
        return "-"
    low, high = wilson(round(pct * n / 100.0), n)
    return f"{pct:.2f} ({100 * low:.2f}..{100 * high:.2f})"


def _class_name(loss: Dict[str, Any]) -> str:
    return str(loss.get("name") or f"class {loss.get('class')}")


def _row(r: Dict[str, Any], ref: Dict[str, Any] | None) -> List[Any]:
    n = r.get("labelled_images") or r.get("images")
    if r.get("paired_change_points") is not None:
        change = (f"{r['paired_change_points']:+.2f} ({r['paired_low_points']:+.2f}..{r['paired_high_points']:+.2f})")
        flips = f"{r.get('paired_lost')} / {r.get('paired_gained')}"
        p = f"{r['mcnemar_p']:.3g}" if r.get("mcnemar_p") is not None else "-"
        losing = ", ".join(f"{_class_name(c)} (-{c.get('lost')})" for c in r.get("classes_losing") or []) or "-"
        said = r.get("paired_verdict") or "-"
    elif is_reference(r):
        change, flips, p, losing, said = "reference", "-", "-", "-", "-"
    else:
        drop = (None if ref is None or ref.get("top1") is None or r.get("top1") is None
                else float(r["top1"]) - float(ref["top1"]))
        change = f"{drop:+.2f} (unpaired)" if drop is not None else "-"
        flips, p, losing = "-", "-", "-"
        said = "no paired test: predictions or labels not kept" if drop is not None else "no reference"
    return [row_label(r), fmt(n), _interval(r, "top1"), _interval(r, "top5"), change, p, flips, losing, said]


def confidence_markdown(records: Sequence[Dict[str, Any]]) -> Doc:
    """Per network, one row per setup with a top-1 (its accuracy pass: one figure whatever its batch sizes). Empty
    without a top-1."""
    best: Dict[Any, Dict[str, Any]] = {}
    # a setup's timing rows carry its accuracy pass's figures: one row, the newest accuracy pass (its paired figures)
    for r in sorted((r for r in records if r.get("kind") == "validate" and r.get("top1") is not None
                     and not r.get("error") and r.get("scenario") is None),
                    key=lambda r: (r.get("paired_change_points") is not None, r.get("role") == "accuracy",
                                   str(r.get("time") or ""))):
        best[(r.get("network"), row_label(r), images_key(r))] = r
    recs = study_order(list(best.values()))
    if not recs:
        return compose()
    parts: List[Any] = [CONFIDENCE_HEADING, CONFIDENCE_NOTE]
    for network in sorted({str(r.get("network")) for r in recs}):
        mine = [r for r in recs if str(r.get("network")) == network]
        refs = {images_key(r): r for r in mine if is_reference(r)}
        rows = [_row(r, refs.get(images_key(r))) for r in mine]
        parts += [f"### {network}", table(["runner", "images", "top-1 % (95 %)", "top-5 % (95 %)",
                                            "change vs PyTorch fp32, points (paired 95 %)", "McNemar p",
                                            "lost / gained", "classes losing most", "verdict"], rows)]
    return compose(*parts)
