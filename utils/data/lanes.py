"""The first pass: decoding a dataset into the cache file in lanes (processes) that take chunks of files
from one shared counter.

A CPU lane decodes with PIL and applies transform_uint8, one file at a time. A GPU lane reads a batch of
files (the next batch is read on a thread while this one decodes), decodes it on the GPU, applies the
transform to the whole batch as two matrix products (utils.data.resample) and copies the crops back through
pinned memory; files the GPU decoder refuses (CMYK, some progressive JPEGs) go through PIL in that lane.
Every lane writes its crops straight into row i of the cache file (pwrite): no pixels cross a pipe,
only (index, how, why) reports. Faster lanes simply take more chunks.

Usage:
    ok = decode_all(index, pp, tmp_path, (n, 3, 224, 224), workers=16, gpu_lanes=2, stats=DecodeStats(),
                    progress=True)
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import importlib
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple


from utils.core.errors import ArtTRTError, first_line
from utils.core.progress import progress_bar
from utils.data.checksum import checksums_numpy, checksums_torch, weights_torch
from utils.data.decode import decode_pil, gpu_decodable, gpu_decoder_fails, gpu_jpeg_decoder
from utils.data.preprocess import Preprocess, transform_uint8
from utils.data.resample import transform_padded
from utils.data.scan import DatasetIndex

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch


@dataclass
class DecodeStats:
    cpu: int = 0
    gpu: int = 0
    gpu_refused: int = 0  # sent to the CPU: CMYK, non-JPEG, or the GPU decoder refused it
    gpu_library: Optional[str] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    checksums: List[int] = field(default_factory=list)  # of the decoded images, in file order


CHUNK = 64          # files per claim; a GPU lane claims GPU_CLAIM chunks at once
GPU_CLAIM = 4
_CPU, _GPU, _REFUSED, _SKIPPED = 0, 1, 2, 3  # how a file was decoded (refused: by the GPU, then PIL did it)


@dataclass
class _Job:
    paths: List[str]
    out_path: str
    shape: Tuple[int, ...]
    pp: Dict[str, Any]
    gpu_decoder: str
    cpu_threads: int = 0  # nvImageCodec host threads per GPU lane (0: its default)


def _claim(counter: Any, n: int, total: int) -> range:
    with counter.get_lock():
        start = counter.value
        counter.value = start + n
    return range(min(start, total), min(start + n, total))


UNREADABLE = "unreadable: "  # a skip for a file that could not be read (not one that does not decode)


def _pil_one(path: str, data: Optional[bytes], pp: Preprocess) -> Tuple[Optional[np.ndarray], str]:
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as err:  # permission denied, I/O error: a state that may pass, never cached as final
            return None, f"{UNREADABLE}{err.strerror or type(err).__name__}"
    try:
        return transform_uint8(decode_pil(data), pp).numpy(), ""
    except Exception as err:  # PIL raises many types for a broken file
        return None, f"{type(err).__name__}: {first_line(err)}"


def _checksum(img: Optional[np.ndarray]) -> Optional[int]:
    return None if img is None else int(checksums_numpy(img[None])[0])


def _read(paths: List[str]) -> List[bytes]:
    """The files' bytes; b"" for one that cannot be read (PIL's path then says why)."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                out.append(f.read())
        except OSError:
            out.append(b"")
    return out


def _run_lane(kind: str, job: _Job, counter: Any, report: Callable[[Any], None]) -> None:
    """One lane's loop; report() gets a list of (file index, how, why) per chunk, then (library,) once."""
    torch.set_num_threads(1)  # lanes are the parallelism; torch's own threads would oversubscribe the cores
    pp = Preprocess(**job.pp)
    with _RowWriter(job.out_path, int(np.prod(job.shape[1:]))) as out:
        _lane_loop(kind, job, counter, report, pp, out)


