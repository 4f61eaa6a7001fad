"""Serving scenarios under MLPerf's own LoadGen (mlcommons-loadgen): the latency a deployment meets under load.

LoadGen sends the queries (Offline: every sample at once; Server: Poisson arrivals at a target rate;
SingleStream: one sample after the other; MultiStream: 8 samples per query, one query after the other) and
measures every latency itself; ArtTRT gives it a query sample library over the decoded cache (the samples
LoadGen loads are copied to the runner's device once) and a system under test that feeds the same Runner as the
timing loop through a dynamic batcher (Triton's: a batch is at most --max_batch samples, and waits at most
--max_queue_delay_us after its first sample for more). Every batch has a prepared size (powers of two up to 32,
then multiples of 32, and --max_batch), so compiled and captured runners never meet a new shape while LoadGen's
clock runs: a batch is the largest prepared size the queue fills (Triton's preferred_batch_size), and only a queue
smaller than every size a runner serves is padded up. Each prepared shape is prepared and run before the test.

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
    fields = serve(runner, dataset, ServeOptions("server", max_batch=64, find_peak=True, duration_s=10),
                   Path("outputs/loadgen/<job key>"))
"""
from __future__ import annotations

import collections
import contextlib
import gc
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import read_text
from utils.measure.stats import latency_stats

log = logging.getLogger(__name__)

SCENARIOS = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream", "multistream": "MultiStream"}
MLPERF_MIN_DURATION_S = 600  # MLPerf inference's minimum run for a submission (every scenario)
PEAK_TOLERANCE = 0.025       # the bisection stops when the bracket is within 2.5 % of its upper end
PEAK_MAX_STEPS = 8
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
REPORTED = tuple(float(p) for p in PERCENTILES)  # the latency percentiles LoadGen's log gives
SWITCH_INTERVAL_S = 2e-4    # Python's thread switch interval while LoadGen runs (Python's default: 5 ms)
MLPERF_PERF_SAMPLES = 1024   # MLPerf ResNet-50's performance sample count: the samples loaded for a timed run


@dataclass(frozen=True)
class ServeOptions:
    """One scenario and its settings (every field changes the figures: all of it is in the job's key)."""

    scenario: str
    max_batch: int = 32
    max_queue_delay_us: int = 0         # Triton's default: a batch takes what is queued, it never waits
    target_qps: Optional[float] = None  # Server: the arrival rate (Poisson)
    latency_bound_ms: float = 15.0      # Server: MLPerf's bound for ResNet-50
    percentile: float = 99.0            # Server: the latency percentile held to the bound
    find_peak: bool = False             # Server: bisect the target QPS for the highest VALID run
    duration_s: float = 10.0            # each performance run (MLPerf's submissions: 600 s)
    samples_per_query: int = 8          # MultiStream
    seed: int = 0

    def __post_init__(self) -> None:
        check_options(self)


def check_options(o: ServeOptions) -> None:
    """Settings that cannot run: one sentence each (before any work)."""
    if o.scenario not in SCENARIOS:
        raise ArtTRTError(f"--scenario {o.scenario!r}: choose from {', '.join(SCENARIOS)}")
    finite = {"--target_qps": o.target_qps, "--latency_bound_ms": o.latency_bound_ms,
              "--percentile": o.percentile, "--duration": o.duration_s}
    for name, value in finite.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ArtTRTError(f"{name} {value}: give a positive finite number")
    if not 1 <= o.max_batch <= 65536:
        raise ArtTRTError(f"--max_batch {o.max_batch}: give a batch size from 1 to 65536")
    if not 0 <= o.max_queue_delay_us <= 10_000_000:
        raise ArtTRTError(f"--max_queue_delay_us {o.max_queue_delay_us}: give 0 to 10000000 microseconds")
    if o.percentile not in REPORTED:
        raise ArtTRTError(f"--percentile {o.percentile:g}: give one LoadGen reports: "
                          f"{', '.join(f'{p:g}' for p in REPORTED)}")
    if o.scenario == "server" and o.target_qps is None and not o.find_peak:
        raise ArtTRTError("--scenario server needs --target_qps QPS (one rate) or --find_peak (the highest rate "
                          f"whose p{o.percentile:g} latency is within --latency_bound_ms)")
    if o.target_qps is not None and o.find_peak:
        raise ArtTRTError("--target_qps and --find_peak: give one (--find_peak searches the rate itself)")
    if o.max_queue_delay_us * 1e-3 >= o.latency_bound_ms and o.scenario == "server":
        raise ArtTRTError(f"--max_queue_delay_us {o.max_queue_delay_us} is not below --latency_bound_ms "
                          f"{o.latency_bound_ms:g}: every batch would wait out the whole latency budget")


