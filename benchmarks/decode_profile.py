"""Where does the first pass spend its time? Stage timings of the GPU and CPU decode paths (a benchmark).

Times, per 1000 images of a folder: reading the files, the JPEG layout check, nvjpeg batched decoding,
the grouped resize + crop on the GPU, the copy back to the host; and PIL decoding + the same transform
on one CPU core, for comparison.

Usage:
    python benchmarks/decode_profile.py DIR [--num_images 5000] [--chunk 256]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("--num_images", type=int, default=5000)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--decoder", default="auto", choices=["auto", "nvimgcodec", "torchvision"])
    args = p.parse_args()
    from utils.datasets import _gpu_decodable, decode_pil, gpu_jpeg_decoder, transform_grouped, transform_uint8
    from utils.networks import Preprocess

    pp = Preprocess()
    library, decode = gpu_jpeg_decoder(args.decoder)
    files = sorted(args.folder.rglob("*.JPEG"))[: args.num_images]
    t = {"read": 0.0, "layout": 0.0, "decode_gpu": 0.0, "transform_gpu": 0.0, "to_host": 0.0}
    with cf.ThreadPoolExecutor(16) as pool:
        for start in range(0, len(files), args.chunk):
            t0 = time.perf_counter()
            datas = list(pool.map(lambda f: f.read_bytes(), files[start:start + args.chunk]))
            t1 = time.perf_counter()
            flags = [_gpu_decodable(d) for d in datas]
            t2 = time.perf_counter()
            imgs = [im for im in decode([d for d, ok in zip(datas, flags) if ok]) if im is not None]
            torch.cuda.synchronize()
            t3 = time.perf_counter()
            crops = transform_grouped(imgs, pp)
            torch.cuda.synchronize()
            t4 = time.perf_counter()
            host = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(crops)
            t5 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                t[k] += v
    n = len(files)
    cpu_n = min(500, n)
    t0 = time.perf_counter()
    for f in files[:cpu_n]:
        transform_uint8(decode_pil(f.read_bytes()), pp)
    cpu_one_core = (time.perf_counter() - t0) / cpu_n * 1000
    per_k = {k: round(v / n * 1000 * 1000, 1) for k, v in t.items()}  # ms per 1000 images
    total = sum(per_k.values())
    print(json.dumps({"decoder": library, "images": n, "ms_per_1000_images": per_k, "gpu_path_images_per_s": round(1e6 / total, 1),
                      "pil_one_core_ms_per_1000": round(cpu_one_core * 1000, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
