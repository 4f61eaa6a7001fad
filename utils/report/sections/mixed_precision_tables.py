"""--mixed_precision's searches: the budget, what was chosen, and every step measured."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import Record
from utils.report.schema_types import MixedPrecision, MixedPrecisionEngine
from utils.report.select import row_label

MIXED_PRECISION_HEADER = ["k (layers kept)", "newly kept", "top-1 (%)", "drop (points)", "drop, paired 95 %",
                          "size (MiB)", "within budget"]


def mixed_precision_markdown(records: Sequence[Record]) -> Doc:
    """--mixed_precision: per search, fp32's top-1 on the held-out images, the budget, what was chosen, and one row
    per step in the order measured (k layers kept out of quantization, the names that step added, its top-1, drop,
    file size, within budget or not); empty when no record holds a search."""
    searches: Dict[Any, Tuple[MixedPrecision, List[Record]]] = {}
    for r in records:
        block = r.preparation.mixed_precision if r.preparation is not None else None
        if r.kind != "validate" or r.error or block is None:
            continue  # several jobs and backends run one search's file: it is shown once
        key = (r.network, block.search_file, block.final_onnx)
        searches.setdefault(key, (block, []))[1].append(r)
    if not searches:
        return compose()
    parts: List[Any] = ["## Mixed precision within a top-1 budget (--mixed_precision)",
                        "Each step keeps the k layers that add the most error (ranked on calibration images) out of "
                        "quantization and measures top-1 on held-out images; k is bisected, which assumes that keeping "
                        "more layers never lowers top-1: every step is shown, so a step where it does is visible. "
                        "A step is within budget as the --max_top1_drop gate judges a row: where the whole paired 95 % "
                        "interval of its drop against fp32 on the same images is within the budget; inconclusive "
                        "(the interval holds the budget) counts as not within, so the search keeps more layers."]
    for (network, _, _), (b, recs) in sorted(searches.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        runners = ", ".join(sorted({row_label(r) for r in recs}))
        outcome = (f"{b.final_k} of {b.ranked_layers} ranked layers kept in high precision" if b.met else
                   f"NOT met: even with all {b.ranked_layers} ranked layers kept out of quantization the drop is over "
                   "budget; that file is used")
        file = str(b.final_onnx or "").replace("\\", "/").rsplit("/", 1)[-1]
        engines = any(st.engine is not None and st.engine.layer_precisions
                      for st in b.steps)  # a column only where TensorRT's inspector read some back
        parts += [f"### {network}: {runners}",
                  f"Budget {_budget(b)} below fp32's top-1 of {b.fp32_top1:.2f}% on {b.heldout_images} "
                  f"held-out images ({b.heldout_rule or 'not named'}); calibrated on {b.calib_images} "
                  f"images: {outcome}. File: {file}.",
                  table(MIXED_PRECISION_HEADER + (["engine layers (TensorRT)"] if engines else []),
                           [[str(st.k), _step_names(st.added), f"{st.top1:.2f}", f"{st.drop:.2f}",
                             _interval(st.drop_interval), fmt(st.size_mib, 2),
                             "yes" if st.within else "inconclusive" if st.outcome == "inconclusive" else "no"]
                            + ([_engine_cell(st.engine)] if engines else []) for st in b.steps])]
    return compose(*parts)


def _budget(b: MixedPrecision) -> str:
    """The budget in words: points, or the points a share of fp32's top-1 allowed ("0.85 points (1% of ...)")."""
    rule = str(b.budget_rule or "")
    if rule.endswith("%"):
        return f"{float(rule[:-1]) * float(b.fp32_top1) / 100:.2f} points ({rule} of fp32's top-1)"
    return f"{b.budget:g} points"


def _interval(pair: Any) -> str:
    return f"{pair[0]:.2f}..{pair[1]:.2f}" if isinstance(pair, list) and len(pair) == 2 else "-"


def _engine_cell(engine: Optional[MixedPrecisionEngine]) -> str:
    """A step's engine layers by precision, most first ("int8 40, fp32 12"), "not read" where the engine was built
    but not read back, "not built", or "-" where no build was tried."""
    if engine is None:
        return "-"
    counts = engine.layer_precisions
    if counts:
        return ", ".join(f"{p} {n}" for p, n in sorted(counts.items(), key=lambda pn: (-pn[1], pn[0])))  # most first
    return "not read" if engine.built else "not built"


def _step_names(names: Sequence[str], most: int = 3) -> str:
    """The first names a step added, and how many more: a step of 40 layers stays one line."""
    if not names:
        return "-"
    return ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")
