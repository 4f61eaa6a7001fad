"""What a measurement is asked (MeasureOptions: batch size, warm-up, mode, bounds, each rule checked where it is
made) and what it gives back (MeasureResult: latencies, hits, the images without a prediction, and the flat figures
of a record); utils.measure.timing fills one from the other.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.core.errors import ArtTRTError
from utils.measure.energy import SCOPE, energy_fields
from utils.measure.stats import block_bootstrap, latency_stats, unstable

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


MAX_REPEATS = 100


@dataclass
class MeasureOptions:
    batch_size: int = 1
    warmup_fraction: float = 0.1
    min_warmup_s: float = 0.2
    sync: bool = False
    limit: Optional[int] = None  # number of images
    pipeline_depth: int = 3      # batches in flight before the host waits for the oldest
    progress: bool = True
    verify: bool = True          # check every image read against the checksum written with the cache
    # Bounded timing (trtexec's --duration and --iterations: whichever is reached last): the full batches are
    # replayed in order, round and round, until at least `duration_s` of timed batches and `iterations` timed
    # batches; no accuracy (a study takes it from one whole pass). Both None: one whole pass, accuracy and timing.
    duration_s: Optional[float] = None
    iterations: Optional[int] = None
    # --repeats: the timing run made this many times in a row, each with its own warm-up, on the same runner; the
    # figures' intervals then come from the spread across runs (Student-t, as AIPerf's --num-profile-runs)
    repeats: int = 1

    def __post_init__(self) -> None:
        """Each measurement rule checked here, the one place that owns it (a request makes one before any work)."""
        if self.batch_size < 1:
            raise ArtTRTError(f"--batch_size must be at least 1, not {self.batch_size}")
        if not 0 <= self.warmup_fraction < 1:
            raise ArtTRTError(f"--warmup is the fraction of batches used as warm-up, in [0, 1), not "
                              f"{self.warmup_fraction}")
        if self.min_warmup_s < 0:
            raise ArtTRTError(f"--min_warmup_s must not be negative, not {self.min_warmup_s}")
        if self.limit is not None and self.limit < 1:
            raise ArtTRTError(f"--limit must be at least 1, not {self.limit}")
        if self.duration_s is not None and self.duration_s < 0:
            raise ArtTRTError(f"--duration must not be negative, not {float(self.duration_s)}")
        if self.iterations is not None and self.iterations < 1:
            raise ArtTRTError(f"--iterations must be at least 1, not {self.iterations}")
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ArtTRTError(f"--repeats {self.repeats}: give 1 to {MAX_REPEATS} whole timed runs (2 or more give an "
                              "interval across runs)")

    def key_rules(self) -> Dict[str, Any]:
        """The measurement rules that change a timing job's figures (part of its key, utils/study/plan.py); 0 and 0.0
        are one rule (a key must not depend on how a number was typed); a single run's key as before --repeats."""
        def num(v: Any) -> Any:
            return None if v is None else float(v)

        return {"sync": bool(self.sync), "limit": self.limit, "duration_s": num(self.duration_s),
                "iterations": self.iterations, "min_warmup_s": num(self.min_warmup_s),
                "warmup_fraction": None if self.bounded else num(self.warmup_fraction),
                **({"repeats": self.repeats} if self.repeats > 1 else {})}

    @property
    def bounded(self) -> bool:
        return self.duration_s is not None or self.iterations is not None


