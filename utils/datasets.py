"""Datasets: a class-folder tree scanned by wnid, decoded once into a memory-mapped uint8 cache.

Every validation, sweep, comparison and calibration reads images from the cache. The one transform
(`transform_uint8`: resize the shorter side with antialiasing, centre crop) is applied at decode
time (on the GPU in its batched matrix form, `utils.resample`); normalisation happens later, on the
device where the backend runs (`Normalizer`).

The cache is keyed by the dataset's content (relative paths, sizes, modification times), the class
map and the transform's parameters: a dataset that changed gets a new cache; a truncated or foreign
cache file is detected and rebuilt; files are written aside and renamed, so an interrupted or
failed build never leaves a cache that looks valid.

Usage:
    ds = open_dataset(Path("datasets/demo"), net.preprocess, cache_dir=Path("datasets/.cache"))
    for images_u8, labels, idx in ds.batches(32): ...
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import hashlib
import importlib
import io
import logging
import multiprocessing as mp
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from utils.errors import ArtTRTError
from utils.fileio import atomic_path, atomic_write_json, cache_key
from utils.imagenet import imagenet_classes
from utils.networks import Preprocess

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CACHE_MAGIC = "arttrt-dataset-cache"
CACHE_VERSION = 2  # 2: sampled digests of the pixels in the meta
DEFAULT_GPU_LANES = 2  # measured on an H200 host: 2 GPU lanes + 14 PIL lanes were as fast as 4 or 8, or faster


# ----------------------------------------------------------------------------------------------
# Scanning


@dataclass
class DatasetIndex:
    """Every image of a class-folder tree with its class index (the model's output index)."""

    root: Path
    files: List[str]  # relative paths
    labels: List[int]
    class_names: List[str]  # folder name per model output index

    def fingerprint(self) -> str:
        """Hash of relative paths, sizes and modification times: changes when the dataset does."""
        h = hashlib.sha256()
        for rel, label in zip(self.files, self.labels):
            st = (self.root / rel).stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
        return h.hexdigest()


def read_class_map(path: Path) -> List[str]:
    """A class map file: one folder name per line, in the model's output order."""
    if not path.is_file():
        raise ArtTRTError(f"class map file {path} does not exist")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        raise ArtTRTError(f"class map file {path} names a class twice")
    return names


def scan_dataset(root: Path, num_classes: int = 1000, class_map: Optional[Path] = None) -> DatasetIndex:
    """Lists root/<class>/<image>, matching class folders to model outputs by name.

    Without a class map the folders must be ImageNet-1k wnids and the network must have 1000 outputs.
    """
    if not root.is_dir():
        raise ArtTRTError(f"dataset folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ArtTRTError(f"dataset folder {root} holds no class folders (expected {root}/<wnid>/<image>; "
                          "format_dataset.py makes that layout)")
    if class_map is not None:
        names = read_class_map(class_map)
        index = {n: i for i, n in enumerate(names)}
        if len(names) != num_classes:
            raise ArtTRTError(f"class map {class_map} names {len(names)} classes but the network has "
                              f"{num_classes} outputs")
    else:
        table = imagenet_classes()
        if num_classes != len(table):
            raise ArtTRTError(f"the network has {num_classes} outputs, not the 1000 ImageNet classes: "
                              "pass --class_map FILE naming the class folders in output order")
        names, index = table.wnids, table.index
    files: List[str] = []
    labels: List[int] = []
    for folder in folders:
        if folder.name not in index:
            what = "the class map" if class_map else "ImageNet-1k wnids"
            raise ArtTRTError(f"class folder {folder.name!r} in {root} is not among {what}"
                              + ("" if class_map else " (pass --class_map FILE for other classes)"))
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                files.append(f"{folder.name}/{f.name}")
                labels.append(index[folder.name])
    if not files:
        raise ArtTRTError(f"dataset folder {root} holds class folders but no images")
    return DatasetIndex(root, files, labels, list(names))


# ----------------------------------------------------------------------------------------------
# Decoding: one transform for every path


def transform_uint8(img: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """Resize the shorter side to pp.resize (bilinear, antialiased) and centre-crop pp.crop; uint8 CHW in and out."""
    from torchvision.transforms.v2 import functional as F

    img = F.resize(img, [pp.resize], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    return F.center_crop(img, [pp.crop, pp.crop])


def decode_pil(data: bytes) -> torch.Tensor:
    """Decodes any image with PIL (grayscale, CMYK, palette converted to RGB); raises on broken files."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # raises OSError on a truncated file (LOAD_TRUNCATED_IMAGES stays False)
        rgb = im.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def jpeg_layout(data: bytes) -> Optional[Tuple[int, bool]]:
    """(colour components, progressive) read from a JPEG's SOF marker; None if not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 < n:
            return data[i + 9], marker in (0xC2, 0xC6, 0xCA, 0xCE)
        i += 2 + length
    return None


def _gpu_decodable(data: bytes) -> bool:
    """RGB/gray JPEGs go to nvjpeg; CMYK/YCCK and non-JPEG files go to PIL. Progressive JPEGs are tried
    on the GPU and fall back to PIL where nvjpeg refuses them (counted as refused)."""
    layout = jpeg_layout(data)
    return layout is not None and layout[0] in (1, 3)


@dataclass
class DecodeStats:
    cpu: int = 0
    gpu: int = 0
    gpu_refused: int = 0  # sent to the CPU: CMYK, non-JPEG, or the GPU decoder refused it
    gpu_library: Optional[str] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# The cache


@dataclass
class CachedDataset:
    """A decoded dataset: uint8 images (N, 3, S, S) memory-mapped from disk, labels and file names."""

    images: np.ndarray
    labels: np.ndarray
    files: List[str]
    meta: Dict[str, Any]

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, batch_size: int, limit: Optional[int] = None, indices: Optional[Sequence[int]] = None,
                pin: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """Yields (uint8 images, labels, dataset indices) in file order (or the given indices)."""
        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        if limit is not None:
            order = order[:limit]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            contiguous = len(idx) > 0 and bool(np.all(np.diff(idx) == 1))
            arr = self.images[idx[0]:idx[-1] + 1] if contiguous else self.images[idx]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the memmap is read-only; we copy at once
                view = torch.from_numpy(arr)
            # One copy out of the page cache: straight into pinned memory (PyTorch's caching host
            # allocator reuses the blocks and keeps them alive until non-blocking copies finish).
            x = view.pin_memory() if pin and torch.cuda.is_available() else view.clone()
            yield x, torch.from_numpy(self.labels[idx].astype(np.int64)), idx


class SyntheticDataset(CachedDataset):
    """Seeded random uint8 images with no labels (label -1): for timing runs and random-input comparisons."""

    def __init__(self, n: int, crop: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, 3, crop, crop), dtype=np.uint8)
        super().__init__(images, np.full(n, -1, dtype=np.int64), [f"random/{i}" for i in range(n)],
                         {"synthetic": True, "seed": seed})


def _cache_files(cache_dir: Path, name: str, key: str) -> Tuple[Path, Path]:
    stem = f"{name}-{key}"
    return cache_dir / f"{stem}.u8", cache_dir / f"{stem}.json"


def _load_cache(data_path: Path, meta_path: Path, key: str) -> Optional[CachedDataset]:
    """Returns the cache if it is whole and ours; None if absent, foreign, truncated or stale."""
    import json

    if not (data_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("magic") != CACHE_MAGIC or meta.get("version") != CACHE_VERSION or meta.get("key") != key:
            log.warning("cache %s is not a current ArtTRT cache for this dataset: rebuilding", meta_path.name)
            return None
        n, s = int(meta["count"]), int(meta["crop"])
        expected = n * 3 * s * s
        if data_path.stat().st_size != expected:
            log.warning("cache %s holds %d bytes, not %d: truncated or foreign, rebuilding",
                        data_path.name, data_path.stat().st_size, expected)
            return None
        images = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, 3, s, s)) if n else \
            np.zeros((0, 3, s, s), np.uint8)
        for i, digest in meta["samples"]:
            if _digest(images[i]) != digest:
                log.warning("cache %s does not hold the pixels it was written with (image %d differs): rebuilding",
                            data_path.name, i)
                return None
        return CachedDataset(images, np.asarray(meta["labels"], dtype=np.int64), list(meta["files"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cache %s unreadable (%s): rebuilding", meta_path.name, err)
        return None


GPU_DECODERS = ("auto", "nvimgcodec", "torchvision")
GpuDecode = Callable[[List[bytes]], List[Optional[torch.Tensor]]]


def gpu_jpeg_decoder(kind: str = "auto", cpu_threads: int = 0) -> Tuple[str, GpuDecode, bool]:
    """A batched GPU JPEG decoder: (library, decode, hwc). decode returns uint8 CUDA tensors, HWC where
    hwc is True (nvImageCodec's native interleaved layout) else CHW, and None where it refuses a file.

    nvImageCodec (NVIDIA's codec library) is preferred: it uses the GPU's hardware JPEG engines where
    the GPU has them (A100, H100, H200), then CUDA nvJPEG, and its pixels are nearer PIL's. torchvision's
    decode_jpeg (CUDA nvJPEG) is the fallback that needs no extra package.
    """
    if kind not in GPU_DECODERS:
        raise ArtTRTError(f"--gpu_decoder must be one of {', '.join(GPU_DECODERS)}")
    if kind in ("auto", "nvimgcodec"):
        try:
            from nvidia import nvimgcodec
        except ImportError as err:
            if kind == "nvimgcodec":
                raise ArtTRTError("--gpu_decoder nvimgcodec needs nvImageCodec: pip install "
                                  "'nvidia-nvimgcodec-cu13[nvjpeg]' (or -cu12)") from err
        else:
            dec = nvimgcodec.Decoder(max_num_cpu_threads=cpu_threads,
                                     backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY),
                                               nvimgcodec.Backend(nvimgcodec.BackendKind.GPU_ONLY)])
            # EXIF orientation is not applied, as in the PIL path; interleaved RGB is the engines' own layout.
            params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB,
                                             sample_format=nvimgcodec.SampleFormat.I_RGB)

            def decode_nvimgcodec(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
                stream = torch.cuda.current_stream().cuda_stream
                images = dec.decode([nvimgcodec.CodeStream(d) for d in datas], params=params, cuda_stream=stream)
                # torch.as_tensor keeps each nvImageCodec image alive through __cuda_array_interface__
                out: List[Optional[torch.Tensor]] = []
                for im in images:
                    t = None if im is None else torch.as_tensor(im, device="cuda")
                    out.append(t if t is not None and t.dim() == 3 and t.shape[2] == 3 else None)
                return out

            return "nvimgcodec", decode_nvimgcodec, True
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode_torchvision(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda"))
        except RuntimeError:
            out: List[Optional[torch.Tensor]] = []
            for t in tensors:  # find the ones nvJPEG refuses
                try:
                    out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device="cuda"))
                except RuntimeError:
                    out.append(None)
            return out

    return "torchvision", decode_torchvision, False


# ----------------------------------------------------------------------------------------------
# The first pass: lanes (processes) taking chunks of files from one shared counter
#
# A CPU lane decodes with PIL and applies transform_uint8, one file at a time. A GPU lane reads a batch of
# files (the next batch is read on a thread while this one decodes), decodes it on the GPU, applies the
# transform to the whole batch as two matrix products (utils.resample) and copies the crops back through
# pinned memory; files the GPU decoder refuses (CMYK, some progressive JPEGs) go through PIL in that lane.
# Every lane writes its crops straight into row i of the cache file (pwrite): no pixels cross a pipe,
# only (index, how, why) reports. Faster lanes simply take more chunks.

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


def _pil_one(path: str, data: Optional[bytes], pp: Preprocess) -> Tuple[Optional[np.ndarray], str]:
    try:
        return transform_uint8(decode_pil(Path(path).read_bytes() if data is None else data), pp).numpy(), ""
    except Exception as err:  # PIL raises many types for a broken file
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _read(paths: List[str]) -> List[bytes]:
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
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
                done.append((i, _CPU if img is not None else _SKIPPED, why))
            report(done)
        return

    from utils.resample import transform_padded

    library, decode, hwc = gpu_jpeg_decoder(job.gpu_decoder, job.cpu_threads)
    report((library,))
    with cf.ThreadPoolExecutor(1) as reader:
        def claim() -> Tuple[range, "cf.Future[List[bytes]]"]:
            idx = files(_claim(counter, GPU_CLAIM, total_chunks))
            return idx, reader.submit(_read, [job.paths[i] for i in idx])

        idx, pending = claim()
        while len(idx):
            datas = pending.result()
            nxt, pending = claim()  # read the next batch while this one decodes
            ok = [k for k, d in enumerate(datas) if _gpu_decodable(d)]
            decoded = decode([datas[k] for k in ok]) if ok else []
            good = [(k, im) for k, im in zip(ok, decoded) if im is not None]
            done = []
            if good:
                crops = transform_padded([im for _, im in good], pp, hwc=hwc)
                host = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=crops.is_cuda)
                host.copy_(crops)
                arr = host.numpy()
                ks = [k for k, _ in good]
                if ks == list(range(ks[0], ks[0] + len(ks))):  # the usual case: one block write
                    out[idx[ks[0]]] = arr
                else:
                    for row, k in enumerate(ks):
                        out[idx[k]] = arr[row]
                done += [(idx[k], _GPU, "") for k in ks]
            for k in sorted(set(range(len(datas))) - {k for k, _ in good}):
                img, why = _pil_one(job.paths[idx[k]], datas[k], pp)
                if img is not None:
                    out[idx[k]] = img
                done.append((idx[k], _REFUSED if img is not None else _SKIPPED, why))
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


def _decode_all(index: DatasetIndex, pp: Preprocess, out_path: Path, shape: Tuple[int, ...], workers: int,
                gpu_lanes: int, stats: DecodeStats, progress: bool, gpu_decoder: str = "auto") -> List[int]:
    """Decodes file i into slot i of the cache file; returns the indices of the files that decoded.

    `workers` lanes in all, `gpu_lanes` of them on the GPU. One lane runs in this process; more run as
    processes (see _start_method).
    """
    from utils.progress import progress_bar

    job = _Job([str(index.root / rel) for rel in index.files], str(out_path), shape, pp.as_dict(), gpu_decoder,
               cpu_threads=2 if workers > 1 else 0)
    kinds = ["gpu"] * gpu_lanes + ["cpu"] * max(0, workers - gpu_lanes)
    bar = progress_bar(total=len(job.paths), desc="decoding", disable=not progress)
    how: Dict[int, int] = {}

    def take(msg: Any) -> None:
        if isinstance(msg, tuple):
            if msg[0] == "error":
                raise ArtTRTError(msg[1])
            stats.gpu_library = msg[0]
            return
        for i, h, why in msg:
            how[i] = h
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
        preload = ["utils.datasets", "utils.resample", "torchvision.transforms.v2.functional"]
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
    return sorted(i for i, h in how.items() if h != _SKIPPED)


def _reserve(fd: int, size: int) -> None:
    """Allocates the cache file's blocks up front: a full disk fails here, before any decoding, not partway."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:  # no posix_fallocate on this OS
        os.ftruncate(fd, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)


def _sample_digests(path: Path, count: int, crop: int, samples: int = 64) -> List[List[Any]]:
    """[index, digest] of up to `samples` images spread over the cache: a cheap check at load time that the
    pixels on disk are the ones written (a power cut before write-back leaves zeros under a valid name)."""
    if not count:
        return []
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, crop, crop))
    picks = sorted({int(i) for i in np.linspace(0, count - 1, min(samples, count))})
    return [[i, _digest(images[i])] for i in picks]


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(image.tobytes(), digest_size=8).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARTTRT_CACHE_DIR", Path(__file__).resolve().parent.parent / "datasets" / ".cache"))


def open_dataset(root: Path, pp: Preprocess, num_classes: int = 1000, class_map: Optional[Path] = None,
                 cache_dir: Optional[Path] = None, workers: Optional[int] = None, gpu_decode: Optional[bool] = None,
                 strict: bool = False, progress: bool = False, gpu_decoder: str = "auto",
                 gpu_lanes: Optional[int] = None) -> CachedDataset:
    """Scans `root`, then returns its decoded cache, building it first if needed.

    Args:
        workers: decoding lanes (processes) in all, default min(16, CPU count).
        strict: a file that does not decode is fatal instead of skipped and counted.
        gpu_decode: batched GPU JPEG decoding; default when CUDA is present.
        gpu_decoder: "auto" (nvImageCodec where installed, else torchvision), "nvimgcodec" or "torchvision".
        gpu_lanes: how many of the lanes decode on the GPU (default 2); the others decode with PIL.
    """
    index = scan_dataset(root, num_classes, class_map)
    cache_dir = cache_dir or default_cache_dir()
    key = cache_key({"fingerprint": index.fingerprint(), "preprocess": pp.as_dict(),
                     "classes": index.class_names, "strict": strict, "version": CACHE_VERSION}, 16)
    name = f"{root.resolve().name}-{pp.crop}"
    data_path, meta_path = _cache_files(cache_dir, name, key)
    cached = _load_cache(data_path, meta_path, key)
    if cached is not None:
        _report_skipped(cached.meta, strict)
        return cached

    gpu = torch.cuda.is_available() if gpu_decode is None else gpu_decode
    if gpu and not torch.cuda.is_available():
        raise ArtTRTError("--gpu_decode needs a CUDA GPU, and none is visible")
    workers = workers or min(16, os.cpu_count() or 1)
    if workers < 1 or (gpu_lanes is not None and gpu_lanes < 0):
        raise ArtTRTError("--workers must be at least 1 and --gpu_lanes at least 0")
    gpu_lanes = min(DEFAULT_GPU_LANES if gpu_lanes is None else gpu_lanes, workers) if gpu else 0
    s = pp.crop
    stats = DecodeStats()
    import time

    t0 = time.perf_counter()
    shape = (len(index.files), 3, s, s)
    with atomic_path(data_path) as tmp:
        with open(tmp, "r+b") as f:
            if index.files:  # reserve the space now: a full disk fails before any decoding
                _reserve(f.fileno(), int(np.prod(shape)))
        ok = _decode_all(index, pp, tmp, shape, workers, gpu_lanes, stats, progress, gpu_decoder)
        if stats.skipped and strict:
            f0, why = stats.skipped[0]
            raise ArtTRTError(f"{len(stats.skipped)} image(s) could not be decoded, e.g. {f0} ({why}); "
                              "--strict makes this fatal")
        if len(ok) < len(index.files):  # close the holes left by files that did not decode
            out = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)
            for k, i in enumerate(ok):
                if k != i:
                    out[k] = out[i]
            del out
            with open(tmp, "r+b") as f:
                f.truncate(len(ok) * 3 * s * s)
        # No fsync of gigabytes here (like pip's or Hugging Face's caches): the OS writes the pages back
        # in the background. What a power cut could still lose, the sampled digests catch at load.
        samples = _sample_digests(tmp, len(ok), s)
    seconds = time.perf_counter() - t0
    meta = {"magic": CACHE_MAGIC, "version": CACHE_VERSION, "key": key, "root": str(root.resolve()),
            "count": len(ok), "crop": s, "preprocess": pp.as_dict(), "class_names": index.class_names,
            "files": [index.files[i] for i in ok], "labels": [index.labels[i] for i in ok],
            "skipped": stats.skipped, "decoder": {"cpu": stats.cpu, "gpu": stats.gpu, "gpu_refused": stats.gpu_refused,
                                                  "gpu_library": stats.gpu_library, "workers": workers,
                                                  "gpu_lanes": gpu_lanes,
                                                  "seconds": round(seconds, 3)},
            "bytes": len(ok) * 3 * s * s, "samples": samples}
    atomic_write_json(meta_path, meta)  # written last: data without meta is never taken as valid
    log.info("dataset cache %s: %d images, %.1f MB, built in %.1f s (%d decoded on GPU%s, %d on CPU)",
             data_path, len(ok), meta["bytes"] / 1e6, seconds, stats.gpu,
             f" by {stats.gpu_library}" if stats.gpu_library else "", stats.cpu)
    _report_skipped(meta, strict)
    loaded = _load_cache(data_path, meta_path, key)
    assert loaded is not None
    return loaded


def _report_skipped(meta: Dict[str, Any], strict: bool) -> None:
    skipped = meta.get("skipped", [])
    if skipped:
        log.warning("%d image(s) skipped because they do not decode: %s", len(skipped),
                    "; ".join(f"{f} ({why})" for f, why in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if not meta["count"]:
        raise ArtTRTError(f"no image of dataset {meta['root']} could be decoded")


# ----------------------------------------------------------------------------------------------
# Normalisation on the device


class Normalizer:
    """uint8 NCHW -> (x/255 - mean)/std on `device`, in `dtype`; the copy-in of every runner."""

    def __init__(self, pp: Preprocess, device: torch.device, dtype: torch.dtype = torch.float32):
        mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(pp.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(device)
        self.bias = (-mean / std).to(device)
        self.device, self.dtype = device, dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        y = torch.addcmul(self.bias, x.float(), self.scale)
        return y if self.dtype == torch.float32 else y.to(self.dtype)
