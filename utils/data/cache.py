"""The decoded dataset: every image resized and centre-cropped once into a memory-mapped uint8 file, read by
every validation, sweep, comparison and calibration (normalisation happens later, on the device).

The cache is an artefact of utils.core.artefact.cached: keyed by the dataset's content (relative paths,
sizes, modification times), the class map and the transform; its sidecar holds the files, labels and
decoding facts, and a fingerprint of sampled pixels that is checked at load (a power cut before
write-back leaves zeros under a valid name). A changed dataset gets a new cache; a truncated, foreign
or damaged one is rebuilt; a build that fails leaves nothing that looks valid.

Usage:
    ds = open_dataset(Path("datasets/demo"), net.preprocess, cache_dir=Path("datasets/.cache"))
    for images_u8, labels, idx in ds.batches(32): ...
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from utils.core.artefact import cached
from utils.core.errors import ArtTRTError
from utils.data.checksum import checksums_numpy
from utils.data.hostmem import page_lock, page_unlock
from utils.data.lanes import UNREADABLE, DecodeStats, decode_all
from utils.data.preprocess import Preprocess
from utils.data.scan import scan_dataset

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch


log = logging.getLogger(__name__)

CACHE_MAGIC = "arttrt-dataset-cache"
CACHE_VERSION = 4  # 4: a checksum of every image, checked on every read (3: artefact; 2: sampled digests)
DEFAULT_GPU_LANES = 2  # measured on an H200 host: 2 GPU lanes + 14 PIL lanes were as fast as 4 or 8, or faster


@dataclass
class CachedDataset:
    """A decoded dataset: uint8 images (N, 3, S, S) memory-mapped from disk, labels and file names."""

    images: np.ndarray
    labels: np.ndarray
    files: List[str]
    meta: Dict[str, Any]
    _pinned: Optional[bool] = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def pin_in_place(self) -> bool:
        """Page-locks the images where they are (cuMemHostRegister; read-only for the memory-mapped cache), once:
        batches then go to a GPU by DMA straight from them, with no copy on the host. False where CUDA refuses
        (no GPU, no read-only registration on this platform, a memory-lock limit): callers copy instead."""
        if self._pinned is None:
            why_not = page_lock(self.images)
            self._pinned = why_not is None
            if why_not:
                log.info("the dataset cache could not be page-locked in place (%s): batches are copied into "
                         "pinned memory instead", why_not)
        return self._pinned

    def unpin(self) -> None:
        """Undoes pin_in_place (before this dataset is dropped while the process goes on)."""
        if self._pinned:
            page_unlock(self.images)
        self._pinned = None

    def batches(self, batch_size: int, limit: Optional[int] = None, indices: Optional[Sequence[int]] = None,
                pin: bool = False, copy: bool = True) -> Iterator[Tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """Yields (uint8 images, labels, dataset indices) in file order (or the given indices).

        Args:
            pin: copy each batch into pinned memory (for non-blocking copies to a GPU).
            copy: False yields views of the cache where the batch is contiguous (after pin_in_place(): the
                page-locked images themselves); the caller must not write to them.
        """
        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        if limit is not None:
            order = order[:limit]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            contiguous = len(idx) > 0 and bool(np.all(np.diff(idx) == 1))
            arr = self.images[idx[0]:idx[-1] + 1] if contiguous else self.images[idx]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the memmap is read-only: never written through
                view = torch.from_numpy(arr)
            if not copy and contiguous:
                x = view
            else:  # one copy out of the page cache, straight into pinned memory where asked (PyTorch's caching
                # host allocator reuses the blocks and keeps them alive until non-blocking copies finish)
                x = view.pin_memory() if pin and torch.cuda.is_available() else view.clone()
            yield x, torch.from_numpy(self.labels[idx].astype(np.int64)), idx

    @property
    def checksums(self) -> Optional[np.ndarray]:
        """(N,) int64 checksum of every image (utils.data.checksum), written with the cache; None where the
        images were never written anywhere (random images)."""
        sums = self.meta.get("checksums")
        if sums is None:
            return None
        if "_checksums" not in self.meta:
            self.meta["_checksums"] = np.asarray(sums, dtype=np.int64)
        arr: np.ndarray = self.meta["_checksums"]
        return arr

    def verify(self, idx: np.ndarray, images: torch.Tensor) -> int:
        """How many of the images (host tensors of dataset rows idx) differ from what was written: 0 for sound
        rows and for datasets without checksums."""
        sums = self.checksums
        if sums is None:
            return 0

        return int((checksums_numpy(images.numpy()) != sums[np.asarray(idx)]).sum())

    def invalidate(self, why: str) -> None:
        """Marks the cache for rebuilding (its sidecar, ArtTRT's own file, is removed) and says so."""
        sidecar = self.meta.get("_sidecar")
        if sidecar:
            Path(sidecar).unlink(missing_ok=True)
        log.warning("dataset cache of %s %s: it will be rebuilt on the next run", self.meta.get("root"), why)

    @property
    def num_classes(self) -> Optional[int]:
        """How many classes the labels index into (None for unlabelled data)."""
        names = self.meta.get("class_names")
        return len(names) if names else None


class SyntheticDataset(CachedDataset):
    """Seeded random uint8 images with no labels (label -1): for timing runs and random-input comparisons."""

    def __init__(self, n: int, crop: int, seed: int = 0):
        if n < 1:
            raise ArtTRTError(f"--synthetic takes a number of images of at least 1, not {n}")
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, 3, crop, crop), dtype=np.uint8)
        super().__init__(images, np.full(n, -1, dtype=np.int64), [f"random/{i}" for i in range(n)],
                         {"synthetic": True, "seed": seed, "root": f"random images (seed {seed})"})


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
    return Path(os.environ.get("ARTTRT_CACHE_DIR", Path(__file__).resolve().parent.parent.parent / "datasets" / ".cache"))


