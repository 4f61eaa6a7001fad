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
from utils.report.schema import Record
from utils.report.sections.cells import accuracy
from utils.report.select import (UNSTABLE, finite_number, identity_columns, images_key, is_reference, judge_drop,
                                 not_numbers, row_label, row_sort_key, serve_question, serve_settings, served_records,
                                 unstable_reason)

SERVED_HEADING = "## Served within the budget (MLPerf LoadGen)"


SERVED_NOTE = ("Offline: samples/s with every query issued at once. Server: the highest rate of Poisson arrivals "
               "(one sample per query) whose latency percentile stayed within the bound in a LoadGen run that was "
               "VALID (--find_peak bisects whole runs; a single --target_qps run shows its rate where it was VALID, a "
               "rate met rather than a peak), and the latency at that rate. Server / Offline: the share of the batch "
               "throughput served within the bound. x Vanilla: that rate over Vanilla's, at the same bound "
               "on the same images. LoadGen: INVALID with its reasons where no run was VALID.")


STREAM_NAMES = {n: s.title for n, s in SCENARIOS.items() if s.table == "stream"}  # a row per run


PAIRED = [n for n, s in SCENARIOS.items() if s.table == "served"]  # offline and server, paired per runner


Run = Tuple[Tuple[Any, ...], Optional[Record], Optional[Record]]  # row key, Offline, Server record


def _latency(r: Optional[Record], name: str) -> Optional[float]:
    lat = r.latency_ms if r is not None else None
    return finite_number(lat.get(name)) if lat is not None else None  # "p50", "p99.9": LoadGen's percentile names


def _batcher(r: Record) -> str:
    s = serve_settings(r)
    return (f"max batch {s.max_batch if s.has('max_batch') else r.batch_size}, "
            f"wait {s.max_queue_delay_us if s.has('max_queue_delay_us') else '?'} us")


def served_qps(r: Record) -> Tuple[Optional[float], str]:
    """A Server record's rate within its bound, and its cell: --find_peak's peak_qps, or a --target_qps run's target
    where it was VALID; (None, what was missed) where no rate was met."""
    pct, bound = serve_question(r)
    tail = fmt(_latency(r, f"p{pct:g}"), 3)
    target = finite_number(r.target_qps)
    summary = r.as_dict()  # LoadGen's summary as utils.measure.loadgen_logs reads it (below the record's layer)
    if too_few_queries(summary):  # LoadGen could not judge: never "not met" under a bound the latency kept
        longer = duration_for(summary, finite_number(serve_settings(r).duration_s) or 0.0)
        return None, (f"not judged: too few queries at {fmt(target, 1)} QPS (p{pct:g} {tail} ms, bound {bound:g} ms"
                      + (f"; --duration {longer:g} s would give enough)" if longer else "; a longer --duration)"))
    if serve_settings(r).find_peak or r.peak_search:
        peak = finite_number(r.peak_qps)
        if peak is not None:
            return peak, fmt(peak, 1)
        return None, f"none met (p{pct:g} {tail} ms at {fmt(target, 1)} QPS)"
    if r.loadgen_valid is True and target is not None:
        return target, f"{fmt(target, 1)} (target met)"
    return None, f"not met (p{pct:g} {tail} ms, bound {bound:g} ms)"


def _pair_runs(recs: Sequence[Record], extra: Sequence[Tuple[str, Callable[[Record], str]]]
               ) -> List[Run]:
    """Per runner (and dataset, weights, batcher): its newest Offline record beside each of its Server records, one row
    each; a runner without a Server run is one row with its Offline run."""
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = defaultdict(lambda: {"capacity": None, "rate": []})
    for r in sorted(recs, key=lambda r: str(r.time or "")):
        g = groups[(row_label(r), *[f(r) for _, f in extra], _batcher(r))]
        if r.scenario == paired("capacity"):
            g["capacity"] = r
        elif r.scenario == paired("rate"):
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
        return "- (no plain Vanilla Server run on these images: no options, no CUDA graph)"
    theirs = served_qps(refs[0])[0]
    return f"{mine / theirs:.2f}x" if theirs else "- (Vanilla met no rate)"


def _served_top1(offline: Optional[Record], server: Optional[Record]) -> str:
    """The Server run's top-1 (LoadGen's accuracy run), else the Offline run's; "not checked" and why where LoadGen's
    accuracy log could not give one."""
    first, other = (server, offline) if server is not None else (offline, None)
    if first is not None and first.top1 is not None:
        return accuracy(first, "top1")
    why = f"not checked: {first.accuracy_error}" if first is not None and first.accuracy_error else None
    if other is not None and other.top1 is not None:
        return f"{accuracy(other, 'top1')} (Offline's" + (f"; Server {why}" if why else "") + ")"
    return why or "-"


def _loadgen_verdict(runs: Sequence[Tuple[str, Optional[Record]]]) -> str:
    """VALID, or INVALID with LoadGen's reasons for each scenario of the row that had no VALID run."""
    bad = []
    for name, r in runs:
        if r is None or r.loadgen_valid is True or (name == "Server" and served_qps(r)[0] is not None):
            continue
        reasons = [str(x) for x in r.loadgen_invalid_reasons or []] + (
            [str(r.peak_stopped)] if r.peak_stopped else [])
        if r.loadgen_valid is None and not reasons:
            reasons = ["LoadGen's verdict was not recorded"]
        bad.append(f"{name}: {'; '.join(reasons) or 'no reason given'}")
    return "INVALID (" + ". ".join(bad) + ")" if bad else "VALID"


