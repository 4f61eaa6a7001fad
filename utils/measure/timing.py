"""The one validation-and-timing loop, written once against the Runner interface.

Per batch it measures:
  latency-model: the model alone (CUDA events on a GPU, a host clock on the CPU);
  latency-all:   copy-in (host uint8 -> device), normalisation, the model, copy-out (logits back to the host).
Two modes, as the original project reported both:
  --sync       synchronise after every batch; latency-all from the host clock; images/s = timed images over
               the sum of the timed batches' latency-all (what one request at a time sees);
  pipelined    (default) batches are queued back to back: copy-in on a copy stream (overlapping the previous
               batch's model), everything else on the run's compute stream, `pipeline_depth` batches in
               flight; latency-all = the batch's copy-in time plus its normalise..copy-out time, each timed
               with CUDA events on its stream (waiting for the previous batch is not counted); images/s =
               timed images over the wall-clock time of exactly the timed batches (what a saturated
               pipeline sees).
The feed: on a GPU the decoded cache is page-locked where it is (cuMemHostRegister, read-only), so each batch
goes to the device by DMA straight from it, with no host copy on the critical path; where that is refused,
each batch is copied into pinned memory. Only the top-5 classes come back to the host for accuracy.

The short last batch (when the images do not fill the last batch) runs after the timed region, for
accuracy only; runners with a fixed input shape (torch.compile, CUDA graphs, static TensorRT engines) get
it padded to the full batch and the padding's outputs dropped, so nothing recompiles or recaptures. Only
when the dataset is smaller than one batch is that batch timed (and the record says so).

Warm-up: the first batch repeated for at least `min_warmup_s`, then the first `warmup_fraction` of the
full batches (counted for accuracy, not timed).

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
from utils.core.phases import PhaseMarks
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
    pipeline_depth: int = 3      # batches in flight before the host waits for the oldest
    progress: bool = True
    verify: bool = True          # check every image read against the checksum written with the cache
    # Bounded timing (trtexec's --duration and --iterations: whichever is reached last): the full batches are
    # replayed in order, round and round, until at least `duration_s` of timed batches and `iterations` timed
    # batches; no accuracy (a study takes it from one whole pass). Both None: one whole pass, accuracy and timing.
    duration_s: Optional[float] = None
    iterations: Optional[int] = None

    @property
    def bounded(self) -> bool:
        return self.duration_s is not None or self.iterations is not None


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
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # top-1 per image, -1: none
    warmup_batches: int = 0
    warmup_s: float = 0.0
    sync: bool = False
    short_batch: Optional[Dict[str, Any]] = None  # images and how they were handled
    feed: str = "host"
    verified: Optional[int] = None  # images checked against the cache's checksums (None: nothing to check)
    bounded: bool = False           # timed by --duration/--iterations over replayed batches (no accuracy)
    nonfinite: int = 0              # images whose outputs hold a NaN or an Inf (their top-1 is none: wrong)
    unrankable: int = 0             # images whose outputs are all equal (underflow to zero, say): no class ranks

    def summary(self) -> Dict[str, Any]:
        """The flat figures of a record."""
        la, lm = latency_stats(self.latency_all_ms), latency_stats(self.latency_model_ms)
        out: Dict[str, Any] = {
            "images": self.images, "labelled_images": self.labelled,
            "top1": 100.0 * self.correct1 / self.labelled if self.labelled else None,
            "top5": 100.0 * self.correct5 / self.labelled if self.labelled else None,
            "timed_images": self.timed_images, "warmup_batches": self.warmup_batches,
            "warmup_s": round(self.warmup_s, 4), "mode": "sync" if self.sync else "pipelined",
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
        return out


class _Timer:
    """A CUDA event on a GPU runner, perf_counter on a CPU one."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.t: float = 0.0
        self.ev: Any = torch.cuda.Event(enable_timing=True) if cuda else None

    def record(self, stream: Any = None) -> "_Timer":
        if self.cuda:
            self.ev.record(stream)
        else:
            self.t = time.perf_counter()
        return self

    def ms_until(self, later: "_Timer") -> float:
        if self.cuda:
            return float(self.ev.elapsed_time(later.ev))
        return (later.t - self.t) * 1e3