def _fingerprint(path: Path, facts: Mapping[str, Any]) -> Dict[str, Any]:
    """Sampled pixel digests (pixels lost to a crash before write-back) and a digest of the meta itself
    (files, labels, classes, checksums: an edited sidecar must not pass)."""
    meta = json.dumps([facts.get(k) for k in ("files", "labels", "class_names", "checksums", "count", "crop")])
    return {"samples": _sample_digests(path, int(facts["count"]), int(facts["crop"])),
            "meta": hashlib.sha256(meta.encode()).hexdigest()}


def _unreadable_now_readable(root: Path) -> Any:
    """still_valid for the cache: a file skipped because it could not be read, and readable now, means rebuild."""
    def check(meta: Dict[str, Any]) -> Optional[str]:
        for rel, why in meta.get("skipped", []):
            if str(why).startswith(UNREADABLE) and os.access(root / rel, os.R_OK):
                return f"skipped {rel} as unreadable, and it can be read now"
        return None
    return check


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
    settings = {"fingerprint": index.fingerprint(), "preprocess": pp.as_dict(), "classes": index.class_names,
                "strict": strict, "version": CACHE_VERSION}

    def build(tmp: Path) -> Dict[str, Any]:
        gpu = torch.cuda.is_available() if gpu_decode is None else gpu_decode
        if gpu and not torch.cuda.is_available():
            raise ArtTRTError("--gpu_decode needs a CUDA GPU, and none is visible")
        n_workers = workers or min(16, os.cpu_count() or 1)  # checked by DataOptions
        lanes = min(DEFAULT_GPU_LANES if gpu_lanes is None else gpu_lanes, n_workers) if gpu else 0
        s = pp.crop
        stats = DecodeStats()
        t0 = time.perf_counter()
        shape = (len(index.files), 3, s, s)
        with open(tmp, "r+b") as f:
            if index.files:  # reserve the space now: a full disk fails before any decoding
                _reserve(f.fileno(), int(np.prod(shape)))
        ok = decode_all(index, pp, tmp, shape, n_workers, lanes, stats, progress, gpu_decoder)
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
        # in the background. What a power cut could still lose, the sampled fingerprint catches at load.
        seconds = time.perf_counter() - t0
        log.info("dataset cache of %s: %d images, %.1f MB, built in %.1f s (%d decoded on GPU%s, %d on CPU)",
                 root, len(ok), len(ok) * 3 * s * s / 1e6, seconds, stats.gpu,
                 f" by {stats.gpu_library}" if stats.gpu_library else "", stats.cpu)
        return {"magic": CACHE_MAGIC, "version": CACHE_VERSION, "root": str(root.resolve()),
                "count": len(ok), "crop": s, "preprocess": pp.as_dict(), "class_names": index.class_names,
                "files": [index.files[i] for i in ok], "labels": [index.labels[i] for i in ok],
                "skipped": stats.skipped, "checksums": stats.checksums,
                "decoder": {"cpu": stats.cpu, "gpu": stats.gpu, "gpu_refused": stats.gpu_refused,
                            "gpu_library": stats.gpu_library, "workers": n_workers, "gpu_lanes": lanes,
                            "seconds": round(seconds, 3)},
                "bytes": len(ok) * 3 * s * s}

    folder, stem = cache_dir or default_cache_dir(), f"{root.resolve().name}-{pp.crop}"
    data_path, meta = cached(folder, stem, ".u8", settings, build, fingerprint=_fingerprint,
                             still_valid=_unreadable_now_readable(root))
    if not meta["cached"]:
        _remove_replaced(folder, stem, data_path, settings, str(root.resolve()))
    _report_skipped(meta, strict)
    n, s = int(meta["count"]), int(meta["crop"])
    images = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, 3, s, s)) if n else \
        np.zeros((0, 3, s, s), np.uint8)
    meta["key"] = meta["artefact"]["key"]
    meta["_sidecar"] = str(data_path.with_suffix(".json"))
    return CachedDataset(images, np.asarray(meta["labels"], dtype=np.int64), list(meta["files"]), meta)