def _gate_mark(r: Optional[Record], ref: Optional[Record], max_drop: float) -> str:
    if r is None or not_numbers(r):
        return "NaN" if r is not None else "-"
    if r.top1 is None:
        return "no top-1"
    if ref is None or ref.top1 is None:
        return "no reference"
    return judge_drop(float(ref.top1) - float(r.top1), max_drop, None, float(ref.top1))


def _shaky(r: Optional[Record], cell: str) -> str:
    """A served figure marked where its run's host was loaded (select.unstable_reason: as a timing row is)."""
    return cell + UNSTABLE if r is not None and cell != "-" and unstable_reason(r, ()) else cell


def _served_row(run: Run, runs: Sequence[Run], pct: float, max_drop: Optional[float]) -> List[Any]:
    key, offline, server = run
    offline_rate = finite_number(offline.samples_per_s if offline is not None else None)
    rate, rate_cell = served_qps(server) if server else (None, "-")
    share = f"{rate / offline_rate:.2f}" if rate is not None and offline_rate else "-"
    at = server if rate is not None else None
    row = [*key, _shaky(offline, fmt(offline_rate, 1)), _shaky(server, rate_cell), share, fmt(_latency(at, "p50"), 3),
           fmt(_latency(at, f"p{pct:g}"), 3), _served_top1(offline, server), _times_reference(run, runs),
           _loadgen_verdict([("Offline", offline), ("Server", server)])]
    if max_drop is not None:
        mine = next((r for r in (server, offline) if r is not None and r.top1 is not None), server or offline)
        refs = [r for _, o, s in runs for r in (s, o) if r is not None and is_reference(r) and r.top1 is not None
                and mine is not None and images_key(r) == images_key(mine)]
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
               "Server / Offline", "p50 @ peak (ms)", f"p{pct:g} @ peak (ms)", "top-1 (%)", "x Vanilla", "LoadGen"]
            + ([f"drop <= {max_drop:g}"] if max_drop is not None else []))
    return table(head, rows)


def _stream_table(recs: Sequence[Record], extra: Sequence[Tuple[str, Callable[[Record], str]]]
                  ) -> Doc:
    """SingleStream (one sample per query, one query after the other) and MultiStream rows: latency and samples/s."""
    mine = sorted((r for r in recs if r.scenario in STREAM_NAMES),
                  key=lambda r: (row_sort_key(r), row_label(r), list(STREAM_NAMES).index(r.scenario)))
    if not mine:
        return compose()
    rows = [[row_label(r), *[f(r) for _, f in extra], STREAM_NAMES[str(r.scenario)] + (
                f" ({serve_settings(r).samples_per_query} samples/query)" if SCENARIOS[str(r.scenario)].per_query
                else ""),
             fmt(_latency(r, "p50"), 3), fmt(_latency(r, "p90"), 3), fmt(_latency(r, "p99"), 3),
             _shaky(r, fmt(finite_number(r.samples_per_s), 1)), _served_top1(r, None), _loadgen_verdict([("LoadGen", r)])]
            for r in mine]
    return table(["runner", *[h for h, _ in extra], "scenario", "p50 (ms)", "p90 (ms)", "p99 (ms)", "samples/s",
                     "top-1 (%)", "LoadGen"], rows)


def _served_note(recs: Sequence[Record], question: Optional[Tuple[float, float]]) -> str:
    """One line under a network's tables: the bound, LoadGen's version, how long each run lasted."""
    versions = sorted({str(r.loadgen_version) for r in recs if r.loadgen_version})
    notes = sorted({str(r.duration_note) for r in recs if r.duration_note})
    bound = (f"Server held to p{question[0]:g} latency <= {question[1]:g} ms" if question else
             "no Server run")
    return (f"{bound}; LoadGen {', '.join(versions) or 'version not recorded'}"
            + (f"; {'; '.join(notes)}" if notes else "") + ".")


def _served_network(network: str, recs: Sequence[Record], max_drop: Optional[float]) -> List[Any]:
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


def served_markdown(records: Sequence[Record], max_top1_drop: Optional[float] = None) -> Doc:
    """Served within the budget, per network: each runner's Offline samples/s, its Server peak QPS within the latency
    bound, their ratio, the latency at that rate, top-1 under LoadGen, the peak over PyTorch fp32's and LoadGen's
    verdict; SingleStream / MultiStream rows below. With max_top1_drop, rows over it are marked. Empty without
    serving records."""
    recs = served_records(records)
    recs = [r for r in recs if r.scenario in SCENARIOS]
    if not recs:
        return compose()
    parts: List[Any] = [SERVED_HEADING, SERVED_NOTE]
    for network in sorted({str(r.network) for r in recs}):
        parts += _served_network(network, [r for r in recs if str(r.network) == network], max_top1_drop)
    return compose(*parts)
