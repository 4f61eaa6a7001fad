"""Can the harness feed TensorRT's speed? (a benchmark that prints figures, not a test)

A near-free model (a 2x2 average pool of the normalised input and one small matrix product to 1000 logits)
runs through ArtTRT's own timing loop (utils/measure/timing.py) over a cached dataset of --images images (a
read-only memory-mapped uint8 file, as the decoded cache is), at each --batch_sizes, twice: with the cache
page-locked in place (the default feed) and with a pinned copy per batch (the fallback). Whatever images/s it
reaches is the most any model can be measured at through this loop on this machine. The page-locked feed
runs with and without the per-image checksum check (utils.data.checksum), which gives that check's cost.
Target on an H200: >= 100,000 images/s at batch 256 from 50,000 cached images.

Usage:
    python benchmarks/feed.py --images 50000 --batch_sizes 64 256 1024 [--workdir DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def cached_images(folder: Path, n: int, crop: int = 224):  # type: ignore[no-untyped-def]
    """n random uint8 images in a file, mapped read-only like the decoded cache."""
    from utils.data.cache import CachedDataset
    from utils.data.checksum import checksums_numpy

    path = folder / f"feed-{n}-{crop}.u8"
    shape = (n, 3, crop, crop)
    if not path.is_file() or path.stat().st_size != int(np.prod(shape)):
        out = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
        rng = np.random.default_rng(0)
        for start in range(0, n, 1000):
            out[start:start + 1000] = rng.integers(0, 256, size=(min(1000, n - start), 3, crop, crop), dtype=np.uint8)
        out.flush()
        del out
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    sums = np.concatenate([checksums_numpy(images[s:s + 1000]) for s in range(0, n, 1000)])
    return CachedDataset(images, np.full(n, -1, np.int64), [f"img{i}" for i in range(n)],
                         {"root": str(path), "checksums": sums.tolist()})


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--batch_sizes", nargs="+", type=int, default=[64, 256, 1024])
    p.add_argument("--workdir", help="where the cache file is made (default: a temporary folder)")
    p.add_argument("--out")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    from utils.backends.base import Runner, device_scope
    from utils.data.cache import CachedDataset
    from utils.data.preprocess import Preprocess
    from utils.measure.measurement import MeasureOptions
    from utils.measure.timing import measure

    class NullRunner(Runner):
        """A near-free model: the cost of everything around the model, with a model that costs ~nothing."""

        backend = "null"

        def __init__(self) -> None:
            super().__init__(Preprocess())
            self.device = torch.device("cuda", torch.cuda.current_device())
            self.w = torch.randn(3 * 4, 1000, device=self.device)

        def infer(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) @ self.w

    results: dict = {"gpu": torch.cuda.get_device_name(), "images": args.images}
    with tempfile.TemporaryDirectory() as tmp, device_scope("cuda"):
        folder = Path(args.workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        ds = cached_images(folder, args.images)
        results["make_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        results["page_locked"] = ds.pin_in_place()
        results["page_lock_s"] = round(time.perf_counter() - t0, 2)
        view = next(ds.batches(8, copy=False))[0]
        results["batch_view_is_pinned"] = bool(view.is_pinned())
        # the fallback feed, a pinned copy of every batch, from a second mapping of the file (the first one is
        # page-locked now, and pin_memory() of page-locked memory copies nothing)
        second = np.memmap(ds.images.filename, dtype=np.uint8, mode="r", shape=ds.images.shape)
        copy_ds = CachedDataset(second, ds.labels, ds.files, ds.meta)
        copy_ds._pinned = False
        results["copy_view_is_pinned"] = bool(next(copy_ds.batches(8, copy=False))[0].is_pinned())
        runner = NullRunner()
        with runner:
            runs = [("page-locked", ds, True), ("page-locked, unverified", ds, False), ("pinned copy", copy_ds, True)]
            for feed, dataset, verify in runs:
                for bs in args.batch_sizes:
                    s = measure(runner, dataset, MeasureOptions(batch_size=bs, min_warmup_s=0.5, progress=False,
                                                                verify=verify)).summary()
                    key = f"{feed} bs{bs}"
                    results[key] = {"images_per_s": round(s["images_per_s"]), "feed": s["feed"],
                                    "verified_images": s["verified_images"],
                                    "latency_all_ms": round(s["latency_all_mean"], 3),
                                    "latency_model_ms": round(s["latency_model_mean"], 4),
                                    "short_batch": s["short_batch"], "timed_images": s["timed_images"]}
                    print(f"{key:>32}: {s['images_per_s']:>10,.0f} images/s  latency-all {s['latency_all_mean']:.3f} ms"
                          f"  model {s['latency_model_mean']:.4f} ms  ({s['feed']})", flush=True)
    print(json.dumps(results))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "feed.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
