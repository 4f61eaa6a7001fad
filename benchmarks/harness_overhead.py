"""How much does ArtTRT's timing harness add? (a benchmark that prints figures, not a test)

For PyTorch fp16 resnet50 (random weights, channels_last) at batch 1, 32 and 256 it prints the harness's
latency-model (utils/measure/timing.py with the CUDA-graph runner) beside a bare CUDA-graph replay of the same
model timed with CUDA events, and the eager harness figure for reference. Target: the harness adds no
more than 3 % at batch 32 and 256.

Usage:
    python benchmarks/harness_overhead.py [--images 2048] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def bare_graph_ms(model: torch.nn.Module, bs: int, iters: int) -> float:
    """Median of per-replay times of a captured CUDA graph (no harness at all)."""
    x = torch.randn(bs, 3, 224, 224, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(g):
        model(x)
    for _ in range(10):
        g.replay()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--out")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    from utils.backends.torch_eager import TorchRunner
    from utils.data.cache import SyntheticDataset
    from utils.measure.measurement import MeasureOptions
    from utils.measure.timing import measure
    from utils.models.networks import load_network

    net = load_network("resnet50", seed=0)
    rows = []
    for bs in (1, 32, 256):
        n = max(args.images, bs * 40)
        ds = SyntheticDataset(n, 224, seed=0)
        opts = MeasureOptions(batch_size=bs, min_warmup_s=1.0, progress=False)
        with TorchRunner(net, "cuda", "fp16", channels_last=True, cuda_graph=True) as r:
            graph_res = measure(r, ds, opts).summary()
            bare = bare_graph_ms(r.model, bs, 200)
        with TorchRunner(net, "cuda", "fp16", channels_last=True) as r:
            eager_res = measure(r, ds, opts).summary()
        row = {"batch": bs, "harness_graph_p50_ms": graph_res["latency_model_p50"],
               "harness_graph_mean_ms": graph_res["latency_model_mean"], "bare_graph_p50_ms": bare,
               "overhead_percent": 100 * (graph_res["latency_model_p50"] / bare - 1),
               "harness_eager_p50_ms": eager_res["latency_model_p50"],
               "images_per_s_graph": graph_res["images_per_s"], "images_per_s_eager": eager_res["images_per_s"]}
        rows.append(row)
        print(json.dumps(row))
    print("\n| batch | harness latency-model p50 (graph) | bare CUDA-graph replay p50 | harness adds | eager p50 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['harness_graph_p50_ms']:.3f} ms | {r['bare_graph_p50_ms']:.3f} ms | "
              f"{r['overhead_percent']:+.1f} % | {r['harness_eager_p50_ms']:.3f} ms |")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "harness_overhead.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