class _RowWriter:
    """Writes images into rows of the cache file with pwrite: page faults on a shared mapping serialise
    lanes in the file system (measured on an H200 host: ~2,300 images/s whatever the lane count)."""

    def __init__(self, path: str, row_bytes: int):
        self.path, self.row = path, row_bytes

    def __enter__(self) -> "_RowWriter":
        self.fd = os.open(self.path, os.O_WRONLY)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # no fsync: the pages reach the disk in the background (see open_dataset)

    def __setitem__(self, first: int, rows: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(rows)).cast("B")
        offset, done = first * self.row, 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], offset + done)


def _lane_loop(kind: str, job: _Job, counter: Any, report: Callable[[Any], None], pp: Preprocess,
               out: _RowWriter) -> None:
    total_chunks = (len(job.paths) + CHUNK - 1) // CHUNK

    def files(chunks: range) -> range:
        return range(chunks.start * CHUNK, min(chunks.stop * CHUNK, len(job.paths)))

    if kind == "cpu":
        while True:
            chunks = _claim(counter, 1, total_chunks)
            if not chunks:
                break
            done = []
            for i in files(chunks):
                img, why = _pil_one(job.paths[i], None, pp)
                if img is not None:
                    out[i] = img
                done.append((i, _CPU if img is not None else _SKIPPED, why, _checksum(img)))
            report(done)
        return

    library, decode, hwc = gpu_jpeg_decoder(job.gpu_decoder, job.cpu_threads)
    why = gpu_decoder_fails(decode)
    if why:  # no GPU decoding here: this lane decodes on the CPU, and the stats say why once
        report((f"none ({library} cannot decode on this GPU: {why}): decoded on the CPU",))
        _lane_loop("cpu", job, counter, report, pp, out)
        return
    report((library,))
    with cf.ThreadPoolExecutor(1) as reader:
        def claim() -> Tuple[range, "cf.Future[List[bytes]]"]:
            idx = files(_claim(counter, GPU_CLAIM, total_chunks))
            return idx, reader.submit(_read, [job.paths[i] for i in idx])

        idx, pending = claim()
        while len(idx):
            datas = pending.result()
            nxt, pending = claim()  # read the next batch while this one decodes
            ok = [k for k, d in enumerate(datas) if gpu_decodable(d)]
            decoded = decode([datas[k] for k in ok]) if ok else []
            good = [(k, im) for k, im in zip(ok, decoded) if im is not None]
            done = []
            if good:
                crops = transform_padded([im for _, im in good], pp, hwc=hwc)
                host = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=crops.is_cuda)
                host.copy_(crops)
                arr = host.numpy()
                sums = checksums_torch(crops, weights_torch(int(crops[0].numel()), crops.device)).cpu().tolist()
                ks = [k for k, _ in good]
                if ks == list(range(ks[0], ks[0] + len(ks))):  # the usual case: one block write
                    out[idx[ks[0]]] = arr
                else:
                    for row, k in enumerate(ks):
                        out[idx[k]] = arr[row]
                done += [(idx[k], _GPU, "", sums[row]) for row, k in enumerate(ks)]
            for k in sorted(set(range(len(datas))) - {k for k, _ in good}):
                img, why = _pil_one(job.paths[idx[k]], datas[k] or None, pp)
                if img is not None:
                    out[idx[k]] = img
                done.append((idx[k], _REFUSED if img is not None else _SKIPPED, why, _checksum(img)))
            report(done)
            idx = nxt


def _lane_process(kind: str, job: _Job, counter: Any, queue: Any) -> None:
    """A lane in its own process: reports go through the queue; ("error", message) on failure; None at the end."""
    try:
        _run_lane(kind, job, counter, queue.put)
    except OSError as err:
        queue.put(("error", f"the disk holding {Path(job.out_path).parent} is full: the dataset cache was not written "
                            "(nothing half-written was left behind)" if err.errno == errno.ENOSPC
                   else f"{kind} decoding lane failed: {type(err).__name__}: {err}"))
    except BaseException as err:  # the parent turns it into one sentence
        queue.put(("error", f"{kind} decoding lane failed: {type(err).__name__}: {err}"))
    finally:
        queue.put(None)


