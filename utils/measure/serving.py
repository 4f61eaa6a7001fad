"""Serving scenarios under MLPerf's own LoadGen (mlcommons-loadgen): the latency a deployment meets under load.

LoadGen sends the queries (Offline: every sample at once; Server: Poisson arrivals at a target rate;
SingleStream: one sample after the other; MultiStream: 8 samples per query, one query after the other) and
measures every latency itself; ArtTRT gives it a query sample library over the decoded cache and a system under test
that feeds the same Runner as the timing loop through a dynamic batcher (utils/measure/sut.py). The scenarios and
their settings are one table (utils/measure/scenarios.py); LoadGen's logs are read by utils/measure/loadgen_logs.py;
here is the harness: one LoadGen test per call, and a scenario's whole run (serve) with the peak search (find_peak).

Each scenario runs LoadGen twice: in AccuracyOnly (every sample once; the responses LoadGen logged, the top-1
class of each, are checked against the labels: the row's own top-1) and in PerformanceOnly (its figures, VALID
or INVALID with LoadGen's reasons). --find_peak bisects the Server's target QPS with whole LoadGen runs rather
than LoadGen's FindPeakPerformance mode: each step is a complete run whose summary is kept (the points of the
latency-versus-throughput curve), each step lasts --duration, and the bracket starts at the Offline rate the
runner just showed, so the search is bounded in time and says where it stopped.

The harness keeps Python off the per-sample path where LoadGen lets it: the fast SUT (ConstructFastSUT) hands
over the ids and indices of a query as two vectors, the Server's due queries are coalesced into one call
(server_coalesce_queries), and a batch's images are gathered on the device by one index copy.

Usage:
    fields = serve(runner_infer(runner, samples, sizes), samples, labels, count,
                   ServeOptions("server", max_batch=64, find_peak=True, duration_s=10), Path("outputs/loadgen/x"), sizes)
"""
from __future__ import annotations

import gc
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from utils.core.deps import mlperf_loadgen
from utils.core.errors import ArtTRTError, first_line
from utils.core.signals import signals_held_while
from utils.measure.loadgen_logs import accuracy_of, duration_for, read_detail, summarize, too_few_queries
from utils.measure.scenarios import (MLPERF_MIN_DURATION_S, MLPERF_PERF_SAMPLES, PERCENTILES, REPORTED, SCENARIOS,
                                     ServeOptions, batch_take, buckets, check_options, check_schedule)
from utils.measure.stats import latency_stats
from utils.measure.sut import BatchingSUT, BatchStats, DeviceSamples, runner_infer

if TYPE_CHECKING:
    import numpy as np
else:
    from utils.core.deps import np


log = logging.getLogger(__name__)

PEAK_TOLERANCE = 0.025       # the bisection stops when the bracket is within 2.5 % of its upper end
PEAK_MAX_STEPS = 8
SWITCH_INTERVAL_S = 2e-4    # Python's thread switch interval while LoadGen runs (Python's default: 5 ms)
# what the harness's callers and the tests reach through this module (each defined once, in its own module)
__all__ = ["Harness", "serve", "find_peak", "estimate_rate", "PEAK_TOLERANCE", "PEAK_MAX_STEPS", "SWITCH_INTERVAL_S",
           "ServeOptions", "SCENARIOS", "PERCENTILES", "REPORTED", "MLPERF_MIN_DURATION_S", "MLPERF_PERF_SAMPLES",
           "check_options", "buckets", "batch_take", "DeviceSamples", "BatchStats", "BatchingSUT", "runner_infer",
           "read_detail", "summarize", "too_few_queries", "accuracy_of", "signals_held_while"]


LOG_ROOM_BYTES = 4 * 2 ** 20  # a LoadGen run's detail and summary logs, with room to spare (they are ~50 KiB)