def buckets(max_batch: int, serves: Callable[[int], bool], step: int = 32) -> List[int]:
    """The padded batch sizes that the runner serves: powers of two below `step`, then multiples of `step`, and
    max_batch itself. A batch is padded by fewer than `step` rows once it is larger than `step` (powers of two all
    the way padded a Server batch of 79 to 128: half the rows computed were padding on the H200), and a compiled
    runner prepares at most 13 shapes up to 256."""
    small = {2 ** k for k in range(max_batch.bit_length()) if 2 ** k < min(step, max_batch)}
    sizes = sorted(small | set(range(step, max_batch, step)) | {max_batch})
    out = [b for b in sizes if serves(b)]
    if not out:
        raise ArtTRTError(f"this runner serves none of the batch sizes up to --max_batch {max_batch}")
    return out


@contextlib.contextmanager
def signals_held_while(what: str) -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) and SIGTERM until the block ends, then lets each act as it would have (SIGTERM first).

    Python runs a signal's handler on the main thread at its next Python line, and while LoadGen runs that line is
    one of the callbacks LoadGen calls from its C++ code (the QSL's load and unload): a KeyboardInterrupt raised there
    unwinds through LoadGen (on the CPU the process then died of a segfault). So the handlers here only note the
    signal. LoadGen keeps the main thread until its run ends, so a Ctrl-C takes effect then (a Server accuracy run
    lasts about count / rate); Ctrl-\\ (SIGQUIT) or SIGKILL stops the process at once. A signal that was ignored, or
    whose handler Python did not set, is left as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: List[int] = []

    def hold(signum: int, frame: Any) -> None:
        if signum not in got:
            got.append(signum)
            log.warning("%s: stopping when %s ends", signal.Signals(signum).name, what)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: h for sig, h in previous.items() if h is not None and h is not signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in sorted(got, key=lambda s: s != signal.SIGTERM):  # each to the handler it would have met
            signal.raise_signal(sig)


def batch_take(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    """How many of the queued samples the next batch takes: the largest of the prepared sizes that they fill (Triton's
    preferred_batch_size); all of them, up to max_batch, where no size is given or the queue is smaller than every
    size (that batch is then padded up). A queue of 31 makes batches of 16, 8, 4, 2 and 1 in turn. Measured apart on
    the H200 (benchmarks/serving_ablation.py, eager fp16 with CUDA graphs; docs/serving.md): this rule served 13,578
    and 13,751 QPS within the bound, padding every queue up 11,061, and padding only queues below 32 13,073."""
    n = min(queued, max_batch)
    filled = [b for b in sizes if b <= n]
    return max(filled) if filled else n


class DeviceSamples:
    """LoadGen's query sample library over the decoded cache: the samples it loads are copied to the device once;
    a batch is gathered there by one index copy."""

    def __init__(self, dataset: Any, count: int, device: torch.device):
        self.dataset, self.count, self.device = dataset, count, device
        self.slot = np.full(count, -1, dtype=np.int64)
        self.store: Optional[torch.Tensor] = None

    def load(self, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.slot[:] = -1
        self.slot[idx] = np.arange(len(idx))
        images = torch.from_numpy(np.ascontiguousarray(self.dataset.images[np.sort(idx)]))
        order = np.argsort(np.argsort(idx))  # images[] was read in sorted order: row of idx[i] is order[i]
        self.store = images[torch.from_numpy(order)].to(self.device)

    def unload(self, indices: Sequence[int]) -> None:
        self.store = None
        self.slot[:] = -1

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        slots = self.slot[idx]
        if self.store is None or (slots < 0).any():
            raise ArtTRTError("LoadGen asked for a sample it had not loaded")
        return self.store[torch.from_numpy(slots).to(self.device, non_blocking=True)]


@dataclass
class BatchStats:
    batches: int = 0
    samples: int = 0
    sizes: Dict[int, int] = field(default_factory=dict)
    service_s: List[float] = field(default_factory=list)  # each batch: from taken off the queue to LoadGen told
    respond_s: List[float] = field(default_factory=list)  # of which: telling LoadGen (QuerySamplesComplete)
    first_s: Optional[float] = None                       # when the first batch was taken, and the last completed
    last_s: Optional[float] = None


class BatchingSUT:
    """The system under test: LoadGen's queries go into one queue; a worker thread takes batches of at most
    max_batch samples (waiting at most max_delay_s after the oldest for more), runs them, and completes them.

    With `sizes` (the prepared batch sizes), a batch is the largest of them that the queue fills, as Triton's dynamic
    batcher does with preferred_batch_size: 100 queued samples make a batch of 96 and leave 4 for the next one,
    rather than a batch padded to 128 (on the H200 a padded row of a large batch costs what a real one does). Only a
    queue smaller than every size is padded up.

    `infer(idx)` takes dataset indices and returns the int32 top-1 class of each (the response LoadGen logs);
    `infer.warm()`, where it has one, runs on the worker thread before the test starts: the first inference on a new
    thread pays for that thread's library handles (cuDNN, cuBLAS and their workspaces on CUDA), tens of
    milliseconds that would otherwise land on the first queries LoadGen times."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], max_batch: int, max_delay_s: float,
                 stream: Any = None, sizes: Optional[Sequence[int]] = None):
        import mlperf_loadgen as lg

        self.lg, self.infer, self.max_batch, self.max_delay_s = lg, infer, max_batch, max_delay_s
        self.sizes = sorted(b for b in (sizes or ()) if b <= max_batch)
        self.stream = stream
        self.cv = threading.Condition()
        self.pending: Deque[Tuple[np.ndarray, np.ndarray, float]] = collections.deque()
        self.queued = 0
        self.stopping = False
        self.error: Optional[BaseException] = None
        self.stats = BatchStats()
        self.warmed = threading.Event()
        self.thread = threading.Thread(target=self._work, name="arttrt-sut", daemon=True)
        self.thread.start()
        self.warmed.wait()
        if self.error is not None:
            self.thread.join()
            raise ArtTRTError(f"the runner failed before LoadGen started: {first_line(self.error)}") from self.error
        self.handle = lg.ConstructFastSUT(self._issue, self._flush)

    def _issue(self, ids: List[int], indices: List[int]) -> None:
        item = (np.asarray(ids, dtype=np.uint64), np.asarray(indices, dtype=np.int64), time.perf_counter())
        with self.cv:
            self.pending.append(item)
            self.queued += len(item[0])
            self.cv.notify()

    def _flush(self) -> None:
        pass

    def _take(self) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The next batch (ids, indices), or None once stopped; waits as Triton's dynamic batcher does."""
        with self.cv:
            while not self.pending and not self.stopping:
                self.cv.wait()
            if not self.pending:
                return None
            deadline = self.pending[0][2] + self.max_delay_s
            while self.queued < self.max_batch and not self.stopping:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.cv.wait(left)
            ids, idx, need = [], [], batch_take(self.queued, self.max_batch, self.sizes)
            while self.pending and need > 0:
                a, b, t = self.pending[0]
                if len(a) <= need:
                    self.pending.popleft()
                else:  # a query larger than what is left of the batch (Offline): split it
                    self.pending[0] = (a[need:], b[need:], t)
                    a, b = a[:need], b[:need]
                ids.append(a)
                idx.append(b)
                need -= len(a)
            self.queued -= sum(len(a) for a in ids)
        return np.concatenate(ids), np.concatenate(idx)

    def _work(self) -> None:
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else None
        if ctx is not None:
            ctx.__enter__()
        try:
            with torch.inference_mode():
                try:
                    warm = getattr(self.infer, "warm", None)
                    if warm is not None:
                        warm()
                except BaseException as err:  # noqa: BLE001 - said by __init__, before any query
                    self.error = err
                    return
                finally:
                    self.warmed.set()
                while True:
                    batch = self._take()
                    if batch is None:
                        return
                    ids, idx = batch
                    t0 = time.perf_counter()
                    try:
                        pred = np.ascontiguousarray(self.infer(idx), dtype=np.int32)
                    except BaseException as err:  # noqa: BLE001 - said by stop(); LoadGen must still hear back
                        self.error = self.error or err
                        pred = np.full(len(ids), -1, dtype=np.int32)
                    self._complete(ids, pred, t0, time.perf_counter())
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)

    def _complete(self, ids: np.ndarray, pred: np.ndarray, t0: float, t_answered: float) -> None:
        lg = self.lg
        base = pred.ctypes.data
        responses = [lg.QuerySampleResponse(int(i), base + 4 * k, 4) for k, i in enumerate(ids.tolist())]
        lg.QuerySamplesComplete(responses)  # LoadGen copies the data (accuracy mode) before this returns
        t1 = time.perf_counter()
        s = self.stats
        s.batches += 1
        s.samples += len(ids)
        s.sizes[len(ids)] = s.sizes.get(len(ids), 0) + 1
        s.service_s.append(t1 - t0)
        s.respond_s.append(t1 - t_answered)
        s.first_s = t0 if s.first_s is None else s.first_s
        s.last_s = t1

    def stop(self, say_error: bool = True) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.thread.join()
        self.lg.DestroyFastSUT(self.handle)
        if self.error is not None and say_error:
            raise ArtTRTError(f"the runner failed under LoadGen: {first_line(self.error)}") from self.error


def runner_infer(runner: Any, samples: DeviceSamples, sizes: List[int]) -> Callable[[np.ndarray], np.ndarray]:
    """The SUT's inference: gather on the device, normalise, pad up to a prepared size where the batch is not one,
    run, top-1 back."""
    from utils.measure.timing import pad_batch

    def infer(idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        size = next(b for b in sizes if b >= n)
        x = runner.normalizer(samples.gather(idx))
        if size > n:
            x = pad_batch(x, size)
        y = runner.infer(x)[:n]
        top = y.float().argmax(dim=1)
        bad = ~torch.isfinite(y).all(dim=1)  # NaN/Inf outputs answer class -1: counted wrong
        return torch.where(bad, torch.full_like(top, -1), top).to(torch.int32).cpu().numpy()

    def warm() -> None:
        """Every padded size once, on the calling thread (the SUT's worker), from the dataset's first image."""
        first = torch.from_numpy(np.array(samples.dataset.images[:1])).to(samples.device)
        for size in sizes:
            runner.infer(pad_batch(runner.normalizer(first), size)).float().sum().item()

    infer.warm = warm  # type: ignore[attr-defined]
    return infer


def read_detail(path: Path) -> Dict[str, Any]:
    """LoadGen's detail log as key -> value (the last of each key), each line parsed as JSON and nothing else;
    also "_errors" and "_warnings": the messages LoadGen marked so."""
    out: Dict[str, Any] = {"_errors": [], "_warnings": []}
    for line in read_text(path, "LoadGen's detail log").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            item = json.loads(line[len(":::MLLOG "):])
        except ValueError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        if meta.get("is_error"):
            out["_errors"].append(str(item.get("value"))[:500])
        elif meta.get("is_warning"):
            out["_warnings"].append(str(item.get("value"))[:500])
        out[item["key"]] = item.get("value")
    return out


def _number(value: Any) -> Optional[float]:
    """A finite non-negative number from a log value, else None (a NaN in a log is not a figure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _ms(ns: Any) -> Optional[float]:
    v = _number(ns)
    return None if v is None else round(v / 1e6, 4)


def summarize(detail: Dict[str, Any], scenario: str) -> Dict[str, Any]:
    """The record's figures of one performance run from LoadGen's detail log: VALID or not and why, samples/s,
    latency percentiles (ms) and the early-stopping verdict."""
    reasons = []
    if detail.get("result_validity") != "VALID":
        checks = {"result_perf_constraints_met": "the latency constraint was not met",
                  "result_min_duration_met": "it ran shorter than --duration",
                  "result_min_queries_met": "too few queries were answered",
                  "early_stopping_met": "too few queries for LoadGen's early-stopping estimate of the percentile"}
        reasons = [why for key, why in checks.items() if detail.get(key) is False]
        said = detail.get("result_invalid_reason")
        reasons += [f"LoadGen: {str(said)[:500]}"] if isinstance(said, str) and said.strip() else []
        reasons += [f"LoadGen: {e}" for e in detail["_errors"][:3]]
        if not reasons:
            reasons = [f"LoadGen said {str(detail.get('result_validity'))[:40]!r}"]
    per_query = "_per_query" if scenario == "multistream" else ""  # MultiStream's figure is the query's latency
    latency = {f"p{p.rstrip('0').rstrip('.')}": _ms(detail.get(f"result_{p}_percentile{per_query}_latency_ns"))
               for p in PERCENTILES}
    q = "_query" if per_query else ""
    latency.update({k: _ms(detail.get(f"result_{k}{q}_latency_ns")) for k in ("min", "mean", "max")})
    if scenario == "offline":
        served = _number(detail.get("result_samples_per_second"))
    elif scenario == "server":
        served = _number(detail.get("result_completed_samples_per_sec"))
    elif scenario == "singlestream":  # one sample per query, one query after the other
        served = _number(detail.get("result_qps_with_loadgen_overhead"))
    else:  # queries of samples_per_query samples, one after the other: samples over the mean query latency
        mean_ns = _number(detail.get("result_mean_query_latency_ns"))
        spq = _number(detail.get("effective_samples_per_query"))
        served = spq * 1e9 / mean_ns if mean_ns and spq else None
    early = detail.get("early_stopping_result")
    return {"loadgen_valid": detail.get("result_validity") == "VALID", "loadgen_invalid_reasons": reasons,
            "samples_per_s": round(served, 2) if served is not None else None,
            "scheduled_samples_per_s": _round(_number(detail.get("result_scheduled_samples_per_sec"))),
            "latency_ms": {k: v for k, v in latency.items() if v is not None},
            "early_stopping": str(early).strip()[:1000] if early is not None else None,
            "overlatency_queries": _int(detail.get("result_overlatency_query_count")),
            "queries": _int(detail.get("result_query_count"))}


def too_few_queries(res: Dict[str, Any]) -> bool:
    """True where a run is INVALID for its query count, not its latency: the latency percentile was within the bound
    but LoadGen's early-stopping estimate needs more queries (or the minimum count or duration was not met)."""
    latency_ok = "the latency constraint was not met" not in res["loadgen_invalid_reasons"]
    text = str(res.get("early_stopping") or "")
    few = "Need to process at least" in text or "Not enough queries" in text or any(
        r.startswith(("too few queries were", "it ran shorter")) for r in res["loadgen_invalid_reasons"])
    return not res["loadgen_valid"] and latency_ok and few


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


def _int(v: Any) -> Optional[int]:
    n = _number(v)
    return None if n is None else int(n)


def accuracy_of(path: Path, labels: np.ndarray, count: int) -> Dict[str, Any]:
    """Top-1 from LoadGen's accuracy log (mlperf_log_accuracy.json: each response's qsl_idx and data, the int32
    top-1 class): every sample must be answered exactly once; unlabelled samples (label < 0) do not count."""
    try:
        items = json.loads(read_text(path, "LoadGen's accuracy log") or "[]")
    except ValueError as err:
        raise ArtTRTError(f"{path} is not JSON ({first_line(err)}): the accuracy run's responses are lost") from err
    pred = np.full(count, -2, dtype=np.int64)
    seen = np.zeros(count, dtype=np.int64)
    for item in items if isinstance(items, list) else []:
        try:
            i = int(item["qsl_idx"])
            data = bytes.fromhex(item["data"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= i < count and len(data) == 4:
            seen[i] += 1
            pred[i] = int(np.frombuffer(data, dtype=np.int32)[0])
    labelled = labels[:count] >= 0
    answered_once = int((seen == 1).sum())
    fields: Dict[str, Any] = {"accuracy_samples": count, "accuracy_answered_once": answered_once}
    if answered_once != count:
        fields["accuracy_error"] = (f"LoadGen logged {answered_once} of {count} samples answered exactly once: "
                                    "the top-1 is not given")
        return fields
    if labelled.any():
        fields["top1"] = round(100.0 * float((pred[labelled] == labels[:count][labelled]).mean()), 3)
        fields["labelled_images"] = int(labelled.sum())
    fields["images"] = count
    fields["nonfinite_outputs"] = int((pred == -1).sum())
    return fields


class Harness:
    """One runner (or any infer function) under LoadGen: the QSL, the batching SUT, one test per call."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], samples: Any, count: int, opts: ServeOptions,
                 folder: Path, sizes: Sequence[int], stream: Any = None, perf_count: Optional[int] = None):
        import mlperf_loadgen as lg

        self.lg, self.opts, self.folder, self.count = lg, opts, folder, count
        self.infer, self.stream, self.samples = infer, stream, samples
        self.perf_count = min(count, perf_count or MLPERF_PERF_SAMPLES)
        self.sizes = list(sizes)
        self.stats = BatchStats()  # the last run's batches

    def settings(self, mode: str, target_qps: Optional[float] = None, expected_qps: Optional[float] = None,
                 expected_latency_s: Optional[float] = None) -> Any:
        lg, o = self.lg, self.opts
        st = lg.TestSettings()
        st.scenario = getattr(lg.TestScenario, SCENARIOS[o.scenario])
        st.mode = getattr(lg.TestMode, mode)
        st.min_duration_ms = int(o.duration_s * 1000)
        st.min_query_count = 1  # --duration bounds the run (MLPerf's query counts are for 600 s submissions)
        st.performance_sample_count_override = self.perf_count
        st.qsl_rng_seed = st.sample_index_rng_seed = st.schedule_rng_seed = o.seed
        if target_qps is not None:
            st.server_target_qps = float(target_qps)
        st.server_target_latency_ns = int(o.latency_bound_ms * 1e6)
        st.server_target_latency_percentile = o.percentile / 100.0
        st.server_coalesce_queries = True
        if expected_qps is not None:
            st.offline_expected_qps = float(expected_qps)
        if expected_latency_s is not None:  # under what it will be: LoadGen then makes enough queries for the run
            st.single_stream_expected_latency_ns = max(1, int(expected_latency_s * 1e9 / 4))
            st.multi_stream_expected_latency_ns = max(1, int(expected_latency_s * 1e9 / 4))
        st.multi_stream_samples_per_query = o.samples_per_query
        return st

    def run(self, name: str, settings: Any) -> Path:
        """One LoadGen test; its logs go to folder/name; returns that folder."""
        lg = self.lg
        out = self.folder / name
        out.mkdir(parents=True, exist_ok=True)
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
            with signals_held_while(f"the LoadGen run {name!r}"):
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
    import mlperf_loadgen as lg

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
            final = _perf(h, "performance-2", expected_qps=final["samples_per_s"] * 1.5,
                          expected_latency_s=single_s)
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
    fields["accuracy_logs"] = acc_dir.name
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
            fields["peak_stopped"] = (f"at {q:.1f} QPS the run had too few queries for LoadGen to judge the "
                                      f"p{o.percentile:g} latency: give a longer --duration")
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
    res = summarize(read_detail(out / "mlperf_log_detail.txt"), h.opts.scenario)
    res["target_qps"] = round(target_qps, 2) if target_qps is not None else None
    res["logs"] = out.name
    res.update(h.batch_fields())
    log.info("LoadGen %s %s: %s, %s samples/s, p%g %s ms", h.opts.scenario, name,
             "VALID" if res["loadgen_valid"] else "INVALID", res.get("samples_per_s"), h.opts.percentile,
             res["latency_ms"].get(f"p{h.opts.percentile:g}"))
    return res


def _version(lg: Any) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001 - a version is a fact for the record, not a reason to fail
        return None
