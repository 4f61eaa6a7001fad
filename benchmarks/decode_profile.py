"""Where does the first pass spend its time, and which GPU decoding set-up is fastest? (a benchmark)

On a folder of JPEGs, prints images/s for each stage and variant, each over the same files held in memory:
  read        reading the files (16 threads of one process)
  pil/*       PIL decode + transform in --workers forked processes, not writing, or writing rows with pwrite
              into a sparse file, a preallocated (fallocate) one, or one in /dev/shm
  write-only/*  the same writes without decoding
  decode/*    GPU JPEG decoding alone: torchvision (nvJPEG) and, where installed, nvImageCodec (hw = the GPU's
              JPEG engines, hw+cuda = those then nvJPEG CUDA), on 1 or 2 threads
  decode+resize/*  decoding then the batched transform (utils.data.resample.transform_padded)
Usage:
    python benchmarks/decode_profile.py DIR [--num_images 10000] [--chunk 256] [--out DIR]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.data.preprocess import Preprocess  # noqa: E402

PP = Preprocess()


Decode = Callable[[List[bytes]], List[Optional[torch.Tensor]]]


def nvimgcodec_engines_only() -> Decode:
    """nvImageCodec with the hardware JPEG engines alone (ArtTRT's own decoder adds nvJPEG CUDA behind them)."""
    from nvidia import nvimgcodec

    dec = nvimgcodec.Decoder(backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
    params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB,
                                     sample_format=nvimgcodec.SampleFormat.I_RGB)

    def decode(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
        stream = torch.cuda.current_stream().cuda_stream
        ims = dec.decode([nvimgcodec.CodeStream(d) for d in datas], params=params, cuda_stream=stream)
        return [None if im is None else torch.as_tensor(im, device="cuda") for im in ims]

    return decode


def run_lanes(make: Callable[[], Decode], datas: List[bytes], chunk: int, lanes: int,
              then: Callable[[List[torch.Tensor]], Any] = lambda x: x) -> float:
    """images/s of `lanes` threads, each with its own decoder and CUDA stream, taking chunks in turn."""
    decoders = [make() for _ in range(lanes)]
    streams = [torch.cuda.Stream() for _ in range(lanes)]
    def decoded(k: int, part: List[bytes]) -> List[torch.Tensor]:
        return [im for im in decoders[k](part) if im is not None]

    for k, s in enumerate(streams):  # warm-up: allocations, handles
        with torch.cuda.stream(s):
            then(decoded(k, datas[:chunk]))
    torch.cuda.synchronize()
    starts = list(range(0, len(datas), chunk))

    def lane(k: int) -> int:
        n = 0
        with torch.cuda.stream(streams[k]):
            for start in starts[k::lanes]:
                out = then(decoded(k, datas[start:start + chunk]))
                n += len(out)
            streams[k].synchronize()
        return n

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(lanes) as pool:
        n = sum(pool.map(lane, range(lanes)))
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _pil_chunk(args: tuple) -> int:
    """PIL decode + transform of a chunk of files (or stand-in rows), written with pwrite into rows of `target`."""
    paths, first, target, decode = args
    torch.set_num_threads(1)
    from utils.data.decode import decode_pil
    from utils.data.preprocess import transform_uint8

    row = np.zeros((3, PP.crop, PP.crop), np.uint8)
    fd = os.open(target, os.O_WRONLY) if target else None
    for k, path in enumerate(paths):
        if decode:
            row = transform_uint8(decode_pil(Path(path).read_bytes()), PP).numpy()
        if fd is not None:
            os.pwrite(fd, row.tobytes(), (first + k) * row.nbytes)
    if fd is not None:
        os.close(fd)
    return len(paths)


def pil_pool(files: List[Path], workers: int, target: str | None, decode: bool = True,
             allocate: bool = False) -> float:
    """images/s of `workers` forked processes taking chunks of 64 files."""
    if target:
        with open(target, "wb") as f:
            size = len(files) * 3 * PP.crop * PP.crop
            os.posix_fallocate(f.fileno(), 0, size) if allocate else f.truncate(size)
    tasks = [([str(f) for f in files[i:i + 64]], i, target, decode) for i in range(0, len(files), 64)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_pil_chunk, [([str(files[0])], 0, None, True)] * workers)  # start-up
        t0 = time.perf_counter()
        n = sum(pool.map(_pil_chunk, tasks))
    rate = n / (time.perf_counter() - t0)
    if target:
        os.unlink(target)
    return rate


def gpu_variants(datas: List[bytes], chunk: int, report: Callable[[str, float], None]) -> None:
    """ArtTRT's own GPU decoders (utils.data.decode.gpu_jpeg_decoder), alone and with the batched transform."""
    import importlib.util

    from utils.data.decode import gpu_jpeg_decoder
    from utils.data.resample import transform_padded

    variants: Dict[str, Tuple[Callable[[], Decode], bool]] = {
        "torchvision": (lambda: gpu_jpeg_decoder("torchvision")[1], False)}
    if importlib.util.find_spec("nvidia.nvimgcodec"):
        variants["nvimgcodec-hw"] = (nvimgcodec_engines_only, True)
        variants["nvimgcodec-hw+cuda"] = (lambda: gpu_jpeg_decoder("nvimgcodec")[1], True)
    for name, (make, _) in variants.items():
        for lanes in (1, 2):
            try:
                report(f"decode/{name}/{lanes}", run_lanes(make, datas, chunk, lanes))
            except Exception as err:  # a backend missing on this GPU: say so and go on
                print(f"decode/{name}/{lanes}: {type(err).__name__}: {err}")
    for name in ("torchvision", "nvimgcodec-hw+cuda"):
        if name in variants:
            make, hwc = variants[name]
            report(f"decode+resize/{name}/1", run_lanes(make, datas, chunk, 1,
                                                        lambda ims: transform_padded(ims, PP, hwc=hwc)))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("--num_images", type=int, default=10000)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cpu_only", action="store_true", help="only the PIL and write figures")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    files = sorted(f for f in args.folder.rglob("*") if f.suffix.lower() in (".jpeg", ".jpg"))[: args.num_images]
    if not files:
        print(f"error: no JPEG files under {args.folder}", file=sys.stderr)
        return 2
    res: Dict[str, Any] = {"images": len(files), "chunk": args.chunk}

    def report(key: str, value: float) -> None:
        res[key] = round(value, 1)
        print(f"{key:32s} {value:10,.0f} images/s", flush=True)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(16) as pool:
        datas = list(pool.map(lambda f: f.read_bytes(), files))
    report("read (16 threads)", len(files) / (time.perf_counter() - t0))

    cache_dir = Path(os.environ.get("ARTTRT_CACHE_DIR", tempfile.gettempdir()))
    cache_dir.mkdir(parents=True, exist_ok=True)
    w = args.workers
    report(f"pil/{w}procs/no-write", pil_pool(files, w, None))
    report(f"pil/{w}procs/pwrite-sparse", pil_pool(files, w, str(cache_dir / "p.u8")))
    report(f"pil/{w}procs/pwrite-fallocated", pil_pool(files, w, str(cache_dir / "p.u8"), allocate=True))
    if Path("/dev/shm").is_dir():
        report(f"pil/{w}procs/pwrite-dev-shm", pil_pool(files, w, "/dev/shm/arttrt-p.u8"))
    report(f"write-only/{w}procs/pwrite-sparse", pil_pool(files, w, str(cache_dir / "p.u8"), decode=False))
    report(f"write-only/{w}procs/pwrite-fallocated", pil_pool(files, w, str(cache_dir / "p.u8"), decode=False,
                                                               allocate=True))
    if torch.cuda.is_available() and not args.cpu_only:
        gpu_variants(datas, args.chunk, report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "decode_profile.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
