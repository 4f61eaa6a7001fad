"""The end of a study: the tables of its records (the console rows of utils.report.layout.SECTIONS), the report of
the whole folder, the --max_top1_drop gate and the exit status.

Usage:
    return finish_study(max_top1_drop, output, records, started, counts, everything)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from utils.core.errors import ArtTRTError, visible
from utils.report.layout import View, summary_docs
from utils.report.report import make_report, where_results_are
from utils.report.select import over_top1_drop, row_label
from utils.report.terminal import terminal_width

GATE_FAILED = 3  # exit status of a study with rows over --max_top1_drop


def finish_study(max_top1_drop: Optional[float], output: Path, records: List[Dict[str, Any]], started: float,
                 counts: Dict[str, int], everything: Sequence[Dict[str, Any]] = ()) -> int:
    """The tables of the study's records (SECTIONS' console rows), the report of the whole folder, the top-1 gate and
    the exit status."""
    keys = {r.get("job_key") for r in records if r.get("job_key")}
    fresh = {r.get("job_key"): r for r in everything if r.get("job_key") in keys}
    records = [fresh.get(r.get("job_key"), r) for r in records]  # with the agreement filled in
    view = View.of(records, max_top1_drop)
    docs = summary_docs(view, terminal_width())
    if docs:
        print("\n\n".join(d.rstrip("\n") for d in docs))
    away = [Path(r["_path"]) for r in records if r.get("_path")
            and not Path(r["_path"]).resolve().is_relative_to(output.resolve())]
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
    if max_top1_drop is not None and top1_gate(view.ok, max_top1_drop):
        return GATE_FAILED
    return 1 if counts.get("error") else 0


def top1_gate(records: Sequence[Dict[str, Any]], max_top1_drop: float) -> bool:
    """The --max_top1_drop gate over records: a line on stderr for each row more than max_top1_drop points below
    PyTorch fp32 on the same images (or whose outputs were not numbers); True where any is."""
    over = over_top1_drop([r for r in records if r.get("kind") == "validate" and not r.get("error")], max_top1_drop)
    for r, drop in over:
        if drop is None:  # outputs that are not numbers fail the gate whatever the top-1
            print(f"top-1 gate: {visible(r['network'])} {visible(row_label(r))} gave NaN/Inf or unranked outputs on "
                  f"{(r.get('nonfinite_outputs') or 0) + (r.get('unrankable_outputs') or 0)} images", file=sys.stderr)
            continue
        print(f"top-1 gate: {visible(r['network'])} {visible(row_label(r))} is {drop:.2f} points below PyTorch fp32 "
              f"(more than --max_top1_drop {max_top1_drop:g})", file=sys.stderr)
    return bool(over)