def _start_method(kind: str) -> str:
    """CPU lanes are forked (nothing to import again, they start at once) unless CUDA is already initialised
    here. GPU lanes come from a fork server: a process forked from one that has touched CUDA (even
    torch.cuda.is_available(), which calls cuInit) cannot rely on CUDA, and spawning would import torch
    once per lane."""
    return "forkserver" if kind == "gpu" or torch.cuda.is_initialized() else "fork"


def decode_all(index: DatasetIndex, pp: Preprocess, out_path: Path, shape: Tuple[int, ...], workers: int,
                gpu_lanes: int, stats: DecodeStats, progress: bool, gpu_decoder: str = "auto") -> List[int]:
    """Decodes file i into slot i of the cache file; returns the indices of the files that decoded.

    `workers` lanes in all, `gpu_lanes` of them on the GPU. One lane runs in this process; more run as
    processes (see _start_method).
    """

    job = _Job([str(index.root / rel) for rel in index.files], str(out_path), shape, pp.as_dict(), gpu_decoder,
               cpu_threads=2 if workers > 1 else 0)
    kinds = ["gpu"] * gpu_lanes + ["cpu"] * max(0, workers - gpu_lanes)
    bar = progress_bar(total=len(job.paths), desc="decoding", enabled=progress)
    how: Dict[int, int] = {}
    sums: Dict[int, int] = {}

    def take(msg: Any) -> None:
        if isinstance(msg, tuple):
            if msg[0] == "error":
                raise ArtTRTError(msg[1])
            stats.gpu_library = msg[0]
            return
        for i, h, why, checksum in msg:
            how[i] = h
            sums[i] = checksum
            if h == _SKIPPED:
                stats.skipped.append((index.files[i], why))
        bar.update(len(msg))

    if len(kinds) == 1 or len(job.paths) <= CHUNK:
        threads = torch.get_num_threads()
        try:
            _run_lane(kinds[0], job, mp.Value("q", 0), take)
        finally:
            torch.set_num_threads(threads)
    else:
        # import once here (forked lanes inherit it) or in the fork server, not once per lane (~1.7 s each)
        preload = ["utils.data.lanes", "utils.data.resample", "utils.data.checksum", "torchvision.transforms.v2.functional"]
        for name in preload:
            importlib.import_module(name)
        contexts = {k: mp.get_context(_start_method(k)) for k in set(kinds)}
        if any(c.get_start_method() == "forkserver" for c in contexts.values()):
            mp.get_context("forkserver").set_forkserver_preload(preload)
        # shared objects made in a fork-server context may go to forked lanes too, not the other way round
        shared = next((c for c in contexts.values() if c.get_start_method() != "fork"), contexts[kinds[0]])
        counter, queue = shared.Value("q", 0), shared.Queue()
        procs = [contexts[k].Process(target=_lane_process, args=(k, job, counter, queue), daemon=True)
                 for k in kinds]
        for p in procs:
            p.start()
        try:
            running = len(procs)
            while running:
                try:
                    msg = queue.get(timeout=2.0)
                except Exception:  # queue.Empty: is every lane still alive?
                    dead = [p for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise ArtTRTError(f"a decoding lane died (exit code {dead[0].exitcode}; out of memory?)")
                    continue
                if msg is None:
                    running -= 1
                else:
                    take(msg)
            for p in procs:
                p.join()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
    bar.close()
    stats.cpu = sum(1 for h in how.values() if h in (_CPU, _REFUSED))
    stats.gpu = sum(1 for h in how.values() if h == _GPU)
    stats.gpu_refused = sum(1 for h in how.values() if h == _REFUSED)
    stats.skipped.sort()
    ok = sorted(i for i, h in how.items() if h != _SKIPPED)
    stats.checksums = [sums[i] for i in ok]
    return ok