class Harness:
    """One runner (or any infer function) under LoadGen: the QSL, the batching SUT, one test per call."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], samples: Any, count: int, opts: ServeOptions,
                 folder: Path, sizes: Sequence[int], stream: Any = None, perf_count: Optional[int] = None):
        lg = mlperf_loadgen
        self.lg, self.opts, self.folder, self.count = lg, opts, folder, count
        self.infer, self.stream, self.samples = infer, stream, samples
        self.perf_count = min(count, perf_count or MLPERF_PERF_SAMPLES)
        self.sizes = list(sizes)
        self.stats = BatchStats()  # the last run's batches

    def settings(self, mode: str, target_qps: Optional[float] = None, expected_qps: Optional[float] = None,
                 expected_latency_s: Optional[float] = None) -> Any:
        lg, o = self.lg, self.opts
        st = lg.TestSettings()
        st.scenario = getattr(lg.TestScenario, SCENARIOS[o.scenario].loadgen)
        st.mode = getattr(lg.TestMode, mode)
        st.min_duration_ms = int(o.duration_s * 1000)
        st.min_query_count = 1  # --duration bounds the run (MLPerf's query counts are for 600 s submissions)
        st.performance_sample_count_override = self.perf_count
        st.qsl_rng_seed = st.sample_index_rng_seed = st.schedule_rng_seed = o.seed
        if target_qps is not None:  # a search's or accuracy run's rate, checked as --target_qps is
            check_schedule(target_qps, o.duration_s, "a Server rate of")
            st.server_target_qps = float(target_qps)
        st.server_target_latency_ns = int(o.latency_bound_ms * 1e6)
        st.server_target_latency_percentile = o.percentile / 100.0
        st.server_coalesce_queries = True
        if expected_qps is not None:
            if o.scenario == "offline":  # Offline issues expected rate x duration samples at once
                check_schedule(expected_qps, o.duration_s, "an Offline rate of")
            st.offline_expected_qps = float(expected_qps)
        if expected_latency_s is not None:  # under what it will be: LoadGen then makes enough queries for the run
            st.single_stream_expected_latency_ns = max(1, int(expected_latency_s * 1e9 / 4))
            st.multi_stream_expected_latency_ns = max(1, int(expected_latency_s * 1e9 / 4))
        st.multi_stream_samples_per_query = o.samples_per_query
        return st

    def run(self, name: str, settings: Any) -> Path:
        """One LoadGen test; its logs go to folder/name; returns that folder."""
        lg = self.lg
        out = self._log_folder(name)
        logs = lg.LogSettings()
        logs.log_output.outdir = str(out)
        logs.log_output.copy_summary_to_stdout = False
        logs.enable_trace = False
        sut = BatchingSUT(self.infer, self.opts.max_batch, self.opts.max_queue_delay_us * 1e-6, self.stream,
                          self.sizes)
        self.stats = sut.stats
        qsl = lg.ConstructQSL(self.count, self.perf_count, self.samples.load, self.samples.unload)
        gc.collect()
        gc.freeze()  # what lives now is never scanned again: no long collection pause while LoadGen's clock runs
        switch = sys.getswitchinterval()
        # LoadGen's issue thread enters Python (the SUT's issue callback) for every due query, and times each query
        # from its scheduled time: with Python's 5 ms switch interval, a worker busy in Python could hold a due
        # query back by up to 5 ms. The interval is cut to SWITCH_INTERVAL_S for the run. (Measured apart on the H200,
        # eager fp16 with CUDA graphs: 13,556 QPS with 5 ms, 13,578 and 13,751 with 0.2 ms: within the noise there.)
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
        interrupted = False
        try:
            with signals_held_while(f"the LoadGen run {name!r}", on_signal=sut.drain):
                lg.StartTestWithLogSettings(sut.handle, qsl, settings, logs)
        except KeyboardInterrupt:
            interrupted = True  # a runner's failure must not replace the interrupt (a study goes on past errors)
            raise
        finally:
            sys.setswitchinterval(switch)
            gc.unfreeze()
            lg.DestroyQSL(qsl)
            sut.stop(say_error=not interrupted)
        return out

    def _log_folder(self, name: str) -> Path:
        """Where a run's logs go: folder/name, or the system's temporary folder where the output's disk has no room
        for them (LoadGen writes its figures only there, and a full disk would lose them: said, not silent)."""
        out = self.folder / name
        need = LOG_ROOM_BYTES + 100 * self.count  # the detail log, and an accuracy log of every sample
        try:
            out.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(out).free
        except OSError as err:
            free, why = 0, first_line(err)
        else:
            why = f"{free / 2 ** 20:.1f} MiB free"
        if free >= need:
            return out
        away = Path(tempfile.mkdtemp(prefix="arttrt-loadgen-")) / name
        away.mkdir(parents=True)
        log.warning("the disk of %s has no room for LoadGen's logs (%s): this run's logs go to %s", self.folder, why,
                    away)
        return away

    def batch_fields(self) -> Dict[str, Any]:
        """The last run's batches: how many, their mean size, the padding the prepared sizes added, how long a batch
        took from the queue to LoadGen being told (p50/p99/max, ms: the part of a query's latency the SUT spends on
        it; batch_respond_ms: of which telling LoadGen), and the share of the run's span the worker spent on batches.
        With no --max_queue_delay_us the worker takes whatever is queued as soon as it is free, so under any load that
        keeps it going the share is near 1 and the batches grow instead; below 1, it waited for queries."""
        s = self.stats
        padded = sum(count * (next(b for b in self.sizes if b >= n) - n) for n, count in s.sizes.items())
        fields: Dict[str, Any] = {"batches": s.batches, "padded_samples": padded,
                                  "mean_batch": round(s.samples / s.batches, 2) if s.batches else None}
        if s.service_s:
            fields["batch_service_ms"] = _spread(np.asarray(s.service_s) * 1e3)
            fields["batch_respond_ms"] = _spread(np.asarray(s.respond_s) * 1e3)
            span = (s.last_s or 0.0) - (s.first_s or 0.0)
            fields["sut_busy"] = round(min(1.0, sum(s.service_s) / span), 4) if span > 0 else None
        return fields


def _spread(ms: np.ndarray) -> Dict[str, float]:
    """p50, p99 and max of per-batch times in ms, by the timing loop's own statistics (utils.measure.stats)."""
    stats = latency_stats(ms)
    return {k: round(stats[k], 4) for k in ("p50", "p99", "max")}


