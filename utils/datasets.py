"""Datasets: a class-folder tree scanned by wnid, decoded once into a memory-mapped uint8 cache.

Every validation, sweep, comparison and calibration reads images from the cache. The one transform
(`transform_uint8`: resize the shorter side with antialiasing, centre crop) is applied at decode
time; normalisation happens later, on the device where the backend runs (`Normalizer`).

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
import hashlib
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
CACHE_VERSION = 1


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


def transform_grouped(images: List[torch.Tensor], pp: Preprocess) -> torch.Tensor:
    """transform_uint8 over many images, one batched call per distinct input size (fewer kernel launches)."""
    if not images:
        return torch.empty(0, 3, pp.crop, pp.crop, dtype=torch.uint8)
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for k, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(k)
    out = torch.empty(len(images), 3, pp.crop, pp.crop, dtype=torch.uint8, device=images[0].device)
    for ks in groups.values():
        out[ks] = transform_uint8(torch.stack([images[k] for k in ks]), pp)
    return out


def decode_pil(data: bytes) -> torch.Tensor:
    """Decodes any image with PIL (grayscale, CMYK, palette converted to RGB); raises on broken files."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # raises OSError on a truncated file (LOAD_TRUNCATED_IMAGES stays False)
        rgb = im.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


_WORKER_OUT: Dict[str, np.ndarray] = {}


