"""The serving scenarios, one row each, and their settings: what --scenario takes, which LoadGen scenario each is,
the settings it takes, which of LoadGen's figures is its rate, and how its table and plot show it. argparse's
choices, the option checks, the summaries of LoadGen's logs, the served tables and the curves all read this table.

Usage:
    SCENARIOS["server"].loadgen            # "Server"
    ServeOptions("server", max_batch=64, find_peak=True)
    buckets(256, runner.serves)            # the padded batch sizes a serving job prepares
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from utils.core.errors import ArtTRTError


@dataclass(frozen=True)
class Scenario:
    """One serving scenario."""

    name: str                   # --scenario's word
    loadgen: str                # LoadGen's TestScenario member
    title: str                  # how tables and plots name it
    settings: Tuple[str, ...]   # the ServeOptions fields only this scenario takes (argparse dests)
    rate_key: str               # LoadGen's detail-log key of its samples/s ("" where computed: MultiStream)
    per_query: bool             # its latency is a query's (MultiStream), not a sample's
    table: str                  # "served": Offline and Server paired per runner; "stream": a row per run
    pairs_as: str = ""          # in a "served" row: "capacity" (samples/s, all at once) or "rate" (QPS within a bound)


SERVER_SETTINGS = ("target_qps", "latency_bound_ms", "percentile", "find_peak")
SCENARIOS: Dict[str, Scenario] = {s.name: s for s in (
    Scenario("offline", "Offline", "Offline", (), "result_samples_per_second", False, "served", "capacity"),
    Scenario("server", "Server", "Server", SERVER_SETTINGS, "result_completed_samples_per_sec", False, "served", "rate"),
    Scenario("singlestream", "SingleStream", "SingleStream", (), "result_qps_with_loadgen_overhead", False, "stream"),
    Scenario("multistream", "MultiStream", "MultiStream", (), "", True, "stream"),
)}


def paired(role: str) -> str:
    """The scenario that plays `role` ("capacity" or "rate") in a served table's pair."""
    return next(n for n, s in SCENARIOS.items() if s.pairs_as == role)


def settings_of(scenarios: Sequence[str]) -> Tuple[str, ...]:
    """The scenario-only settings that some of `scenarios` take."""
    return tuple(dict.fromkeys(n for s in scenarios for n in SCENARIOS[s].settings))


def scenario_only_settings() -> Tuple[str, ...]:
    """Every setting that only some scenario takes (refused where no scenario asked takes it)."""
    return settings_of(list(SCENARIOS))


MLPERF_MIN_DURATION_S = 600  # MLPerf inference's minimum run for a submission (every scenario)


PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


REPORTED = tuple(float(p) for p in PERCENTILES)  # the latency percentiles LoadGen's log gives


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
    if o.latency_bound_ms * 1e6 > INT64_MAX or o.duration_s * 1e3 > INT64_MAX:
        name, value = (("--latency_bound_ms", o.latency_bound_ms) if o.latency_bound_ms * 1e6 > INT64_MAX
                       else ("--duration", o.duration_s))
        raise ArtTRTError(f"{name} {value:g} does not fit LoadGen's 64-bit count of "
                          f"{'nanoseconds' if name == '--latency_bound_ms' else 'milliseconds'}: give a smaller one")
    if o.target_qps is not None:
        check_schedule(o.target_qps, o.duration_s, "--target_qps")
    if o.max_queue_delay_us * 1e-3 >= o.latency_bound_ms and o.scenario == "server":
        raise ArtTRTError(f"--max_queue_delay_us {o.max_queue_delay_us} is not below --latency_bound_ms "
                          f"{o.latency_bound_ms:g}: every batch would wait out the whole latency budget")


INT64_MAX = 2 ** 63 - 1
LOADGEN_BYTES_PER_QUERY = 400  # LoadGen's schedule, held in memory from the start (measured: 378-584 B per query)


def memory_bytes() -> int:
    """This machine's physical memory (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_schedule(qps: float, duration_s: float, what: str) -> None:
    """A rate LoadGen can schedule for duration_s: at least one query (it runs until its first one comes: at 0.001
    QPS, about 1,000 s), and a schedule, which LoadGen builds in memory before the first query, within a quarter of
    this machine's memory (--target_qps 1e9 for 10 s would be 10^10 queries, some 4,000 GB)."""
    queries = qps * duration_s
    if queries < 1:
        raise ArtTRTError(f"{what} {qps:g} for --duration {duration_s:g} s schedules {queries:.3g} queries: LoadGen "
                          f"runs until its first one comes (about {1 / qps:,.0f} s away on average); give a rate and "
                          "duration whose product is at least 1")
    limit = memory_bytes() // 4 // LOADGEN_BYTES_PER_QUERY
    if limit and queries > limit:
        raise ArtTRTError(f"{what} {qps:g} for --duration {duration_s:g} s makes LoadGen schedule {queries:.3g} "
                          f"queries in memory (about {LOADGEN_BYTES_PER_QUERY} bytes each), more than a quarter of this "
                          f"machine's {memory_bytes() / 2 ** 30:.0f} GiB holds ({limit:,}): lower the rate or the "
                          "duration")


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


def batch_take(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    """How many of the queued samples the next batch takes: the largest of the prepared sizes that they fill (Triton's
    preferred_batch_size); all of them, up to max_batch, where no size is given or the queue is smaller than every
    size (that batch is then padded up). A queue of 31 makes batches of 16, 8, 4, 2 and 1 in turn. Measured apart on
    the H200 (benchmarks/serving_ablation.py, eager fp16 with CUDA graphs; docs/serving.md): this rule served 13,578
    and 13,751 QPS within the bound, padding every queue up 11,061, and padding only queues below 32 13,073."""
    n = min(queued, max_batch)
    filled = [b for b in sizes if b <= n]
    return max(filled) if filled else n