def _remove_trace(folder: Path) -> None:
    trace = folder / "mlperf_log_trace.json"
    if trace.is_file() and trace.stat().st_size == 0:
        trace.unlink()


def estimate_rate(infer: Callable[[np.ndarray], np.ndarray], samples: DeviceSamples, count: int, sizes: List[int],
                  warm_s: float = 0.5) -> Tuple[float, float]:
    """(samples/s at the largest size, seconds per single sample) over a short untimed run of the SUT's own
    inference (what LoadGen's expected rates are set from); every padded size is run first."""
    idx_all = np.arange(count, dtype=np.int64)
    samples.load(idx_all[:max(sizes)] if count >= max(sizes) else idx_all)
    loaded = np.flatnonzero(samples.slot >= 0)

    def pick(n: int) -> np.ndarray:
        return np.resize(loaded, n)

    for b in sizes:  # compile/capture every padded shape before any clock runs
        infer(pick(b))
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < warm_s or n == 0:
        infer(pick(sizes[-1]))
        n += sizes[-1]
    rate = n / (time.perf_counter() - t0)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < warm_s / 2 or k == 0:
        infer(pick(1))
        k += 1
    single = (time.perf_counter() - t0) / k
    samples.unload([])
    return rate, single


def serve(infer: Callable[[np.ndarray], np.ndarray], samples: DeviceSamples, labels: np.ndarray, count: int,
          opts: ServeOptions, folder: Path, sizes: List[int], stream: Any = None) -> Dict[str, Any]:
    """Runs one scenario (accuracy, then performance; --find_peak: the bisection) and returns the record's fields.
    The LoadGen logs stay under folder (accuracy/, performance/ or peak-N/)."""
    lg = mlperf_loadgen

    rate, single_s = estimate_rate(infer, samples, count, sizes)
    h = Harness(infer, samples, count, opts, folder, sizes, stream)
    fields: Dict[str, Any] = {
        "scenario": opts.scenario, "serve_settings": asdict(opts), "loadgen_version": _version(lg),
        "padded_batch_sizes": sizes, "warmup_samples_per_s": round(rate, 2),
        "duration_note": (f"each LoadGen run lasted at least --duration {opts.duration_s:g} s; MLPerf's submission "
                          f"runs last at least {MLPERF_MIN_DURATION_S} s, so these figures are not MLPerf results")}
    o = opts
    steps: List[Dict[str, Any]] = []
    if o.scenario == "server" and o.find_peak:
        final, steps, acc_qps = find_peak(h, rate, fields)
    else:
        final = _perf(h, "performance", target_qps=o.target_qps, expected_qps=rate * 1.5,
                      expected_latency_s=single_s)
        if o.scenario == "offline" and "it ran shorter than --duration" in final["loadgen_invalid_reasons"] \
                and final.get("samples_per_s"):
            # the runner outran the samples issued (LoadGen issues duration x expected rate): once more at its rate
            expected = final["samples_per_s"] * 1.5
            log.info("LoadGen offline: run again, expecting %.1f samples/s: the first run issued too few samples for "
                     "--duration at the warm-up's rate", expected)
            final = _perf(h, "performance-2", expected_qps=expected, expected_latency_s=single_s)
        steps = [final]
        fields["target_qps"] = o.target_qps
        acc_qps = o.target_qps
    fields.update({k: v for k, v in final.items() if k not in ("target_qps", "logs")})
    fields["loadgen_logs"] = final["logs"]
    if o.scenario == "server":
        fields["peak_steps"] = steps
    if o.scenario == "server" and acc_qps is not None:
        # AccuracyOnly issues every sample once at this rate: at a low one (no VALID step, a small --target_qps) that
        # would take count / rate seconds (hours for 50,000 images at 10 QPS), so it is at least count / --duration
        acc_qps = max(acc_qps, count / o.duration_s)
        fields["accuracy_qps"] = round(acc_qps, 2)
    acc_dir = h.run("accuracy", h.settings("AccuracyOnly", target_qps=acc_qps, expected_qps=rate * 1.5,
                                           expected_latency_s=single_s))
    fields.update(accuracy_of(acc_dir / "mlperf_log_accuracy.json", labels, count))
    fields["accuracy_logs"] = acc_dir.name if acc_dir.parent == h.folder else str(acc_dir)
    return fields