def _cpu_worker(args: Tuple[int, str, Dict[str, Any], str, Tuple[int, ...]]) -> Tuple[int, bool, str]:
    """Decodes file i and writes it straight into slot i of the cache file (no pixels cross the pipe)."""
    i, path, ppd, out_path, shape = args
    try:
        img = transform_uint8(decode_pil(Path(path).read_bytes()), Preprocess(**ppd)).numpy()
    except Exception as err:  # PIL raises many types for a broken file
        return i, False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if out_path not in _WORKER_OUT:  # one mapping per worker process
        _WORKER_OUT.clear()
        _WORKER_OUT[out_path] = np.memmap(out_path, dtype=np.uint8, mode="r+", shape=shape)
    _WORKER_OUT[out_path][i] = img
    return i, True, ""


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
        return CachedDataset(images, np.asarray(meta["labels"], dtype=np.int64), list(meta["files"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cache %s unreadable (%s): rebuilding", meta_path.name, err)
        return None


def _decode_all(index: DatasetIndex, pp: Preprocess, out: np.ndarray, out_path: Path, workers: int, gpu: bool,
                stats: DecodeStats, progress: bool, gpu_decoder: str = "auto") -> List[int]:
    """Decodes file i into slot i of `out`, then packs the decoded ones to the front; returns their indices."""
    from utils.progress import progress_bar

    paths = [str(index.root / rel) for rel in index.files]
    ok: List[int] = []
    bar = progress_bar(total=len(paths), desc="decoding", disable=not progress)

    def store(i: int, img: Optional[np.ndarray], why: str) -> None:
        if img is None:
            stats.skipped.append((index.files[i], why))
        else:
            out[i] = img
            ok.append(i)
        bar.update(1)

    if gpu:
        _decode_gpu(paths, pp, stats, store, decoder=gpu_decoder)
    else:
        out.flush()
        shape = tuple(out.shape)
        args = [(i, p, pp.as_dict(), str(out_path), shape) for i, p in enumerate(paths)]
        if workers > 1 and len(paths) > 16:
            ctx = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
            with ctx.Pool(workers) as pool:
                results = pool.imap_unordered(_cpu_worker, args, chunksize=16)
                for i, good, why in results:
                    if good:
                        ok.append(i)
                    else:
                        stats.skipped.append((index.files[i], why))
                    bar.update(1)
        else:
            _WORKER_OUT.pop(str(out_path), None)
            for a in args:
                i, good, why = _cpu_worker(a)
                if good:
                    ok.append(i)
                else:
                    stats.skipped.append((index.files[i], why))
            _WORKER_OUT.clear()
        stats.cpu = len(ok)
    bar.close()
    ok.sort()
    stats.skipped.sort()
    for k, i in enumerate(ok):  # close the holes left by files that did not decode
        if k != i:
            out[k] = out[i]
    return ok


def _read_chunk(pool: cf.ThreadPoolExecutor, paths: List[str]) -> Tuple[List[bytes], List[bool]]:
    datas = list(pool.map(lambda p: Path(p).read_bytes(), paths))
    return datas, list(pool.map(_gpu_decodable, datas))


GPU_DECODERS = ("auto", "nvimgcodec", "torchvision")
GpuDecode = Callable[[List[bytes]], List[Optional[torch.Tensor]]]


def gpu_jpeg_decoder(kind: str = "auto") -> Tuple[str, GpuDecode]:
    """A batched GPU JPEG decoder returning uint8 CHW CUDA tensors (None where it refuses a file).

    nvImageCodec (NVIDIA's codec library) is preferred: it uses the GPU's hardware JPEG engine where
    the GPU has one (A100, H100, H200), then CUDA nvJPEG. torchvision's decode_jpeg (CUDA nvJPEG) is the
    fallback that needs no extra package.
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
            dec = nvimgcodec.Decoder(backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY),
                                               nvimgcodec.Backend(nvimgcodec.BackendKind.GPU_ONLY)])
            # EXIF orientation is not applied, as in the PIL path; planar RGB is CHW as the transform wants.
            params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB,
                                             sample_format=nvimgcodec.SampleFormat.P_RGB)

            def decode_nvimgcodec(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
                stream = torch.cuda.current_stream().cuda_stream
                images = dec.decode([nvimgcodec.CodeStream(d) for d in datas], params=params, cuda_stream=stream)
                # torch.as_tensor keeps each nvImageCodec image alive through __cuda_array_interface__
                out: List[Optional[torch.Tensor]] = []
                for im in images:
                    t = None if im is None else torch.as_tensor(im, device="cuda")
                    if t is not None and t.dim() == 3 and t.shape[0] != 3 and t.shape[-1] == 3:
                        t = t.permute(2, 0, 1)  # an interleaved answer: make it CHW
                    out.append(t)
                return out

            return "nvimgcodec", decode_nvimgcodec
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

    return "torchvision", decode_torchvision


def _decode_gpu(paths: List[str], pp: Preprocess, stats: DecodeStats, store: Any, chunk: int = 256,
                decoder: str = "auto") -> None:
    """Batched GPU JPEG decoding, PIL for what the GPU decoder refuses.

    File reading and layout checks for the next chunk run on CPU threads while the GPU decodes this one;
    crops come back through pinned memory.
    """
    stats.gpu_library, decode = gpu_jpeg_decoder(decoder)
    starts = list(range(0, len(paths), chunk))
    with cf.ThreadPoolExecutor(16) as pool, cf.ThreadPoolExecutor(1) as prefetch:
        nxt = prefetch.submit(_read_chunk, pool, paths[0:chunk]) if starts else None
        for n, start in enumerate(starts):
            assert nxt is not None
            datas, flags = nxt.result()
            if n + 1 < len(starts):
                nxt = prefetch.submit(_read_chunk, pool, paths[starts[n + 1]:starts[n + 1] + chunk])
            gpu_idx = [i for i, f in enumerate(flags) if f]
            decoded = {i: im for i, im in zip(gpu_idx, decode([datas[i] for i in gpu_idx]) if gpu_idx else [])
                       if im is not None and im.dim() == 3 and im.shape[0] == 3}
            order = list(decoded)
            host = None
            if order:
                crops = transform_grouped([decoded[i] for i in order], pp)
                host = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(crops)
                host = host.numpy()
            where = {i: k for k, i in enumerate(order)}
            for i, data in enumerate(datas):
                if i in where and host is not None:
                    stats.gpu += 1
                    store(start + i, host[where[i]], "")
                    continue
                stats.gpu_refused += 1
                try:
                    img = transform_uint8(decode_pil(data), pp).numpy()
                    stats.cpu += 1
                    store(start + i, img, "")
                except Exception as err:  # PIL raises many types for a broken file
                    store(start + i, None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARTTRT_CACHE_DIR", Path(__file__).resolve().parent.parent / "datasets" / ".cache"))


def open_dataset(root: Path, pp: Preprocess, num_classes: int = 1000, class_map: Optional[Path] = None,
                 cache_dir: Optional[Path] = None, workers: Optional[int] = None, gpu_decode: Optional[bool] = None,
                 strict: bool = False, progress: bool = False, gpu_decoder: str = "auto") -> CachedDataset:
    """Scans `root`, then returns its decoded cache, building it first if needed.

    Args:
        strict: a file that does not decode is fatal instead of skipped and counted.
        gpu_decode: batched GPU JPEG decoding; default when CUDA is present.
        gpu_decoder: "auto" (nvImageCodec where installed, else torchvision), "nvimgcodec" or "torchvision".
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
    s = pp.crop
    stats = DecodeStats()
    import time

    t0 = time.perf_counter()
    with atomic_path(data_path) as tmp:
        with open(tmp, "wb") as f:
            f.truncate(len(index.files) * 3 * s * s)
        out = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(len(index.files), 3, s, s)) if index.files else \
            np.zeros((0, 3, s, s), np.uint8)
        ok = _decode_all(index, pp, out, tmp, workers, gpu, stats, progress, gpu_decoder)
        if stats.skipped and strict:
            f0, why = stats.skipped[0]
            raise ArtTRTError(f"{len(stats.skipped)} image(s) could not be decoded, e.g. {f0} ({why}); "
                              "--strict makes this fatal")
        out.flush()
        del out
        with open(tmp, "r+b") as f:
            f.truncate(len(ok) * 3 * s * s)
    seconds = time.perf_counter() - t0
    meta = {"magic": CACHE_MAGIC, "version": CACHE_VERSION, "key": key, "root": str(root.resolve()),
            "count": len(ok), "crop": s, "preprocess": pp.as_dict(), "class_names": index.class_names,
            "files": [index.files[i] for i in ok], "labels": [index.labels[i] for i in ok],
            "skipped": stats.skipped, "decoder": {"cpu": stats.cpu, "gpu": stats.gpu, "gpu_refused": stats.gpu_refused,
                                                  "gpu_library": stats.gpu_library,
                                                  "workers": workers, "seconds": round(seconds, 3)},
            "bytes": len(ok) * 3 * s * s}
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
