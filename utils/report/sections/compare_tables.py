"""The comparison tables (main.py --compare and a study's comparisons): the original's per-rank tables, the
dataset-wide figures, several runners side by side, the flipped images, and what a report drew from.

Usage:
    doc = compare_markdown(stats, "Vanilla", "TRT fp16", "resnet50")
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from utils.backends.registry import PRECISIONS
from utils.report.doc import Doc, compose, sci, strong, table
from utils.report.schema import Record
from utils.report.select import latest_compares, row_label

if TYPE_CHECKING:
    from utils.measure.compare import CompareStats


NONFINITE_ADVICE = ("outputs that are not numbers: fp16 overflows where fp32 does not; try bf16 (fp32's range), "
                    "fp32 inputs and outputs (drop --fp16_io), or fp32")


def compare_markdown(stats: CompareStats, ref_name: str, other_name: str, network: Optional[str] = None) -> Doc:
    """The original's "Comparisons" tables, then the dataset-wide figures."""
    return compare_doc(stats.summary(), ref_name, other_name, network)


def compare_labels(rec: Record) -> Tuple[str, str]:
    """The row labels of a comparison record's reference ("torch-fp32" in the record) and other runner."""
    backend, _, precision = str(rec.reference or "-").rpartition("-")  # a backend's name may hold "-"
    options = rec.options if rec.options is not None else (rec.other_facts.options if rec.other_facts else None)
    reference = Record.model_construct(record_version=rec.record_version, kind=rec.kind, backend=backend,
                                       precision=precision, options="")
    return row_label(reference), row_label(rec.with_fields(options=options or ""))


def compare_doc(s: Dict[str, Any], ref_name: str, other_name: str, network: Optional[str] = None) -> Doc:
    """The comparison tables of a summary: CompareStats.summary(), or a comparison record's fields in that form
    (Record.as_dict(): the measure layer's summary is the one shape both are read in)."""
    def label(e: Dict[str, Any], side: str) -> str:
        return str(e.get(f"{side}_label") or e[f"{side}_class"])

    inputs, finite = s.get("inputs") or 0, s.get("finite_inputs")
    bad = [(name, int(s.get(f"{side}_nonfinite") or 0)) for name, side in ((other_name, "other"), (ref_name, "ref"))]
    warn = None
    if any(n for _, n in bad):
        warn = (strong(" and ".join(f"{name} gave NaN or Inf on {n} of {inputs} inputs" for name, n in bad if n)),
                f": the errors below are over the {finite} inputs finite on both sides; its top-1 there is none. "
                f"{NONFINITE_ADVICE[0].upper()}{NONFINITE_ADVICE[1:]}.")
    title = f"## Comparisons{': ' + network if network else ''}: {other_name} against {ref_name} ({inputs} inputs)"
    ranks = s.get("rank_mae") or []
    diffs = s.get("rank_class_diff_percent") or []
    parts: List[Any] = [
        title, warn,
        (f"Output values equal under numpy.isclose (rtol={sci(s.get('rtol'), 'g')}, atol={sci(s.get('atol'), 'g')}): ",
         strong(f"{sci(s.get('isclose_percent'), '.2f')} %")),
        table(["rank", "score MAE (logits)", "score MAE (probabilities)", "class differs (%)"],
                 [[r + 1, sci((s.get("rank_logit_mae") or [None] * len(ranks))[r]), sci(ranks[r]),
                   sci(diffs[r] if r < len(diffs) else None, ".2f")] for r in range(len(ranks))]),
        "Top-10 of the first input:" if s.get("example_top10") else None,
        table([f"{ref_name} score", f"{ref_name} label", f"{other_name} score", f"{other_name} label"],
                 [[sci(e.get("ref_score"), ".5f"), label(e, "ref"), sci(e.get("other_score"), ".5f"), label(e, "other")]
                  for e in s["example_top10"]]) if s.get("example_top10") else None,
        table(["top-1 agreement (%)", "top-5 overlap (%)", "max abs error", "relative L2 error", "flips"],
                 [[sci(s.get("top1_agreement_percent"), ".2f"), sci(s.get("top5_overlap_percent"), ".2f"),
                   sci(s.get("max_abs_error")), sci(s.get("rel_l2_error")), s.get("flips")]])]
    if s.get("labelled"):
        parts.append(f"On {s['labelled']} labelled images: top-1 {sci(s.get('ref_top1'), '.2f')} % ({ref_name}) vs "
                     f"{sci(s.get('other_top1'), '.2f')} % ({other_name}); flips right->wrong {s.get('right_to_wrong')}, "
                     f"wrong->right {s.get('wrong_to_right')}.")
    return compose(*parts)


def flips_csv(stats: CompareStats) -> str:
    """The images whose top-1 flipped, one row each."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "true_class", "ref_class", "ref_score", "other_class", "other_score"])
    for f in stats.flips:
        w.writerow([f["file"], "" if f["true_class"] is None else stats.label(f["true_class"]),
                    stats.label(f["ref_class"]), f"{f['ref_score']:.6f}", stats.label(f["other_class"]),
                    f"{f['other_score']:.6f}"])
    return buf.getvalue()


def compare_columns_markdown(runs: Sequence[Tuple[str, Dict[str, Any]]], ref_name: str, network: str) -> Doc:
    """The original's comparison table for several runners at once: ranks as rows, one column per runner
    (fp32 / fp16 / int8 side by side), for the score MAE on logits, on probabilities, and class differences."""
    names = [n for n, _ in runs]
    k = max(len(s.get("rank_mae") or []) for _, s in runs)

    def col(key: str, fmt: str) -> Doc:
        return table(["rank", *names], [[r + 1, *[sci(s[key][r], fmt) if r < len(s.get(key) or []) else "-"
                                                    for _, s in runs]] for r in range(k)])

    summary = table(["", *names], [
        ["isclose (%)", *[sci(s.get("isclose_percent"), ".2f") for _, s in runs]],
        ["top-1 agreement (%)", *[sci(s.get("top1_agreement_percent"), ".2f") for _, s in runs]],
        ["top-5 overlap (%)", *[sci(s.get("top5_overlap_percent"), ".2f") for _, s in runs]],
        ["max abs error", *[sci(s.get("max_abs_error")) for _, s in runs]],
        ["NaN/Inf outputs", *[s.get("other_nonfinite") or 0 for _, s in runs]],
        ["flips", *[s.get("flips") for _, s in runs]]])
    return compose(f"## {network}: comparisons against {ref_name} ({runs[0][1].get('inputs')} inputs)",
                   "Score MAE at each rank, logits:", col("rank_logit_mae", ".3e"),
                   "Score MAE at each rank, probabilities:", col("rank_mae", ".3e"),
                   "Class differs at each rank (%):", col("rank_class_diff_percent", ".2f"), summary)


def compare_groups(records: Sequence[Record]) -> List[str]:
    """The original's columns table for each set of runners compared on the same inputs against the same
    reference (two or more runners), drawn from the records."""
    groups: Dict[Any, List[Record]] = defaultdict(list)
    for r in latest_compares(records):
        groups[(r.network, r.weights, r.reference, r.inputs_source, r.dataset,
                r.inputs)].append(r)
    out = []
    for (network, _, reference, *_rest), recs in groups.items():
        if len(recs) > 1:
            recs = sorted(recs, key=lambda r: (str(r.backend), PRECISIONS.index(r.precision)
                                               if r.precision in PRECISIONS else 9))
            out.append(compare_columns_markdown([(compare_labels(r)[1], r.as_dict()) for r in recs],
                                                compare_labels(recs[0])[0], str(network)))
    return out
