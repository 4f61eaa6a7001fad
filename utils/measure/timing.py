"""The one validation-and-timing loop, written once against the Runner interface.

Per batch it measures:
  latency-model: the model alone (CUDA events on a GPU, a host clock on the CPU);
  latency-all:   copy-in (host uint8 -> device, normalised), run, copy-out (logits back to the host).
Two modes, as the original project reported both:
  --sync       synchronise after every batch; latency-all from the host clock; images/s = images over
               the sum of latency-all (what one request at a time sees);
  pipelined    (default) batches are queued back to back with pinned, non-blocking copies; latency-all
               from CUDA events around copy-in..copy-out; images/s = images over the wall-clock time of
               the timed phase (what a saturated pipeline sees).
On the CPU both modes are the same. Warm-up: the first 10 % of the batches (counted for accuracy,
excluded from latency), after repeating the first batch for at least `min_warmup_s`.

Usage:
    result = measure(runner, dataset, MeasureOptions(batch_size=32))
"""
from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch

from utils.backends.base import Runner
from utils.core.errors import ArtTRTError
from utils.core.progress import progress_bar
from utils.data.cache import CachedDataset
from utils.measure.stats import latency_stats, unstable


@dataclass
class MeasureOptions:
    batch_size: int = 1
    warmup_fraction: float = 0.1
    min_warmup_s: float = 0.2
    sync: bool = False
    limit: Optional[int] = None  # number of images
    pipeline_depth: int = 2
    progress: bool = True


