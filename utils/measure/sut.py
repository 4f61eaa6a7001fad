"""The system under test LoadGen drives: the query sample library on the device (DeviceSamples), the dynamic batcher
(BatchingSUT: Triton's, with preferred batch sizes) and the runner's inference as the SUT calls it (runner_infer).

Usage:
    samples = DeviceSamples(dataset, count, runner.device)
    sut = BatchingSUT(runner_infer(runner, samples, sizes), max_batch=64, max_delay_s=0.0, sizes=sizes)
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from utils.core.deps import mlperf_loadgen
from utils.core.errors import ArtTRTError, first_line
from utils.core.predictions import top_classes
from utils.measure.scenarios import batch_take
from utils.measure.measurement import pad_batch

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch


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
        lg = mlperf_loadgen
        self.lg, self.infer, self.max_batch, self.max_delay_s = lg, infer, max_batch, max_delay_s
        self.sizes = sorted(b for b in (sizes or ()) if b <= max_batch)
        self.stream = stream
        self.cv = threading.Condition()
        self.pending: Deque[Tuple[np.ndarray, np.ndarray, float]] = collections.deque()
        self.queued = 0
        self.stopping = False
        self.draining = False  # a signal came: what is queued or comes is answered without inference
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
            while self.queued < self.max_batch and not self.stopping and not self.draining:
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
                    if self.draining:  # the run ends as soon as LoadGen's schedule does; its figures are dropped
                        self._complete(ids, np.full(len(ids), -1, dtype=np.int32), t0, t0)
                        continue
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

    def drain(self) -> None:
        """From now on, answer every query at once with no class (-1), without inference (a signal came: the run
        ends as soon as LoadGen's schedule lets it, and its figures are not kept)."""
        with self.cv:
            self.draining = True
            self.cv.notify_all()

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
    def infer(idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        size = next(b for b in sizes if b >= n)
        x = runner.normalizer(samples.gather(idx))
        if size > n:
            x = pad_batch(x, size)
        y = runner.infer(x)[:n]
        # NaN/Inf or flat outputs answer class -1: counted wrong (utils.core.predictions)
        return top_classes(y, 1)[:, 0].to(torch.int32).cpu().numpy()

    def warm() -> None:
        """The smallest and the largest padded size once, on the calling thread (the SUT's worker), from the dataset's
        first image: the thread's library handles and the largest workspace (every size was run, compiled and
        captured before, by estimate_rate: run again per LoadGen run, 13 sizes up to 256 took minutes on a CPU)."""
        first = torch.from_numpy(np.array(samples.dataset.images[:1])).to(samples.device)
        for size in sorted({sizes[0], sizes[-1]}):
            runner.infer(pad_batch(runner.normalizer(first), size)).float().sum().item()

    infer.warm = warm  # type: ignore[attr-defined]
    return infer
