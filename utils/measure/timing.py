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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

import numpy as np

from utils.backends.base import Runner
from utils.core.deps import inference_mode
from utils.core.errors import ArtTRTError
from utils.core.phases import PhaseMarks
from utils.core.predictions import output_flags, top_classes
from utils.core.progress import progress_bar
from utils.data.cache import CachedDataset
from utils.data.hostmem import feed_choice
from utils.data.checksum import checksums_torch, weights_torch
from utils.measure.energy import EnergyMeter
from utils.measure.measurement import MeasureOptions, MeasureResult, Timer, pad_batch

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


@dataclass
class _Batch:
    """One batch in flight: its timers, the host buffers its results land in, and what it is."""

    t: Tuple[Timer, ...]
    top: torch.Tensor       # (n, k) top classes, on the host once t[-1] has completed
    flags: torch.Tensor     # (n, 2) bool: outputs not all finite, outputs all equal (on the host, as top)
    logits: torch.Tensor    # (n, classes) copy-out, on the host once t[-1] has completed
    labels: torch.Tensor
    idx: np.ndarray
    timed: bool
    enqueue_ms: float = 0.0  # host time to issue the batch (copy, normalise, model, copy-out), trtexec's Enqueue Time


@inference_mode
def measure(runner: Runner, dataset: CachedDataset, opts: MeasureOptions,
            num_outputs: Optional[int] = None, telemetry: Any = None,
            energy: Optional[EnergyMeter] = None) -> MeasureResult:
    """Runs every image of `dataset` through `runner`: accuracy over all, latency over the timed batches.

    Args:
        num_outputs: the class count the dataset's labels index into (checked against the model).
        telemetry: an object with a `phase` attribute (utils/measure/telemetry.py), tagged as the loop goes.
        energy: the meter read around the timed window (default: the runner's GPU's NVML counter; none on the CPU).
    """
    marks = PhaseMarks()  # NVTX ranges and profiler labels: Nsight Systems shows the loop's phases
    own = energy is None
    try:
        if energy is None:
            energy = EnergyMeter.for_device(runner.device)
        return _measure(runner, dataset, opts, num_outputs, telemetry, marks, energy)
    finally:
        marks.close()
        if own and energy is not None:
            energy.close()  # a Jetson's power sampler stops with the run


def _measure(runner: Runner, dataset: CachedDataset, opts: MeasureOptions, num_outputs: Optional[int],
             telemetry: Any, marks: PhaseMarks, energy: Optional[EnergyMeter] = None) -> MeasureResult:
    """The loop's steps in order: warm-up, then bounded timing or the whole pass (its short batch last), then the
    images read checked against the cache's checksums."""
    loop = _Loop(runner, dataset, opts, num_outputs, telemetry, marks, energy)
    loop.warm_up()
    checked = loop.bounded_timing() if loop.bounded else loop.whole_pass()
    loop.check_reads(checked)
    loop.set_phase("done")
    return loop.res