def pad_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """x with its last image repeated up to `size` images (a fixed-shape runner's short batch)."""
    if x.shape[0] >= size:
        return x
    return torch.cat([x, x[-1:].expand(size - x.shape[0], *x.shape[1:])])


@dataclass
class _Batch:
    """One batch in flight: its timers, the host buffers its results land in, and what it is."""

    t: Tuple[_Timer, ...]
    top: torch.Tensor       # (n, k) top classes, on the host once t[-1] has completed
    flags: torch.Tensor     # (n, 2) bool: outputs not all finite, outputs all equal (on the host, as top)
    logits: torch.Tensor    # (n, classes) copy-out, on the host once t[-1] has completed
    labels: torch.Tensor
    idx: np.ndarray
    timed: bool


@torch.inference_mode()
def measure(runner: Runner, dataset: CachedDataset, opts: MeasureOptions,
            num_outputs: Optional[int] = None, telemetry: Any = None) -> MeasureResult:
    """Runs every image of `dataset` through `runner`: accuracy over all, latency over the timed batches.

    Args:
        num_outputs: the class count the dataset's labels index into (checked against the model).
        telemetry: an object with a `phase` attribute (utils/measure/telemetry.py), tagged as the loop goes.
    """
    marks = PhaseMarks()  # NVTX ranges and profiler labels: Nsight Systems shows the loop's phases
    try:
        return _measure(runner, dataset, opts, num_outputs, telemetry, marks)
    finally:
        marks.close()