@dataclass
class MeasureResult:
    latency_all_ms: List[float] = field(default_factory=list)
    latency_model_ms: List[float] = field(default_factory=list)
    timed_images: int = 0
    wall_s: float = 0.0
    correct1: int = 0
    correct5: int = 0
    labelled: int = 0
    images: int = 0
    predictions: Dict[int, int] = field(default_factory=dict)  # dataset index -> top-1 class
    warmup_batches: int = 0
    warmup_s: float = 0.0
    sync: bool = False

    def summary(self) -> Dict[str, Any]:
        """The flat figures of a record."""
        la, lm = latency_stats(self.latency_all_ms), latency_stats(self.latency_model_ms)
        out: Dict[str, Any] = {
            "images": self.images, "labelled_images": self.labelled,
            "top1": 100.0 * self.correct1 / self.labelled if self.labelled else None,
            "top5": 100.0 * self.correct5 / self.labelled if self.labelled else None,
            "timed_images": self.timed_images, "warmup_batches": self.warmup_batches,
            "warmup_s": round(self.warmup_s, 4), "mode": "sync" if self.sync else "pipelined",
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
        return out


class _Timer:
    """CUDA events on a GPU runner, perf_counter on a CPU one."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.t: float = 0.0
        self.ev: Any = torch.cuda.Event(enable_timing=True) if cuda else None

    def record(self) -> "_Timer":
        if self.cuda:
            self.ev.record()
        else:
            self.t = time.perf_counter()
        return self

    def ms_until(self, later: "_Timer") -> float:
        if self.cuda:
            return float(self.ev.elapsed_time(later.ev))
        return (later.t - self.t) * 1e3


def _accumulate(res: MeasureResult, logits: torch.Tensor, labels: torch.Tensor, idx: np.ndarray,
                num_outputs: Optional[int]) -> None:
    if logits.dim() != 2:
        raise ArtTRTError(f"the model returned shape {tuple(logits.shape)}, not (batch, classes)")
    if num_outputs is not None and logits.shape[1] != num_outputs:
        raise ArtTRTError(f"the model has {logits.shape[1]} outputs but the dataset's class map has {num_outputs}")
    res.images += logits.shape[0]
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    for i, t in zip(idx.tolist(), top[:, 0].tolist()):
        res.predictions[i] = t
    mask = labels >= 0
    if mask.any():
        lab = labels[mask].view(-1, 1)
        tk = top[mask]
        res.labelled += int(mask.sum())
        res.correct1 += int((tk[:, :1] == lab).any(dim=1).sum())
        res.correct5 += int((tk == lab).any(dim=1).sum())


@torch.inference_mode()
def measure(runner: Runner, dataset: CachedDataset, opts: MeasureOptions,
            num_outputs: Optional[int] = None, telemetry: Any = None) -> MeasureResult:
    """Runs every image of `dataset` through `runner`: accuracy over all, latency after the warm-up.

    Args:
        num_outputs: the class count the dataset's labels index into (checked against the model).
        telemetry: an object with a `phase` attribute (utils/measure/telemetry.py), tagged as the loop goes.
    """
    if opts.batch_size < 1:
        raise ArtTRTError("--batch_size must be at least 1")
    cuda = runner.device.type == "cuda"
    n = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
    n_batches = math.ceil(n / opts.batch_size)
    n_warm = int(opts.warmup_fraction * n_batches)
    res = MeasureResult(warmup_batches=n_warm, sync=opts.sync or not cuda)
    labelled = num_outputs if bool((dataset.labels[:n] >= 0).any()) else None

    def set_phase(name: str) -> None:
        if telemetry is not None:
            telemetry.phase = name

    set_phase("warm-up")
    first = next(dataset.batches(opts.batch_size, limit=n, pin=cuda))[0]
    t_start = time.perf_counter()
    while True:  # at least one run, then until min_warmup_s has passed
        runner.infer(runner.normalizer(first)).float().cpu()
        if time.perf_counter() - t_start >= opts.min_warmup_s:
            break
    res.warmup_s = time.perf_counter() - t_start

    bar = progress_bar(total=n_batches, desc=runner.name, enabled=opts.progress)
    Batch = Tuple[_Timer, _Timer, _Timer, _Timer, torch.Tensor, torch.Tensor, np.ndarray, bool]
    pending: Deque[Batch] = collections.deque()

    def run_batch(images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray, timed: bool) -> Batch:
        """Copy-in, model, copy-out, with a timer between each (one code path for both modes)."""
        e0 = _Timer(cuda).record()
        x = runner.normalizer(images)
        e1 = _Timer(cuda).record()
        y = runner.infer(x)
        e2 = _Timer(cuda).record()
        host = torch.empty(y.shape, dtype=torch.float32, pin_memory=cuda)
        host.copy_(y.float(), non_blocking=cuda)
        e3 = _Timer(cuda).record()
        return e0, e1, e2, e3, host, labels, idx, timed

    def finish(item: Batch, all_ms: Optional[float] = None) -> None:
        """Accounts a batch once its copy-out is done; all_ms replaces the events' latency-all (sync mode)."""
        e0, e1, e2, e3, out, labels, idx, timed = item
        if cuda:
            e3.ev.synchronize()
        if timed:
            res.latency_all_ms.append(e0.ms_until(e3) if all_ms is None else all_ms)
            res.latency_model_ms.append(e1.ms_until(e2))
        _accumulate(res, out, labels, idx, labelled)

    wall0: Optional[float] = None
    full_timed = 0  # timed batches of the full batch size (all but possibly the last)
    for b, (images, labels, idx) in enumerate(dataset.batches(opts.batch_size, limit=n, pin=cuda)):
        timed = b >= n_warm
        if timed and wall0 is None:
            set_phase("measure")
            while pending:
                finish(pending.popleft())
            runner.synchronize()
            wall0 = time.perf_counter()
        if res.sync:  # latency-all from the host clock around the whole batch, the device drained after it
            h0 = time.perf_counter()
            item = run_batch(images, labels, idx, timed)
            runner.synchronize()
            finish(item, all_ms=(time.perf_counter() - h0) * 1e3)
        else:
            pending.append(run_batch(images, labels, idx, timed))
            while len(pending) > opts.pipeline_depth:
                finish(pending.popleft())
        if timed:
            res.timed_images += len(idx)
            full_timed += len(idx) == opts.batch_size
        bar.update(1)
    while pending:
        finish(pending.popleft())
    runner.synchronize()
    res.wall_s = time.perf_counter() - wall0 if wall0 is not None else 0.0
    bar.close()
    # Latency statistics are per full batch; a smaller last batch only counts when it is all there is.
    if 0 < full_timed < len(res.latency_all_ms):
        res.latency_all_ms, res.latency_model_ms = res.latency_all_ms[:full_timed], res.latency_model_ms[:full_timed]
    set_phase("done")
    return res
