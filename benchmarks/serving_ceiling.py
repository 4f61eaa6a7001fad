"""The serving harness must not be what it measures (a benchmark that prints figures, not a test).

A near-free model goes through the same system under test as every runner of main.py --scenario (LoadGen's fast
SUT, the dynamic batcher, the query sample library on the device, one gather per batch, one top-1 copy back):
this prints the most samples/s LoadGen's Offline scenario sees, and the highest Server QPS whose p99 latency is
within the bound (the same bisection as --find_peak). Target on an H200 host: at least 4x the best runner's Offline
rate (ResNet-50 torch.compile fp16, ~25,700 images/s measured 2026-12-02), i.e. about 103,000 samples/s.

Usage:
    python benchmarks/serving_ceiling.py [--device cuda] [--max_batch 256] [--duration 3] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET_X = 4.0
BEST_RUNNER_OFFLINE = 25_700.0  # ResNet-50 torch.compile fp16 on the H200, 2026-12-02 (the timing loop's figure)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max_batch", type=int, default=256)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per LoadGen run")
    p.add_argument("--latency_bound_ms", type=float, default=15.0)
    p.add_argument("--num_images", type=int, default=4096)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--out", help="folder for serving_ceiling.json and LoadGen's logs")
    args = p.parse_args()
    from utils.data.cache import SyntheticDataset
    from utils.measure.serving import DeviceSamples, ServeOptions, buckets, serve

    device = torch.device(args.device)
    ds = SyntheticDataset(args.num_images, args.crop, seed=0)
    samples = DeviceSamples(ds, len(ds), device)

    def near_free(idx: np.ndarray) -> np.ndarray:  # the harness's own work: gather on the device, top-1 back
        x = samples.gather(idx)
        return x[:, 0, 0, 0].to(torch.int32).cpu().numpy()

    folder = Path(args.out) / "serving-ceiling" if args.out else Path(tempfile.mkdtemp(prefix="ceiling-"))
    sizes = buckets(args.max_batch, lambda b: True)
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    rows = {}
    for scenario, extra in (("offline", {}), ("server", {"find_peak": True})):
        opts = ServeOptions(scenario, max_batch=args.max_batch, duration_s=args.duration,
                            latency_bound_ms=args.latency_bound_ms, **extra)
        rows[scenario] = serve(near_free, samples, ds.labels, len(ds), opts, folder / scenario, sizes, stream)
    offline, server = rows["offline"], rows["server"]
    peak = server.get("peak_qps")
    result = {"device": str(torch.cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
              "max_batch": args.max_batch, "duration_s": args.duration, "latency_bound_ms": args.latency_bound_ms,
              "offline_samples_per_s": offline.get("samples_per_s"), "offline_valid": offline.get("loadgen_valid"),
              "server_peak_qps": peak, "server_p99_ms_at_peak": server.get("latency_ms", {}).get("p99"),
              "server_steps": [(s["target_qps"], s["loadgen_valid"], s["latency_ms"].get("p99"))
                               for s in server.get("peak_steps") or []],
              "x_best_runner_offline": round(peak / BEST_RUNNER_OFFLINE, 2) if peak else None}
    print(json.dumps(result))
    print(f"harness ceiling on {result['device']}: Offline {offline.get('samples_per_s')} samples/s; Server "
          f"{peak} QPS at p99 <= {args.latency_bound_ms:g} ms (p99 {result['server_p99_ms_at_peak']} ms); "
          f"{result['x_best_runner_offline']}x the best runner's Offline rate (target {TARGET_X:g}x)")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "serving_ceiling.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