@dataclass
class MeasureResult:
    latency_all_ms: List[float] = field(default_factory=list)
    latency_model_ms: List[float] = field(default_factory=list)
    split_ms: List[Tuple[float, float, float, float]] = field(default_factory=list)  # per timed batch: copy-in,
    # normalise, copy-out (top-k, flags and logits to the host), host enqueue; the model's is latency_model_ms
    timed_images: int = 0
    wall_s: float = 0.0
    correct1: int = 0
    correct5: int = 0
    labelled: int = 0
    images: int = 0
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # top-1 per image, -1: none
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # label per image, -1: unlabelled
    warmup_batches: int = 0
    warmup_s: float = 0.0
    first_batch_ms: Optional[float] = None  # the warm-up's first batch, copy-in to copy-out (the first answer)
    sync: bool = False
    short_batch: Optional[Dict[str, Any]] = None  # images and how they were handled
    feed: str = "host"
    verified: Optional[int] = None  # images checked against the cache's checksums (None: nothing to check)
    bounded: bool = False           # timed by --duration/--iterations over replayed batches (no accuracy)
    nonfinite: int = 0              # images whose outputs hold a NaN or an Inf (their top-1 is none: wrong)
    unrankable: int = 0             # images whose outputs are all equal (underflow to zero, say): no class ranks
    energy: Optional[Tuple[float, float]] = None  # the GPU's energy counter over the timed window: (mJ, s)
    energy_scope: str = SCOPE                      # what the counter covers (a Jetson: its power rails)

    def summary(self) -> Dict[str, Any]:
        """The flat figures of a record."""
        la, lm = latency_stats(self.latency_all_ms), latency_stats(self.latency_model_ms)
        out: Dict[str, Any] = {
            "images": self.images, "labelled_images": self.labelled,
            "top1": 100.0 * self.correct1 / self.labelled if self.labelled else None,
            "top5": 100.0 * self.correct5 / self.labelled if self.labelled else None,
            "timed_images": self.timed_images, "warmup_batches": self.warmup_batches,
            "warmup_s": round(self.warmup_s, 4), "mode": "sync" if self.sync else "pipelined",
            "first_batch_ms": None if self.first_batch_ms is None else round(self.first_batch_ms, 4),
            "short_batch": self.short_batch, "feed": self.feed, "verified_images": self.verified,
            "timing": "bounded" if self.bounded else "whole pass",
            "nonfinite_outputs": None if self.bounded else self.nonfinite,
            "unrankable_outputs": None if self.bounded else self.unrankable,
        }
        for prefix, s in (("latency_all", la), ("latency_model", lm)):
            for k, v in s.items():
                out[f"{prefix}_{k}" if k != "count" else f"{prefix}_batches"] = v
        if self.sync:
            total = math.fsum(self.latency_all_ms)
            out["images_per_s"] = self.timed_images / (total / 1e3) if total > 0 else None
        else:
            out["images_per_s"] = self.timed_images / self.wall_s if self.wall_s > 0 else None
        out["latency_unstable"] = unstable(la) or unstable(lm)
        out.update(time_split(self.split_ms, self.latency_model_ms, self.feed != "host"))
        out["speed_ci"] = speed_interval(self.latency_all_ms, self.latency_model_ms, out["images_per_s"])
        if self.energy is not None:
            out.update(energy_fields(*self.energy, self.timed_images, out["images_per_s"], self.energy_scope))
        return out

    def add_batch(self, top: "torch.Tensor", labels: "torch.Tensor", idx: np.ndarray,
                  flags: Optional["torch.Tensor"] = None) -> None:
        """Top-1 and top-5 hits of one batch from its top classes (utils.core.predictions.top_classes, on the host: an
        image whose outputs are not numbers or do not rank has no prediction, -1, and counts as wrong), and the counts of
        such images from its flags."""
        self.images += top.shape[0]
        if flags is not None:
            nonfinite, flat = flags[:, 0], flags[:, 1] & ~flags[:, 0]
            self.nonfinite += int(nonfinite.sum())
            self.unrankable += int(flat.sum())
        self.predictions[idx] = top[:, 0].numpy()
        if self.labels.shape == self.predictions.shape:  # (sized with the predictions, where they are kept)
            self.labels[idx] = labels.numpy()
        mask = labels >= 0
        if bool(mask.any()):
            lab = labels[mask].view(-1, 1)
            tk = top[mask]
            self.labelled += int(mask.sum())
            self.correct1 += int((tk[:, :1] == lab).any(dim=1).sum())
            self.correct5 += int((tk == lab).any(dim=1).sum())


ENQUEUE_BOUND = 0.8  # trtexec (sampleReporting.cpp): enqueue median > 0.8 x GPU compute median


def time_split(split_ms: Sequence[Tuple[float, float, float, float]], model_ms: Sequence[float], device: bool
               ) -> Dict[str, Any]:
    """Where a timed batch's time goes: the mean copy-in (H2D), normalise, model (compute) and copy-out (D2H) per
    batch, which sum to latency-all's mean (pipelined), and the host's enqueue time; on a GPU, trtexec's diagnosis
    from the medians: enqueue-bound where the enqueue is above 0.8 x the compute, H2D- or D2H-bound where that copy
    takes at least as long as the compute, else compute-bound. {} without timed batches."""
    if not split_ms or len(split_ms) != len(model_ms):
        return {}
    v = np.asarray(split_ms, dtype=np.float64)
    m = np.asarray(model_ms, dtype=np.float64)
    out: Dict[str, Any] = {"time_split": {
        "h2d_ms": round(float(v[:, 0].mean()), 6), "normalize_ms": round(float(v[:, 1].mean()), 6),
        "compute_ms": round(float(m.mean()), 6), "d2h_ms": round(float(v[:, 2].mean()), 6),
        "enqueue_ms": round(float(v[:, 3].mean()), 6)}}
    if device:  # copies and compute on separate clocks only where there is a device to copy to
        h2d, d2h, enq = (float(np.median(v[:, i])) for i in (0, 2, 3))
        compute = float(np.median(m))
        bound = ("enqueue-bound" if enq > ENQUEUE_BOUND * compute else "H2D-bound" if h2d >= compute
                 else "D2H-bound" if d2h >= compute else "compute-bound")
        out["bound"] = bound
    return out