def _measure(runner: Runner, dataset: CachedDataset, opts: MeasureOptions, num_outputs: Optional[int],
             telemetry: Any, marks: PhaseMarks) -> MeasureResult:
    bs = opts.batch_size
    if bs < 1:
        raise ArtTRTError(f"--batch_size must be at least 1, not {bs}")
    if not 0 <= opts.warmup_fraction < 1:
        raise ArtTRTError(f"--warmup is a fraction of the batches in [0, 1), not {opts.warmup_fraction}")
    n = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
    if n < 1:
        raise ArtTRTError("no images to measure (an empty dataset, or --limit below 1)")
    cuda = runner.device.type == "cuda"
    n_full, short = divmod(n, bs)
    bounded = opts.bounded
    if bounded and ((opts.duration_s or 0) < 0 or (opts.iterations is not None and opts.iterations < 1)):
        raise ArtTRTError(f"--duration must not be negative and --iterations must be at least 1 (got "
                          f"{opts.duration_s}, {opts.iterations})")
    n_warm = 0 if bounded else int(opts.warmup_fraction * n_full)  # bounded: warm-up by time only (trtexec)
    fixed = runner.fixed_shape
    res = MeasureResult(warmup_batches=n_warm, sync=opts.sync, predictions=np.full(n, -1, np.int64),
                        bounded=bounded)
    if short:
        how = ("padded to the full batch, " if fixed else "") + \
            ("timed: the only batch" if n_full == 0 else
             "left out: bounded timing replays the full batches" if bounded else
             "run after the timed batches, for accuracy only")
        res.short_batch = {"images": short, "handling": how}
    labelled = num_outputs if bool((dataset.labels[:n] >= 0).any()) else None
    registered = cuda and dataset.pin_in_place()
    res.feed = "page-locked cache (cuMemHostRegister)" if registered else "pinned copy per batch" if cuda else "host"
    device = runner.device
    stream = torch.cuda.current_stream(device) if cuda else None
    copy_stream = torch.cuda.Stream(device) if cuda else None
    # Every image read is checked against the checksum written with the cache: on a GPU by a kernel on a
    # stream of its own beside the model and the next copy (the count comes back once, at the end), on the
    # CPU per batch.
    expected = dataset.checksums if opts.verify else None
    if expected is not None:
        res.verified = 0
        if cuda:
            from utils.data.checksum import checksums_torch, weights_torch

            exp_dev = torch.from_numpy(expected[:n]).to(device)
            w_dev = weights_torch(int(np.prod(dataset.images.shape[1:])), device)
            bad_dev = torch.zeros((), dtype=torch.int64, device=device)
            verify_stream = torch.cuda.Stream(device)
    bad_host = 0

    def set_phase(name: str) -> None:
        if telemetry is not None:
            telemetry.phase = name
        if name == "done":
            marks.close()
        else:
            marks.enter(name)

    def batches(limit: int = n) -> Any:
        return dataset.batches(bs, limit=limit, pin=cuda and not registered, copy=not registered)

    def run_batch(images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray, timed: bool,
                  verify: bool = True) -> _Batch:
        """Copy-in, normalise, model, top-k, copy-out, with timers between the stages."""
        nonlocal bad_host
        t = tuple(_Timer(cuda) for _ in range(6))
        if cuda:
            with torch.cuda.stream(copy_stream):
                t[0].record(copy_stream)
                x_dev = images.to(device, non_blocking=True)
                t[1].record(copy_stream)
            if expected is not None and verify:
                verify_stream.wait_event(t[1].ev)
                with torch.cuda.stream(verify_stream):
                    bad_dev.add_((checksums_torch(x_dev, w_dev) != exp_dev[idx[0]:idx[-1] + 1]).sum())
                x_dev.record_stream(verify_stream)
            stream.wait_event(t[1].ev)
            x_dev.record_stream(stream)
        else:
            t[0].record()
            x_dev = images
            t[1].record()
            if expected is not None and verify:
                bad_host += dataset.verify(idx, images)
        t[2].record(stream)
        x = runner.normalizer(x_dev)
        real = x.shape[0]
        if fixed and real < bs:
            x = pad_batch(x, bs)
        t[3].record(stream)
        y = runner.infer(x)
        t[4].record(stream)
        if y.dim() != 2:
            raise ArtTRTError(f"the model returned shape {tuple(y.shape)}, not (batch, classes)")
        if num_outputs is not None and labelled is not None and y.shape[1] != num_outputs:
            raise ArtTRTError(f"the model has {y.shape[1]} outputs but the dataset's class map has {num_outputs}")
        y = y[:real]
        top = y.topk(min(5, y.shape[1]), dim=1).indices
        host_top = torch.empty(top.shape, dtype=top.dtype, pin_memory=cuda)
        host_top.copy_(top, non_blocking=cuda)
        flags = output_flags(y)  # on the device beside the model: a few reductions, n x 2 booleans back
        host_flags = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=cuda)
        host_flags.copy_(flags, non_blocking=cuda)
        host_logits = torch.empty(y.shape, dtype=torch.float32, pin_memory=cuda)
        host_logits.copy_(y.float(), non_blocking=cuda)
        t[5].record(stream)
        return _Batch(t, host_top, host_flags, host_logits, labels, idx, timed)

    def finish(item: _Batch, all_ms: Optional[float] = None) -> None:
        """Accounts a batch once its copy-out is done; all_ms replaces the events' latency-all (sync mode)."""
        t = item.t
        if cuda:
            t[5].ev.synchronize()
        if item.timed:
            res.latency_all_ms.append(all_ms if all_ms is not None else t[0].ms_until(t[1]) + t[2].ms_until(t[5]))
            res.latency_model_ms.append(t[3].ms_until(t[4]))
        if not bounded:  # bounded timing sees images again and again: no accuracy from it
            _accumulate(res, item.top, item.labels, item.idx, item.flags)

    set_phase("warm-up")
    first = next(iter(batches()))
    t_start = time.perf_counter()
    while True:  # at least one run of the same path, then until min_warmup_s has passed
        item = run_batch(*first, timed=False, verify=False)  # checked when it runs for real
        if cuda:
            item.t[5].ev.synchronize()
        if time.perf_counter() - t_start >= opts.min_warmup_s:
            break
    res.warmup_s = time.perf_counter() - t_start

    pending: Deque[_Batch] = collections.deque()
    wall0: Optional[float] = None

    def drain() -> None:
        while pending:
            finish(pending.popleft())
        runner.synchronize()

    def run_timed(images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray) -> None:
        if opts.sync:
            h0 = time.perf_counter()
            item = run_batch(images, labels, idx, True)
            runner.synchronize()
            finish(item, all_ms=(time.perf_counter() - h0) * 1e3)
        else:
            pending.append(run_batch(images, labels, idx, True))
            while len(pending) > opts.pipeline_depth:
                finish(pending.popleft())
        res.timed_images += len(idx)

    if bounded:
        set_phase("measure")
        lap = n_full * bs if n_full else n  # the full batches (or the only, short, one), replayed in order
        count = reads = 0
        wall0 = time.perf_counter()
        while True:
            for images, labels, idx in batches(lap):
                run_timed(images, labels, idx)
                count, reads = count + 1, reads + len(idx)
                if count >= (opts.iterations or 1) and time.perf_counter() - wall0 >= (opts.duration_s or 0.0):
                    break
            else:
                continue
            break
        drain()
        res.wall_s = time.perf_counter() - wall0
        checked = min(reads, lap)
    else:
        bar = progress_bar(total=math.ceil(n / bs), desc=runner.name, enabled=opts.progress)
        for b, (images, labels, idx) in enumerate(batches()):
            is_short = len(idx) < bs
            timed = (b >= n_warm and not is_short) or n_full == 0
            if timed and wall0 is None:
                set_phase("measure")
                drain()
                wall0 = time.perf_counter()
            if is_short and not timed:  # close the timed region first: this batch is for accuracy only
                drain()
                if wall0 is not None:
                    res.wall_s = time.perf_counter() - wall0
                    wall0 = None
                set_phase("short batch")
            if timed:
                run_timed(images, labels, idx)
            else:
                item = run_batch(images, labels, idx, False)
                runner.synchronize()
                finish(item)
            bar.update(1)
        drain()
        if wall0 is not None:
            res.wall_s = time.perf_counter() - wall0
        bar.close()
        checked = n
    if expected is not None and cuda:
        verify_stream.synchronize()
    if expected is not None:
        bad = bad_host + (int(bad_dev.item()) if cuda else 0)
        if bad:
            dataset.invalidate(f"changed under this run ({bad} of {n} images differ from what was written)")
            raise ArtTRTError(f"{bad} of {n} images read from the dataset cache differ from what was written (the "
                              "cache file was damaged or changed): no figure of this run was kept; run again to "
                              "rebuild the cache")
        res.verified = checked
    set_phase("done")
    return res


