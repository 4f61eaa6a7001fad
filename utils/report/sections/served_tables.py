"""Served within the budget (MLPerf LoadGen, role "scenario"): per network, each runner's Offline samples/s beside
its Server peak within the latency bound, then the SingleStream and MultiStream rows; LoadGen's verdict as it gives it.

Usage:
    doc = served_markdown(records, max_top1_drop=1.0)
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from utils.measure.loadgen_logs import duration_for, too_few_queries
from utils.measure.scenarios import SCENARIOS, paired
from utils.report.doc import Doc, compose, fmt, table
from utils.report.sections.cells import accuracy
from utils.report.select import (UNSTABLE, finite_number, identity_columns, images_key, is_reference, judge_drop,
                                 not_numbers, row_label, row_sort_key, serve_question, serve_settings, served_records,
                                 unstable_reason)

SERVED_HEADING = "## Served within the budget (MLPerf LoadGen)"


SERVED_NOTE = ("Offline: samples/s with every query issued at once. Server: the highest rate of Poisson arrivals "
               "(one sample per query) whose latency percentile stayed within the bound in a LoadGen run that was "
               "VALID (--find_peak bisects whole runs; a single --target_qps run shows its rate where it was VALID, a "
               "rate met rather than a peak), and the latency at that rate. Server / Offline: the share of the batch "
               "throughput served within the bound. x PyTorch fp32: that rate over PyTorch fp32's, at the same bound "
               "on the same images. LoadGen: INVALID with its reasons where no run was VALID.")


STREAM_NAMES = {n: s.title for n, s in SCENARIOS.items() if s.table == "stream"}  # a row per run


PAIRED = [n for n, s in SCENARIOS.items() if s.table == "served"]  # offline and server, paired per runner


Run = Tuple[Tuple[Any, ...], Optional[Dict[str, Any]], Optional[Dict[str, Any]]]  # row key, Offline, Server record


def _latency(r: Optional[Dict[str, Any]], name: str) -> Optional[float]:
    lat = (r or {}).get("latency_ms")
    return finite_number(lat.get(name)) if isinstance(lat, dict) else None


def _batcher(r: Dict[str, Any]) -> str:
    s = serve_settings(r)
    return f"max batch {s.get('max_batch', r.get('batch_size'))}, wait {s.get('max_queue_delay_us', '?')} us"


def served_qps(r: Dict[str, Any]) -> Tuple[Optional[float], str]:
    """A Server record's rate within its bound, and its cell: --find_peak's peak_qps, or a --target_qps run's target
    where it was VALID; (None, what was missed) where no rate was met."""
    pct, bound = serve_question(r)
    tail = fmt(_latency(r, f"p{pct:g}"), 3)
    target = finite_number(r.get("target_qps"))
    if too_few_queries(r):  # LoadGen could not judge: never "not met" under a bound the latency kept
        longer = duration_for(r, finite_number(serve_settings(r).get("duration_s")) or 0.0)
        return None, (f"not judged: too few queries at {fmt(target, 1)} QPS (p{pct:g} {tail} ms, bound {bound:g} ms"
                      + (f"; --duration {longer:g} s would give enough)" if longer else "; a longer --duration)"))
    if serve_settings(r).get("find_peak") or r.get("peak_search"):
        peak = finite_number(r.get("peak_qps"))
        if peak is not None:
            return peak, fmt(peak, 1)
        return None, f"none met (p{pct:g} {tail} ms at {fmt(target, 1)} QPS)"
    if r.get("loadgen_valid") is True and target is not None:
        return target, f"{fmt(target, 1)} (target met)"
    return None, f"not met (p{pct:g} {tail} ms, bound {bound:g} ms)"


def _pair_runs(recs: Sequence[Dict[str, Any]], extra: Sequence[Tuple[str, Callable[[Dict[str, Any]], str]]]
               ) -> List[Run]:
    """Per runner (and dataset, weights, batcher): its newest Offline record beside each of its Server records, one row
    each; a runner without a Server run is one row with its Offline run."""
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = defaultdict(lambda: {"capacity": None, "rate": []})
    for r in sorted(recs, key=lambda r: str(r.get("time", ""))):
        g = groups[(row_label(r), *[f(r) for _, f in extra], _batcher(r))]
        if r.get("scenario") == paired("capacity"):
            g["capacity"] = r
        elif r.get("scenario") == paired("rate"):
            g["rate"].append(r)
    runs = [(key, g["capacity"], s) for key, g in groups.items() for s in g["rate"] or [None]]
    return sorted([run for run in runs if run[1] or run[2]],
                  key=lambda run: (row_sort_key(run[2] or run[1]), tuple(map(str, run[0]))))


def _times_reference(run: Run, runs: Sequence[Run]) -> str:
    """This row's rate within the bound over PyTorch fp32's, on the same images (the same batcher first); a blank
    that says why where there is none."""
    server = run[2]
    mine = served_qps(server)[0] if server else None
    if server is None or mine is None:
        return "-"
    refs = [s for _, _, s in runs if s is not None and is_reference(s) and images_key(s) == images_key(server)]
    refs.sort(key=lambda s: _batcher(s) != _batcher(server))
    if not refs:
        return "- (no plain PyTorch fp32 Server run on these images: no options, no CUDA graph)"
    theirs = served_qps(refs[0])[0]
    return f"{mine / theirs:.2f}x" if theirs else "- (PyTorch fp32 met no rate)"


def _served_top1(offline: Optional[Dict[str, Any]], server: Optional[Dict[str, Any]]) -> str:
    """The Server run's top-1 (LoadGen's accuracy run), else the Offline run's; "not checked" and why where LoadGen's
    accuracy log could not give one."""
    first, other = (server, offline) if server is not None else (offline, None)
    if first is not None and first.get("top1") is not None:
        return accuracy(first, "top1")
    why = f"not checked: {first['accuracy_error']}" if first is not None and first.get("accuracy_error") else None
    if other is not None and other.get("top1") is not None:
        return f"{accuracy(other, 'top1')} (Offline's" + (f"; Server {why}" if why else "") + ")"
    return why or "-"


def _loadgen_verdict(runs: Sequence[Tuple[str, Optional[Dict[str, Any]]]]) -> str:
    """VALID, or INVALID with LoadGen's reasons for each scenario of the row that had no VALID run."""
    bad = []
    for name, r in runs:
        if r is None or r.get("loadgen_valid") is True or (name == "Server" and served_qps(r)[0] is not None):
            continue
        reasons = [str(x) for x in r.get("loadgen_invalid_reasons") or []] + (
            [str(r["peak_stopped"])] if r.get("peak_stopped") else [])
        if r.get("loadgen_valid") is None and not reasons:
            reasons = ["LoadGen's verdict was not recorded"]
        bad.append(f"{name}: {'; '.join(reasons) or 'no reason given'}")
    return "INVALID (" + ". ".join(bad) + ")" if bad else "VALID"


