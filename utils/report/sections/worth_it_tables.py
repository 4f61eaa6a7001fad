"""Is TensorRT worth it, across networks (speed-ups over PyTorch fp32, top-1 drops, the gate's marks), and the jobs
that were not measured."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from utils.backends import registry
from utils.report.doc import Doc, compose, fmt, sci, table
from utils.report.schema import Record
from utils.report.sections.cells import accuracy, rate, row_notes, unstable_footnote
from utils.report.select import (UNSTABLE, identity_columns, images_key, is_reference, judge_drop, latest_per_config,
                                 not_numbers, paired_of, row_label, row_sort_key, timing_rows, top1_drops,
                                 unstable_reason)


def worth_it_markdown(records: Sequence[Record], max_drop: Optional[float] = None) -> Doc:
    """Is TensorRT worth it, across networks: per network and runner, images/s at the largest batch and
    latency-model p50 at the smallest, each beside PyTorch fp32's (x times), top-1 and its drop in points, and
    how often the top-1 class agrees with PyTorch fp32's; with max_drop, the rows over it are marked."""
    every = [r for r in timing_rows(records) if not r.error]
    agree = {r.setup_key: r for r in every if r.setup_key and r.agree_top1_percent is not None}
    recs = latest_per_config(every)
    drops = {id(r): d for r, d in top1_drops(recs)}
    paired = paired_of(every)
    rows = []
    for network in sorted({str(r.network) for r in recs}):
        mine = [r for r in recs if r.network == network]
        extra = identity_columns(mine)
        small, large = min(int(r.batch_size) for r in mine), max(int(r.batch_size) for r in mine)
        groups: Dict[Tuple[str, ...], Dict[int, Record]] = defaultdict(dict)
        for r in mine:
            groups[(row_label(r), *[f(r) for _, f in extra])][int(r.batch_size)] = r
        # each row is divided by the PyTorch fp32 row of the same weights and images (several datasets under one
        # network: each its own reference), found by runner key
        refs: Dict[Any, Dict[int, Record]] = defaultdict(dict)
        for r in mine:
            if is_reference(r):
                refs[images_key(r)][int(r.batch_size)] = r

        def times(g: Dict[int, Record], bs: int, key: str, inverse: bool = False) -> str:
            ref = refs.get(images_key(next(iter(g.values()))))
            if ref is None or bs not in g or bs not in ref or not getattr(g[bs], key) or not getattr(ref[bs], key):
                return "-"
            a, b = float(getattr(g[bs], key)), float(getattr(ref[bs], key))
            peers = [r for r in mine if r.batch_size == bs]
            shaky = unstable_reason(g[bs], peers) or unstable_reason(ref[bs], peers)
            return f"{(b / a if inverse else a / b):.2f}x" + (UNSTABLE if shaky else "")

        for key in sorted(groups, key=lambda k: (row_sort_key(next(iter(groups[k].values()))), k)):
            g = groups[key]
            any_rec = next(iter(g.values()))
            drop = next((drops[id(r)] for r in g.values() if drops.get(id(r)) is not None), None)
            agreed = next((agree[r.setup_key] for r in g.values() if r.setup_key in agree), None)
            agreed = agreed or next((r for r in g.values() if r.agree_top1_percent is not None), None)
            nan = any(not_numbers(r) for r in g.values())
            mark = "" if max_drop is None else "NaN" if nan else (
                "no top-1" if any_rec.top1 is None else "no reference") if drop is None else (
                # on the paired interval where there is one; a share of the reference's top-1 (1%) in its points
                judge_drop(drop, max_drop, paired(any_rec), float(any_rec.top1) + drop))
            rows.append([network, " / ".join(key), rate(g[large], [r for r in mine if r.batch_size == large])
                         if large in g else "-",
                         times(g, large, "images_per_s"),
                         fmt(g[small].latency_model_p50, 3) if small in g else "-",
                         times(g, small, "latency_model_p50", inverse=True), accuracy(any_rec, "top1"),
                         "-" if drop is None else f"{drop:+.2f}",
                         fmt(agreed.agree_top1_percent, 2) if agreed else "-", *([mark] if max_drop is not None
                                                                                        else []),
                         sci(g[large].joules_per_image, ".4g") if large in g else "-"])
    if not rows:
        return compose()
    head = ["network", "runner", "images/s @ largest batch", "x Vanilla (images/s)",
            "latency-model p50 @ smallest (ms)", "x Vanilla (latency)", "top-1 (%)", "top-1 drop (points)",
            "same top-1 as Vanilla (%)"]
    if max_drop is not None:
        head.append(f"drop <= {max_drop:g}")
    if any(row[-1] != "-" for row in rows):  # energy where a GPU's counter gave it (utils/measure/energy.py)
        head.append("J / image @ largest batch")
    else:
        rows = [row[:-1] for row in rows]
    text = table(head, rows)
    shaky = any(UNSTABLE in str(cell) for row in rows for cell in row)
    asked = registry.get(registry.QUESTION_BACKEND)
    absent = None if any(r.backend == asked.name for r in recs) else (
        f"{asked.label} was not measured in these records (it needs an NVIDIA GPU and TensorRT installed: "
        "docs/tensorrt.md): the rows compare the runners that were.")
    return compose("# Is TensorRT worth it? Every network", absent,
                   "Largest and smallest batch of each network; \"x Vanilla\" is how many times faster than Vanilla "
                   "(PyTorch eager at fp32) a row is, in images/s at the largest batch and in latency at the smallest "
                   "(above 1: faster); the top-1 drop is in points below Vanilla on the same images.", text,
                   unstable_footnote(recs) if shaky else None, *row_notes(recs))


def not_measured_markdown(records: Sequence[Record]) -> Doc:
    """The study rows that were skipped (cannot run) or failed, newest per job, unless a later record of the
    same job measured it."""
    latest: Dict[Any, Record] = {}
    for r in records:
        if r.kind == "validate" and r.job_key:
            latest[r.job_key] = r
    groups: Dict[Tuple[str, str, str], List[Tuple[int, str]]] = defaultdict(list)
    for r in latest.values():  # one row per runner and reason, with the jobs it stopped
        if r.error:
            runner = f"{r.backend} {r.precision}" + (f" ({r.options})" if r.options else "")
            groups[(str(r.network), runner, str(r.error))].append((int(r.batch_size or 0),
                                                                             str(r.role or "run")))
    if not groups:
        return compose()
    rows = [[net, runner, ", ".join(f"{role} bs{bs}" if bs else role for bs, role in sorted(set(jobs))), why]
            for (net, runner, why), jobs in sorted(groups.items())]
    return compose("## Not measured", table(["network", "runner", "jobs", "why"], rows))