def output_flags(y: torch.Tensor) -> torch.Tensor:
    """(n, 2) booleans per image: its outputs are not all finite (NaN, Inf); its outputs are all equal (nothing
    ranks: an fp16 underflow to zero, say). The top classes of such an image are no prediction."""
    yf = y.float()
    return torch.stack([~torch.isfinite(yf).all(dim=1), yf.amax(dim=1) == yf.amin(dim=1)], dim=1)


def _accumulate(res: MeasureResult, top: torch.Tensor, labels: torch.Tensor, idx: np.ndarray,
                flags: Optional[torch.Tensor] = None) -> None:
    """Top-1 and top-5 hits of one batch from its top classes (on the host); an image whose outputs are not numbers
    or do not rank has no prediction (-1) and counts as wrong, never as the class argmax picked among NaNs."""
    res.images += top.shape[0]
    if flags is not None:
        nonfinite, flat = flags[:, 0], flags[:, 1] & ~flags[:, 0]
        res.nonfinite += int(nonfinite.sum())
        res.unrankable += int(flat.sum())
        top = torch.where((nonfinite | flat).view(-1, 1), torch.full_like(top, -1), top)
    res.predictions[idx] = top[:, 0].numpy()
    mask = labels >= 0
    if bool(mask.any()):
        lab = labels[mask].view(-1, 1)
        tk = top[mask]
        res.labelled += int(mask.sum())
        res.correct1 += int((tk[:, :1] == lab).any(dim=1).sum())
        res.correct5 += int((tk == lab).any(dim=1).sum())