def speed_interval(all_ms: List[float], model_ms: List[float], images_per_s: Optional[float]
                   ) -> Optional[Dict[str, Any]]:
    """95 % intervals of a timing row's figures from its own timed batches (stats.block_bootstrap): latency-model p50
    and p99, latency-all mean, and images/s as its point figure scaled by the mean batch time's interval (the
    relative uncertainty of the mean batch time is that of the rate). None with fewer than 10 timed batches."""
    whole, model = block_bootstrap(all_ms), block_bootstrap(model_ms)
    if not whole or not model or not images_per_s:
        return None
    mean = float(np.mean(all_ms))
    low, high = whole["mean"]
    return {"method": "moving-block bootstrap", "batches": whole["batches"], "block": whole["block"],
            "resamples": whole["resamples"], "latency_all_mean": [round(low, 6), round(high, 6)],
            "latency_model_p50": [round(x, 6) for x in model["p50"]],
            "latency_model_p99": [round(x, 6) for x in model["p99"]],
            "images_per_s": [round(images_per_s * mean / high, 4), round(images_per_s * mean / low, 4)]
            if low > 0 else None}


ACROSS_RUNS = ("images_per_s", "latency_model_p50", "latency_model_p99", "latency_all_mean")


def across_runs(summaries: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The figures of N whole timed runs of one setup (each run's MeasureResult.summary, in order): for images/s,
    latency-model p50 and p99 and latency-all mean, the mean over the runs with its 95 % Student-t interval
    (mean +- t(0.975, N-1) s / sqrt(N), as AIPerf's multi-run confidence reporting), and each run's figures; the
    other latency figures combined so they keep a run's order (percentiles, std and CV the mean over runs, min the
    least, max the most, batches the sum). The fields a record takes over its first run's; {} for fewer than 2 runs."""
    if len(summaries) < 2:
        return {}
    from scipy.stats import t as student_t  # here, not at the top: SciPy's stats take 0.5 s to import (main.py --help)

    n = len(summaries)
    t = float(student_t.ppf(0.975, n - 1))
    out: Dict[str, Any] = {"repeats": [{k: s.get(k) for k in ACROSS_RUNS} for s in summaries]}
    ci: Dict[str, Any] = {"method": f"Student-t over {n} runs", "runs": n}
    for key in ACROSS_RUNS:
        values = np.asarray([s.get(key) for s in summaries], dtype=np.float64)
        if not np.all(np.isfinite(values)):  # a run without the figure: no mean, no interval
            out[key] = None
            ci[key] = None
            continue
        mean, half = float(values.mean()), t * float(values.std(ddof=1)) / math.sqrt(n)
        out[key] = mean
        ci[key] = [round(max(mean - half, 0.0), 6), round(mean + half, 6)]
    rates = [s.get("images_per_s") for s in summaries]
    if all(isinstance(v, (int, float)) and v > 0 for v in rates):  # perf_analyzer's stability: max / min of the runs
        ci["spread_percent"] = round(100.0 * (max(rates) / min(rates) - 1.0), 2)
    out["speed_ci"] = ci
    out["timed_images"] = int(sum(int(s.get("timed_images") or 0) for s in summaries))
    for prefix in ("latency_all", "latency_model"):  # the rest of the latency figures, in the same order as a run's
        for stat, combine in (("p90", np.mean), ("std", np.mean), ("cv_percent", np.mean), ("min", np.min),
                              ("max", np.max), ("batches", np.sum)):
            key = f"{prefix}_{stat}"
            values = [s.get(key) for s in summaries]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                got = combine(np.asarray(values, dtype=np.float64))
                out[key] = int(got) if stat == "batches" else float(got)
        for stat in ("p50", "p99", "mean"):
            key = f"{prefix}_{stat}"
            if key not in out:  # (latency_all p50/p99, latency_model mean: the mean over runs, without an interval)
                values = [s.get(key) for s in summaries]
                if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    out[key] = float(np.mean(values))
    out["latency_unstable"] = any(bool(s.get("latency_unstable")) for s in summaries)
    return out


def pad_batch(x: "torch.Tensor", size: int) -> "torch.Tensor":
    """x with its last image repeated up to `size` images (a fixed-shape runner's short batch)."""
    if x.shape[0] >= size:
        return x
    return torch.cat([x, x[-1:].expand(size - x.shape[0], *x.shape[1:])])


class Timer:
    """A CUDA event on a GPU runner, perf_counter on a CPU one."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.t: float = 0.0
        self.ev: Any = torch.cuda.Event(enable_timing=True) if cuda else None

    def record(self, stream: Any = None) -> "Timer":
        if self.cuda:
            self.ev.record(stream)
        else:
            self.t = time.perf_counter()
        return self

    def ms_until(self, later: "Timer") -> float:
        if self.cuda:
            return float(self.ev.elapsed_time(later.ev))
        return (later.t - self.t) * 1e3