def _gate_mark(r: Optional[Dict[str, Any]], ref: Optional[Dict[str, Any]], max_drop: float) -> str:
    if r is None or not_numbers(r):
        return "NaN" if r is not None else "-"
    if r.get("top1") is None:
        return "no top-1"
    if ref is None or ref.get("top1") is None:
        return "no reference"
    return judge_drop(float(ref["top1"]) - float(r["top1"]), max_drop, None, float(ref["top1"]))


def _shaky(r: Optional[Dict[str, Any]], cell: str) -> str:
    """A served figure marked where its run's host was loaded (select.unstable_reason: as a timing row is)."""
    return cell + UNSTABLE if r is not None and cell != "-" and unstable_reason(r, ()) else cell


def _served_row(run: Run, runs: Sequence[Run], pct: float, max_drop: Optional[float]) -> List[Any]:
    key, offline, server = run
    offline_rate = finite_number((offline or {}).get("samples_per_s"))
    rate, rate_cell = served_qps(server) if server else (None, "-")
    share = f"{rate / offline_rate:.2f}" if rate is not None and offline_rate else "-"
    at = server if rate is not None else None
    row = [*key, _shaky(offline, fmt(offline_rate, 1)), _shaky(server, rate_cell), share, fmt(_latency(at, "p50"), 3),
           fmt(_latency(at, f"p{pct:g}"), 3), _served_top1(offline, server), _times_reference(run, runs),
           _loadgen_verdict([("Offline", offline), ("Server", server)])]
    if max_drop is not None:
        mine = next((r for r in (server, offline) if r is not None and r.get("top1") is not None), server or offline)
        refs = [r for _, o, s in runs for r in (s, o) if r is not None and is_reference(r) and r.get("top1") is not None
                and images_key(r) == images_key(mine or {})]
        row.append(_gate_mark(mine, refs[0] if refs else None, max_drop))
    return row