class _Loop:
    """One measure() call: its options and plan, the record it fills, the device's streams, the checksum
    counters and the batches in flight. Each step of the loop is a method."""

    # the on-device checksum (a GPU run with checksums to verify): set by _verification, read by copy_in
    checksums_torch: Any
    exp_dev: torch.Tensor
    w_dev: torch.Tensor
    bad_dev: torch.Tensor
    verify_stream: Any

    def __init__(self, runner: Runner, dataset: CachedDataset, opts: MeasureOptions, num_outputs: Optional[int],
                 telemetry: Any, marks: PhaseMarks, energy: Optional[EnergyMeter] = None) -> None:
        self.runner, self.dataset, self.opts = runner, dataset, opts
        self.energy = energy
        self.energy_start: Optional[Tuple[int, float]] = None
        self.num_outputs, self.telemetry, self.marks = num_outputs, telemetry, marks
        self.bs = bs = opts.batch_size  # the options were checked when made (MeasureOptions.__post_init__)
        self.n = n = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
        if n < 1:
            raise ArtTRTError("no images to measure (an empty dataset, or --limit below 1)")
        self.cuda = runner.device.type == "cuda"
        self.n_full, self.short = divmod(n, bs)
        self.bounded = opts.bounded
        # bounded: warm-up by time only (trtexec)
        self.n_warm = 0 if self.bounded else int(opts.warmup_fraction * self.n_full)
        self.fixed = runner.fixed_shape
        self.res = self._result()
        self.labelled = num_outputs if bool((dataset.labels[:n] >= 0).any()) else None
        self._feed()
        self._verification()
        self.pending: Deque[_Batch] = collections.deque()  # pipelined batches in flight, oldest first

    def _result(self) -> MeasureResult:
        """The record, with how the short batch (if any) is handled."""
        res = MeasureResult(warmup_batches=self.n_warm, sync=self.opts.sync, predictions=np.full(self.n, -1, np.int64),
                            labels=np.full(self.n, -1, np.int64), bounded=self.bounded)
        if self.short:
            how = ("padded to the full batch, " if self.fixed else "") + \
                ("timed: the only batch" if self.n_full == 0 else
                 "left out: bounded timing replays the full batches" if self.bounded else
                 "run after the timed batches, for accuracy only")
            res.short_batch = {"images": self.short, "handling": how}
        return res

    def _feed(self) -> None:
        """How the images reach the model (on a GPU: the cache page-locked in place, else a pinned copy per
        batch), and the streams: the run's compute stream, a copy stream."""
        cuda = self.cuda
        integrated = cuda and bool(getattr(torch.cuda.get_device_properties(self.runner.device), "is_integrated",
                                           False))
        self.registered, self.pin, self.res.feed = feed_choice(cuda, integrated, self.dataset.pin_in_place)
        self.device = self.runner.device
        self.stream: Any = torch.cuda.current_stream(self.device) if cuda else None
        self.copy_stream: Any = torch.cuda.Stream(self.device) if cuda else None

    def _verification(self) -> None:
        """Every image read is checked against the checksum written with the cache: on a GPU by a kernel on a
        stream of its own beside the model and the next copy (the count comes back once, at the end), on the
        CPU per batch."""
        self.expected = self.dataset.checksums if self.opts.verify else None
        if self.expected is not None:
            self.res.verified = 0
            if self.cuda:
                device = self.device
                self.checksums_torch = checksums_torch
                self.exp_dev = torch.from_numpy(self.expected[:self.n]).to(device)
                self.w_dev = weights_torch(int(np.prod(self.dataset.images.shape[1:])), device)
                self.bad_dev = torch.zeros((), dtype=torch.int64, device=device)
                self.verify_stream = torch.cuda.Stream(device)
        self.bad_host = 0

    def set_phase(self, name: str) -> None:
        """Tags telemetry and opens the phase's NVTX range ("done" closes the last one)."""
        if self.telemetry is not None:
            self.telemetry.phase = name
        if name == "done":
            self.marks.close()
        else:
            self.marks.enter(name)

    def batches(self, limit: int) -> Any:
        """The first `limit` images in batches, fed as the feed says."""
        return self.dataset.batches(self.bs, limit=limit, pin=self.pin, copy=not self.registered)

    def copy_in(self, images: torch.Tensor, idx: np.ndarray, t: Tuple[Timer, ...], verify: bool) -> torch.Tensor:
        """The batch on the device, copied between t[0] and t[1]; its images checked against the cache's
        checksums (a GPU: on the verify stream once copied; the CPU: on the host) unless `verify` is false."""
        if self.cuda:
            copy_stream, stream = self.copy_stream, self.stream
            with torch.cuda.stream(copy_stream):
                t[0].record(copy_stream)
                x_dev = images.to(self.device, non_blocking=True)
                t[1].record(copy_stream)
            if self.expected is not None and verify:
                verify_stream = self.verify_stream
                verify_stream.wait_event(t[1].ev)
                with torch.cuda.stream(verify_stream):
                    expected = self.exp_dev[idx[0]:idx[-1] + 1]
                    self.bad_dev.add_((self.checksums_torch(x_dev, self.w_dev) != expected).sum())
                x_dev.record_stream(verify_stream)
            stream.wait_event(t[1].ev)
            x_dev.record_stream(stream)
        else:
            t[0].record()
            x_dev = images
            t[1].record()
            if self.expected is not None and verify:
                self.bad_host += self.dataset.verify(idx, images)
        return x_dev

    def run_batch(self, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray, timed: bool,
                  verify: bool = True) -> _Batch:
        """Copy-in, normalise, model, top-k, copy-out, with timers between the stages."""
        cuda, runner, stream, bs, num_outputs = self.cuda, self.runner, self.stream, self.bs, self.num_outputs
        h0 = time.perf_counter()
        t = tuple(Timer(cuda) for _ in range(6))
        x_dev = self.copy_in(images, idx, t, verify)
        t[2].record(stream)
        x = runner.normalizer(x_dev)
        real = x.shape[0]
        if self.fixed and real < bs:
            x = pad_batch(x, bs)
        t[3].record(stream)
        y = runner.infer(x)
        t[4].record(stream)
        if y.dim() != 2:
            raise ArtTRTError(f"the model returned shape {tuple(y.shape)}, not (batch, classes)")
        if num_outputs is not None and self.labelled is not None and y.shape[1] != num_outputs:
            raise ArtTRTError(f"the model has {y.shape[1]} outputs but the dataset's class map has {num_outputs}")
        y = y[:real]
        top = top_classes(y, 5)  # -1 where an image has no prediction (utils.core.predictions)
        host_top = torch.empty(top.shape, dtype=top.dtype, pin_memory=cuda)
        host_top.copy_(top, non_blocking=cuda)
        flags = output_flags(y)  # on the device beside the model: a few reductions, n x 2 booleans back
        host_flags = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=cuda)
        host_flags.copy_(flags, non_blocking=cuda)
        host_logits = torch.empty(y.shape, dtype=torch.float32, pin_memory=cuda)
        host_logits.copy_(y.float(), non_blocking=cuda)
        t[5].record(stream)
        return _Batch(t, host_top, host_flags, host_logits, labels, idx, timed, (time.perf_counter() - h0) * 1e3)

    def finish(self, item: _Batch, all_ms: Optional[float] = None) -> None:
        """Accounts a batch once its copy-out is done; all_ms replaces the events' latency-all (sync mode)."""
        t = item.t
        if self.cuda:
            t[5].ev.synchronize()
        res = self.res
        if item.timed:
            res.latency_all_ms.append(all_ms if all_ms is not None else t[0].ms_until(t[1]) + t[2].ms_until(t[5]))
            res.latency_model_ms.append(t[3].ms_until(t[4]))
            res.split_ms.append((t[0].ms_until(t[1]), t[2].ms_until(t[3]), t[4].ms_until(t[5]), item.enqueue_ms))
        if not self.bounded:  # bounded timing sees images again and again: no accuracy from it
            res.add_batch(item.top, item.labels, item.idx, item.flags)

    def warm_up(self) -> None:
        """The first batch, run at least once (the same path as a timed batch, unchecked: it is checked when it
        runs for real), then until min_warmup_s has passed."""
        self.set_phase("warm-up")
        images, labels, idx = next(iter(self.batches(self.n)))
        t_start = time.perf_counter()
        while True:
            item = self.run_batch(images, labels, idx, timed=False, verify=False)
            if self.cuda:
                item.t[5].ev.synchronize()
            if self.res.first_batch_ms is None:  # the first answer: what a user waits for after the load
                self.res.first_batch_ms = (time.perf_counter() - t_start) * 1e3
            if time.perf_counter() - t_start >= self.opts.min_warmup_s:
                break
        self.res.warmup_s = time.perf_counter() - t_start

    def drain(self) -> None:
        """Accounts every batch in flight, then waits for the runner."""
        pending = self.pending
        while pending:
            self.finish(pending.popleft())
        self.runner.synchronize()

    def run_timed(self, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray) -> None:
        """A timed batch: --sync waits for it (latency-all from the host clock); pipelined, it joins the batches
        in flight, and the oldest are accounted while more than `pipeline_depth` are."""
        if self.opts.sync:
            h0 = time.perf_counter()
            item = self.run_batch(images, labels, idx, True)
            self.runner.synchronize()
            self.finish(item, all_ms=(time.perf_counter() - h0) * 1e3)
        else:
            pending = self.pending
            pending.append(self.run_batch(images, labels, idx, True))
            while len(pending) > self.opts.pipeline_depth:
                self.finish(pending.popleft())
        self.res.timed_images += len(idx)

    def run_untimed(self, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray) -> None:
        """A batch for accuracy only (warm-up fraction, short batch), waited for and accounted at once."""
        item = self.run_batch(images, labels, idx, False)
        self.runner.synchronize()
        self.finish(item)

    def open_timed(self) -> float:
        """Starts the timed region (after the batches before it): the wall clock's start."""
        self.set_phase("measure")
        self.drain()
        return self.start_window()

    def start_window(self) -> float:
        """The timed window opens: the energy counter is read (where there is one), then the wall clock."""
        if self.energy is not None:
            self.energy_start = self.energy.read()
        return time.perf_counter()

    def close_timed(self, wall0: Optional[float]) -> None:
        """Accounts the batches in flight and, if the timed region was open (wall0), its wall time."""
        self.drain()
        if wall0 is not None:
            self.res.wall_s = time.perf_counter() - wall0
            if self.energy is not None and self.energy_start is not None:
                mj0, t0 = self.energy_start
                mj1, t1 = self.energy.read()
                self.res.energy = (float(mj1 - mj0), t1 - t0)
                self.res.energy_scope = self.energy.scope

    def bounded_timing(self) -> int:
        """--duration/--iterations: the full batches (or the only, short, one) replayed in order until both are
        reached, all timed, no accuracy. Returns how many distinct images were read (and checked)."""
        self.set_phase("measure")
        opts = self.opts
        lap = self.n_full * self.bs if self.n_full else self.n
        count = reads = 0
        wall0 = self.start_window()
        while True:
            for images, labels, idx in self.batches(lap):
                self.run_timed(images, labels, idx)
                count, reads = count + 1, reads + len(idx)
                if count >= (opts.iterations or 1) and time.perf_counter() - wall0 >= (opts.duration_s or 0.0):
                    break
            else:
                continue
            break
        self.close_timed(wall0)
        return min(reads, lap)

    def whole_pass(self) -> int:
        """Every image once: the warm-up fraction's batches for accuracy only, then the timed batches, then the
        short batch (if any; timed when it is the only batch). Returns the images read (all of them)."""
        bs = self.bs
        bar = progress_bar(total=math.ceil(self.n / bs), desc=self.runner.name, enabled=self.opts.progress)
        wall0: Optional[float] = None
        for b, (images, labels, idx) in enumerate(self.batches(self.n)):
            is_short = len(idx) < bs
            timed = (b >= self.n_warm and not is_short) or self.n_full == 0
            if timed:
                if wall0 is None:
                    wall0 = self.open_timed()
                self.run_timed(images, labels, idx)
            elif is_short:
                self.short_batch(images, labels, idx, wall0)
                wall0 = None
            else:
                self.run_untimed(images, labels, idx)
            bar.update(1)
        self.close_timed(wall0)
        bar.close()
        return self.n

    def short_batch(self, images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray,
                    wall0: Optional[float]) -> None:
        """The short last batch of a whole pass: the timed region is closed first, then it runs for accuracy
        only."""
        self.close_timed(wall0)
        self.set_phase("short batch")
        self.run_untimed(images, labels, idx)

    def check_reads(self, checked: int) -> None:
        """Refuses the run if any image read differed from its checksum; else records how many were checked."""
        if self.expected is None:
            return
        if self.cuda:
            self.verify_stream.synchronize()
        bad = self.bad_host + (int(self.bad_dev.item()) if self.cuda else 0)
        if bad:
            n = self.n
            self.dataset.invalidate(f"changed under this run ({bad} of {n} images differ from what was written)")
            raise ArtTRTError(f"{bad} of {n} images read from the dataset cache differ from what was written (the "
                              "cache file was damaged or changed): no figure of this run was kept; run again to "
                              "rebuild the cache")
        self.res.verified = checked
