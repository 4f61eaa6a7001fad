"""The end of a study: the tables of its records (the console rows of utils.report.layout.SECTIONS), the report of
the whole folder, the --max_top1_drop gate and the exit status.

Usage:
    return finish_study(max_top1_drop, output, records, started, counts, everything)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from utils.core.confidence import images_to_settle
from utils.core.errors import ArtTRTError, visible
from utils.core.top1_budget import budget_points
from utils.report.layout import View, summary_docs
from utils.report.report import make_report, where_results_are
from utils.report.schema import Record
from utils.report.select import INCONCLUSIVE, OVER, gate_outcomes, paired_of, row_label
from utils.report.terminal import terminal_width

GATE_FAILED = 3  # exit status of a study with rows over --max_top1_drop
GATE_INCONCLUSIVE = 5  # none over, but a row's paired interval holds the budget: more images would tell


def finish_study(max_top1_drop: Optional[float], output: Path, records: List[Record], started: float,
                 counts: Dict[str, int], everything: Sequence[Record] = ()) -> int:
    """The tables of the study's records (SECTIONS' console rows), the report of the whole folder, the top-1 gate and
    the exit status."""
    keys = {r.job_key for r in records if r.job_key}
    fresh = {r.job_key: r for r in everything if r.job_key in keys}
    records = [fresh.get(r.job_key, r) for r in records]  # with the agreement filled in
    view = View.of(records, max_top1_drop)
    docs = summary_docs(view, terminal_width())
    if docs:
        print("\n\n".join(d.rstrip("\n") for d in docs))
    fallback = Path(tempfile.gettempdir()) / "arttrt-records"  # where Recorder.write keeps what the folder refused
    away = [Path(r.path) for r in records if r.path and (r.elsewhere or Path(r.path).parent == fallback)]
    if away:  # Recorder.write kept them in the system's temporary folder: say where, draw nothing over them
        raise ArtTRTError(f"{output} took no file (the disk is full or read-only): the records of this run are in "
                          f"{away[0].parent}; no tables or report were drawn")
    make_report(output, max_top1_drop=max_top1_drop, records=list(everything) or None)
    print(where_results_are(output))
    took = time.perf_counter() - started
    total = sum(counts.values())
    print(f"study: {total} job{'s' if total != 1 else ''} ({counts.get('measured', 0)} measured, "
          f"{counts.get('done before', 0)} found done before, {counts.get('skipped', 0)} skipped, "
          f"{counts.get('error', 0)} failed) in {took:.1f} s")
    gate = top1_gate(view.ok, max_top1_drop) if max_top1_drop is not None else 0
    if gate:
        return gate
    return 1 if counts.get("error") else 0


def top1_gate(records: Sequence[Record], max_top1_drop: float) -> int:
    """The --max_top1_drop gate over records: a line on stderr for each row more than max_top1_drop points below
    PyTorch fp32 on the same images (or whose outputs were not numbers), and for each whose paired interval straddles
    the budget; GATE_FAILED where any is over, GATE_INCONCLUSIVE where none is but some cannot be told, else 0."""
    valid = [r for r in records if r.kind == "validate" and not r.error]
    rows = gate_outcomes(valid, max_top1_drop)
    paired = paired_of(valid)
    relative = bool(getattr(max_top1_drop, "relative", False))
    for r, drop, outcome in rows:
        name = f"{visible(r.network)} {visible(row_label(r))}"
        if drop is None:  # outputs that are not numbers fail the gate whatever the top-1
            print(f"top-1 gate: {name} gave NaN/Inf or unranked outputs on "
                  f"{(r.nonfinite_outputs or 0) + (r.unrankable_outputs or 0)} images", file=sys.stderr)
            continue
        p = paired(r)
        pts = budget_points(max_top1_drop, float(r.top1) + drop)
        budget = f"--max_top1_drop {max_top1_drop:g}" + (f": {pts:.2f} points of Vanilla's "
                                                         f"{float(r.top1) + drop:.2f}" if relative else "")
        span = (f" (paired 95 % interval of the drop {-p.paired_high_points:.2f}..{-p.paired_low_points:.2f})"
                if p is not None else "")
        if outcome == INCONCLUSIVE:
            need = images_to_settle(int(p.paired_images or 0), float(p.paired_low_points),
                                    float(p.paired_high_points), pts,
                                    float(p.paired_change_points)) if p is not None else None
            print(f"top-1 gate: {name} is inconclusive: {drop:.2f} points below Vanilla{span}, which holds "
                  f"{budget}" + (f"; about {need:,} images would settle it" if need else ""), file=sys.stderr)
            continue
        print(f"top-1 gate: {name} is {drop:.2f} points below Vanilla{span} (more than {budget})",
              file=sys.stderr)
    if any(outcome == OVER for _, _, outcome in rows):
        return GATE_FAILED
    return GATE_INCONCLUSIVE if rows else 0