def _served_table(runs: Sequence[Run], extra: Sequence[Tuple[str, Any]], question: Optional[Tuple[float, float]],
                  max_drop: Optional[float]) -> Doc:
    """The Offline / Server table of one network and one latency bound."""
    pct, bound = question or (99.0, 15.0)
    batchers = len({run[0][-1] for run in runs}) > 1  # the batcher's column only where rows differ in it
    rows = [_served_row(run, runs, pct, max_drop) for run in runs]
    rows = [row if batchers else row[:len(extra) + 1] + row[len(extra) + 2:] for row in rows]
    head = (["runner", *[h for h, _ in extra]] + ["batcher"] * batchers
            + ["Offline samples/s", f"Server peak QPS (p{pct:g} <= {bound:g} ms)" if question else "Server peak QPS",
               "Server / Offline", "p50 @ peak (ms)", f"p{pct:g} @ peak (ms)", "top-1 (%)", "x PyTorch fp32", "LoadGen"]
            + ([f"drop <= {max_drop:g}"] if max_drop is not None else []))
    return table(head, rows)


def _stream_table(recs: Sequence[Dict[str, Any]], extra: Sequence[Tuple[str, Callable[[Dict[str, Any]], str]]]
                  ) -> Doc:
    """SingleStream (one sample per query, one query after the other) and MultiStream rows: latency and samples/s."""
    mine = sorted((r for r in recs if r.get("scenario") in STREAM_NAMES),
                  key=lambda r: (row_sort_key(r), row_label(r), list(STREAM_NAMES).index(r["scenario"])))
    if not mine:
        return compose()
    rows = [[row_label(r), *[f(r) for _, f in extra], STREAM_NAMES[str(r["scenario"])] + (
                f" ({serve_settings(r).get('samples_per_query')} samples/query)" if SCENARIOS[str(r["scenario"])].per_query
                else ""),
             fmt(_latency(r, "p50"), 3), fmt(_latency(r, "p90"), 3), fmt(_latency(r, "p99"), 3),
             _shaky(r, fmt(finite_number(r.get("samples_per_s")), 1)), _served_top1(r, None), _loadgen_verdict([("LoadGen", r)])]
            for r in mine]
    return table(["runner", *[h for h, _ in extra], "scenario", "p50 (ms)", "p90 (ms)", "p99 (ms)", "samples/s",
                     "top-1 (%)", "LoadGen"], rows)


def _served_note(recs: Sequence[Dict[str, Any]], question: Optional[Tuple[float, float]]) -> str:
    """One line under a network's tables: the bound, LoadGen's version, how long each run lasted."""
    versions = sorted({str(r["loadgen_version"]) for r in recs if r.get("loadgen_version")})
    notes = sorted({str(r["duration_note"]) for r in recs if r.get("duration_note")})
    bound = (f"Server held to p{question[0]:g} latency <= {question[1]:g} ms" if question else
             "no Server run")
    return (f"{bound}; LoadGen {', '.join(versions) or 'version not recorded'}"
            + (f"; {'; '.join(notes)}" if notes else "") + ".")


def _served_network(network: str, recs: Sequence[Dict[str, Any]], max_drop: Optional[float]) -> List[Any]:
    """A network's served tables: one per latency bound its Server runs were held to, then its stream rows."""
    extra = identity_columns(recs)
    runs = _pair_runs(recs, extra)
    bounds: List[Optional[Tuple[float, float]]] = [*sorted({serve_question(s) for _, _, s in runs if s is not None})]
    questions = bounds or [None]
    parts: List[Any] = []
    for q in questions:
        mine = [run for run in runs if run[2] is None or serve_question(run[2]) == q]
        title = f"### {network}" + (f", Server at p{q[0]:g} <= {q[1]:g} ms" if q and len(questions) > 1 else "")
        parts += [title, _served_table(mine, extra, q, max_drop) if mine else None, _served_note(recs, q)]
    stream = _stream_table(recs, extra)
    if stream:
        parts += ["SingleStream and MultiStream (latency per query):", stream]
    return parts


def served_markdown(records: Sequence[Dict[str, Any]], max_top1_drop: Optional[float] = None) -> Doc:
    """Served within the budget, per network: each runner's Offline samples/s, its Server peak QPS within the latency
    bound, their ratio, the latency at that rate, top-1 under LoadGen, the peak over PyTorch fp32's and LoadGen's
    verdict; SingleStream / MultiStream rows below. With max_top1_drop, rows over it are marked. Empty without
    serving records."""
    recs = served_records(records)
    recs = [r for r in recs if r.get("scenario") in SCENARIOS]
    if not recs:
        return compose()
    parts: List[Any] = [SERVED_HEADING, SERVED_NOTE]
    for network in sorted({str(r.get("network")) for r in recs}):
        parts += _served_network(network, [r for r in recs if str(r.get("network")) == network], max_top1_drop)
    return compose(*parts)