def find_peak(h: Harness, rate: float, fields: Dict[str, Any]) -> Tuple[Dict[str, Any], List[Dict[str, Any]], float]:
    """Bisects the Server's target QPS with whole LoadGen runs, from 1.1 x the warm-up's rate down: (the final run,
    every step, the rate the accuracy run takes); fields gets peak_search, peak_qps (None: no VALID step),
    target_qps and, where the search could not go on, peak_stopped."""
    o = h.opts
    fields["peak_search"] = (f"bisection of whole LoadGen Server runs from the warm-up's rate "
                             f"({rate:.0f} samples/s), to within {PEAK_TOLERANCE:.0%} or {PEAK_MAX_STEPS} steps")
    lo, hi = 0.0, rate * 1.1
    q = hi
    best: Optional[Dict[str, Any]] = None
    steps: List[Dict[str, Any]] = []
    for step in range(PEAK_MAX_STEPS):
        res = _perf(h, f"peak-{step + 1}", target_qps=q)
        steps.append(res)
        if res["loadgen_valid"]:
            lo, best = q, res
            if step == 0:
                break  # the first try, above the warm-up's own rate, is already within the bound
        elif too_few_queries(res):  # a lower rate has fewer queries still: the search cannot go on
            longer = duration_for(res, o.duration_s)
            fields["peak_stopped"] = (
                f"at {q:.1f} QPS the {res.get('queries') or 'few'} queries of a {o.duration_s:g} s run were too few "
                f"for LoadGen to judge the p{o.percentile:g} latency"
                + (f" (it needs {res['queries_needed']}): give --duration {longer:g} or more" if longer
                   else ": give a longer --duration"))
            break
        else:
            hi = q
        if hi - lo <= PEAK_TOLERANCE * hi:
            break
        q = (lo + hi) / 2
    fields["peak_qps"] = round(lo, 2) if best is not None else None
    final = best or steps[-1]
    fields["target_qps"] = final["target_qps"]
    return final, steps, (lo if best is not None else steps[-1]["target_qps"])


def _perf(h: Harness, name: str, target_qps: Optional[float] = None, expected_qps: Optional[float] = None,
          expected_latency_s: Optional[float] = None) -> Dict[str, Any]:
    out = h.run(name, h.settings("PerformanceOnly", target_qps=target_qps, expected_qps=expected_qps,
                                 expected_latency_s=expected_latency_s))
    _remove_trace(out)
    detail = read_detail(out / "mlperf_log_detail.txt")
    if detail.get("result_validity") is None:  # LoadGen could not write its verdict: never read as INVALID
        free = shutil.disk_usage(out).free
        raise ArtTRTError(f"LoadGen's log of the run {name!r} in {out} ends before its result ({free / 2 ** 20:.1f} MiB "
                          "free on that disk" + (": it is full" if free < LOG_ROOM_BYTES else "")
                          + "): the run's figures are lost; free some space and run it again")
    res = summarize(detail, h.opts.scenario)
    res["target_qps"] = round(target_qps, 2) if target_qps is not None else None
    res["logs"] = out.name if out.parent == h.folder else str(out)  # elsewhere: the whole path
    res.update(h.batch_fields())
    reasons = res.get("loadgen_invalid_reasons") or []
    log.info("LoadGen %s %s: %s, %s samples/s, p%g %s ms%s", h.opts.scenario, name,
             "VALID" if res["loadgen_valid"] else "INVALID", res.get("samples_per_s"), h.opts.percentile,
             res["latency_ms"].get(f"p{h.opts.percentile:g}"),
             f" ({'; '.join(map(str, reasons))})" if reasons and not res["loadgen_valid"] else "")
    return res


def _version(lg: Any) -> Optional[str]:
    try:
        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001 - a version is a fact for the record, not a reason to fail
        return None