def _remove_replaced(folder: Path, stem: str, keep: Path, settings: Mapping[str, Any], root: str) -> None:
    """Removes the caches this one replaces: ArtTRT's caches of the same folder with the same transform and
    classes that differ only in the dataset's content (or an older cache format). Caches of the same folder
    with another transform are still current and stay."""
    same = json.loads(json.dumps({k: v for k, v in settings.items() if k not in ("fingerprint", "version")},
                                 default=str))  # as the sidecar stores them (tuples become lists)
    for sidecar in folder.glob(f"{stem}-*.json"):
        data = sidecar.with_suffix(".u8")
        if data == keep:
            continue
        try:
            meta = json.loads(sidecar.read_text())
            if meta.get("magic") != CACHE_MAGIC or meta.get("root") != root:
                continue
            old = meta.get("artefact", {}).get("settings")
            if old is None:  # a cache of an older ArtTRT (no artefact block): same transform and classes?
                if [meta.get("preprocess"), meta.get("class_names")] != [same.get("preprocess"), same.get("classes")]:
                    continue
            elif {k: v for k, v in old.items() if k not in ("fingerprint", "version")} != same:
                continue
        except (OSError, ValueError, AttributeError):
            continue
        sidecar.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        log.info("removed %s: replaced by %s", data.name, keep.name)


def _report_skipped(meta: Dict[str, Any], strict: bool) -> None:
    skipped = meta.get("skipped", [])
    if skipped:
        log.warning("%d image(s) skipped because they do not decode: %s", len(skipped),
                    "; ".join(f"{f} ({why})" for f, why in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if not meta["count"]:
        raise ArtTRTError(f"no image of dataset {meta['root']} could be decoded")
