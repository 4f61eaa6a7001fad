"""How fast does ArtTRT feed images? (a benchmark that prints figures, not a test)

Makes a synthetic ImageNet-like folder (JPEGs of 400-500 x 300-375 pixels cut from real photos that
ship in packages: scikit-image's, foolbox's, or a folder you name), then prints images/s for:
  1. the first pass on the CPU (PIL decode + resize + crop, --workers processes) into the cache;
  2. the first pass with batched GPU decoding (--gpu_lanes of the --workers lanes on the GPU; torchvision's
     nvJPEG and, where installed, nvImageCodec), when a GPU is present;
  3. a cached pass: memory-mapped uint8 cache -> pinned memory -> normalised tensors on the device.
It also reports how far GPU-decoded pixels are from the PIL path on the given labelled photos and, with
--network, whether top-1 changes. Targets on an H200: cached pass >= 50,000 images/s; GPU first pass
>= 3x the 16-process PIL figure of the same run.

Usage:
    python benchmarks/datapath.py --num_images 2000 [--workers 2] [--photos datasets/demo]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def source_photos(extra: Path | None) -> list[np.ndarray]:
    from PIL import Image

    files: list[Path] = []
    if extra is not None:
        files += sorted(p for p in extra.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for mod, pattern in (("skimage", "data/*.png"), ("skimage", "data/*.jpg"), ("foolbox", "data/imagenet_*.jpg")):
        try:
            root = Path(__import__(mod).__file__).parent
            files += sorted(root.glob(pattern))
        except ImportError:
            pass
    photos = []
    for f in files:
        with Image.open(f) as im:
            if im.mode in ("RGB", "RGBA", "L") and min(im.size) >= 200:
                photos.append(np.asarray(im.convert("RGB")))
    if not photos:
        raise SystemExit("no source photos found: pass --photos DIR")
    return photos


_PHOTOS: dict = {}


def _make_one(args: tuple) -> None:
    from PIL import Image

    i, out, photos_path = args
    if photos_path not in _PHOTOS:  # once per worker process
        _PHOTOS[photos_path] = np.load(photos_path, allow_pickle=True)
    photos = _PHOTOS[photos_path]
    rng = np.random.default_rng(i)
    src = Image.fromarray(photos[i % len(photos)])
    w, h = int(rng.integers(400, 501)), int(rng.integers(300, 376))
    scale = max(w / src.width, h / src.height) * rng.uniform(1.0, 1.6)
    big = src.resize((max(w, int(src.width * scale)), max(h, int(src.height * scale))), Image.BILINEAR)
    x, y = int(rng.integers(0, big.width - w + 1)), int(rng.integers(0, big.height - h + 1))
    crop = big.crop((x, y, x + w, y + h))
    wnid = f"n{1440764 + (i % 100):08d}"
    d = Path(out) / wnid
    d.mkdir(parents=True, exist_ok=True)
    crop.save(d / f"img_{i:06d}.JPEG", quality=int(rng.integers(80, 93)))


def make_folder(out: Path, n: int, photos: list[np.ndarray], workers: int) -> float:
    import multiprocessing as mp

    from utils.data.imagenet import imagenet_classes

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "photos.npy"
    arr = np.empty(len(photos), dtype=object)
    arr[:] = photos
    np.save(tmp, arr, allow_pickle=True)
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_make_one, [(i, str(out / "data"), str(tmp)) for i in range(n)], chunksize=64)
    # rename the class folders to real wnids (the cache scans by wnid)
    wnids = imagenet_classes().wnids
    for k, d in enumerate(sorted((out / "data").iterdir())):
        d.rename(out / "data" / f"tmp{k}")
    for k, d in enumerate(sorted((out / "data").iterdir(), key=lambda p: int(p.name[3:]))):
        d.rename(out / "data" / wnids[k])
    tmp.unlink()
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--num_images", type=int, default=50000 if torch.cuda.is_available() else 2000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--gpu_lanes", type=int, nargs="+", default=[4],
                   help="GPU first passes to time, each with this many of --workers on the GPU")
    p.add_argument("--gpu_only_lanes", type=int, help="also time a first pass with this many lanes, all on the GPU")
    p.add_argument("--repeat", type=int, default=1, help="time each first pass this many times (median kept)")
    p.add_argument("--photos", type=Path, help="a folder of photos to cut from (and to compare GPU/PIL pixels on)")
    p.add_argument("--network", help="a network for the top-1 check of GPU-decoded pixels (e.g. efficientnet_lite0)")
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--workdir", type=Path, help="where the synthetic folder goes (default: a temporary folder)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from utils.data.cache import open_dataset
    from utils.data.preprocess import Normalizer, Preprocess

    pp = Preprocess()
    gpu = torch.cuda.is_available()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="arttrt-datapath-"))
    # CUDA stays uninitialised in this process until the first passes are done, so PIL lanes can be forked
    results: dict = {"num_images": args.num_images, "workers": args.workers, "gpu": gpu}
    photos = source_photos(args.photos)
    results["make_s"] = round(make_folder(work, args.num_images, photos, args.workers), 2)
    sizes = [f.stat().st_size for f in (work / "data").rglob("*.JPEG")]
    results["mean_jpeg_kb"] = round(sum(sizes) / len(sizes) / 1024, 1)
    print(f"made {len(sizes)} JPEGs ({results['mean_jpeg_kb']} KB mean) in {results['make_s']} s")

    def first_pass(gpu_decode: bool, tag: str, decoder: str = "auto", lanes: int | None = None,
                   workers: int | None = None) -> object:
        """Times open_dataset building the cache (start-up included) --repeat times; keeps the median."""
        rates = []
        for rep in range(args.repeat):
            cache = work / f"cache-{tag}"
            if rep:
                shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            ds = open_dataset(work / "data", pp, cache_dir=cache, workers=workers or args.workers,
                              gpu_decode=gpu_decode, gpu_decoder=decoder, gpu_lanes=lanes)
            dt = time.perf_counter() - t0
            rates.append(round(len(ds) / dt, 1))
            print(f"first pass ({tag}): {len(ds) / dt:,.0f} images/s ({dt:.1f} s); decoder {ds.meta['decoder']}")
        results[f"first_pass_{tag}_images_per_s"] = float(np.median(rates))
        results[f"first_pass_{tag}_runs"] = rates
        results[f"first_pass_{tag}_decoder"] = ds.meta["decoder"]
        return ds

    ds_cpu = first_pass(False, f"cpu{args.workers}")
    results["cache_gb"] = round(ds_cpu.meta["bytes"] / 1e9, 3)
    print(f"cache size: {results['cache_gb']} GB")
    if gpu:
        import importlib.util

        decoders = ["torchvision"] + (["nvimgcodec"] if importlib.util.find_spec("nvidia.nvimgcodec") else [])
        cpu_rate = results[f"first_pass_cpu{args.workers}_images_per_s"]
        compare = min(len(ds_cpu), 5000)
        for dec in decoders:
            configs = [(f"gpu-{dec}-{lanes}lanes", lanes, None) for lanes in args.gpu_lanes]
            if args.gpu_only_lanes:  # every lane on the GPU, no PIL lanes beside
                n = args.gpu_only_lanes
                configs.append((f"gpu-{dec}-{n}of{n}lanes", n, n))
            for k, (tag, lanes, workers) in enumerate(configs):
                ds_gpu = first_pass(True, tag, dec, lanes, workers)
                results[f"{tag}_over_cpu"] = round(results[f"first_pass_{tag}_images_per_s"] / cpu_rate, 2)
                if k == 0:  # pixels do not depend on the lane count
                    a = np.asarray(ds_gpu.images[:compare], dtype=np.int16)
                    diff = np.abs(a - np.asarray(ds_cpu.images[:compare], dtype=np.int16))
                    results[f"gpu_{dec}_vs_pil_synthetic"] = {"images": compare, "mean_abs": float(diff.mean()),
                                                              "max_abs": int(diff.max())}
                    print(f"GPU ({dec}) vs PIL pixels on {compare} synthetic images: mean |diff| {diff.mean():.3f}, "
                          f"max {diff.max()}")
                del ds_gpu
                shutil.rmtree(work / f"cache-{tag}", ignore_errors=True)
    results["device"] = torch.cuda.get_device_name(0) if gpu else "cpu"
    # cached pass into normalised device tensors
    device = torch.device("cuda" if gpu else "cpu")
    norm = Normalizer(pp, device, torch.float16 if gpu else torch.float32)
    for rep in range(2):  # the first read warms the page cache
        t0 = time.perf_counter()
        n = 0
        for x, _, _ in ds_cpu.batches(256, pin=gpu):
            y = norm(x)
            n += y.shape[0]
        if gpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        results[f"cached_pass_{rep}_images_per_s"] = round(n / dt, 1)
        print(f"cached pass {rep}: {n / dt:,.0f} images/s into normalised {norm.dtype} tensors on {device}")
    if gpu and args.photos:
        for dec in decoders:
            results[f"photos_{dec}"] = photo_check(args.photos, pp, args, dec)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "datapath.json").write_text(json.dumps(results, indent=2, default=str))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in results.items() if "decoder" not in k}))
    return 0


def photo_check(photos: Path, pp: object, args: argparse.Namespace, decoder: str = "auto") -> dict:
    """GPU-decoded vs PIL pixels on labelled photos, and whether top-1 changes."""
    from utils.backends.torch_eager import TorchRunner
    from utils.data.cache import open_dataset
    from utils.measure.measurement import MeasureOptions
    from utils.measure.timing import measure
    from utils.models.networks import load_network

    out: dict = {}
    net = load_network(args.network, pretrained=args.pretrained) if args.network else None
    pp_net = net.preprocess if net else pp
    with tempfile.TemporaryDirectory() as tmp:
        a = open_dataset(photos, pp_net, cache_dir=Path(tmp) / "pil", gpu_decode=False, workers=1)
        b = open_dataset(photos, pp_net, cache_dir=Path(tmp) / "gpu", gpu_decode=True, gpu_decoder=decoder)
        diff = np.abs(np.asarray(a.images, np.int16) - np.asarray(b.images, np.int16))
        out.update({"images": len(a), "mean_abs": float(diff.mean()), "max_abs": int(diff.max()),
                    "gpu_decoded": b.meta["decoder"]["gpu"], "gpu_library": b.meta["decoder"].get("gpu_library")})
        if net is not None:
            preds = []
            for ds in (a, b):
                with TorchRunner(net, "cuda", "fp32") as r:
                    res = measure(r, ds, MeasureOptions(batch_size=1, progress=False), num_outputs=1000)
                preds.append(res.predictions)
                out[f"top1_{'pil' if ds is a else 'gpu'}"] = res.summary()["top1"]
            out["top1_changed_images"] = int((preds[0] != preds[1]).sum())
    print(f"GPU vs PIL on {photos}: {out}")
    return out


if __name__ == "__main__":
    sys.exit(main())
