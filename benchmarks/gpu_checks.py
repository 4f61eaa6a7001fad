"""Checks of behaviour that only a GPU can show (a script for the borrowed GPU, printing what it saw):

  1. every run works on a CUDA stream of its own, not the legacy default stream (TensorRT's enqueueV3 on
     stream 0 would add synchronisations), on the device asked;
  2. a CUDA-graph capture that fails (a model that synchronises inside forward) leaves the run eager, with
     right accuracy, and the record says why;
  3. a cached dataset changed under a GPU run is caught by the on-device checksums and no figure is kept;
  4. the short batch of a fixed-shape runner on the GPU is padded, never recaptured.

Usage:
    python benchmarks/gpu_checks.py --dataset datasets/demo [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--out")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    from utils.backends.base import RunSpec
    from utils.backends.torch_eager import TorchRunner
    from utils.core.errors import ArtTRTError
    from utils.data.options import DataOptions
    from utils.measure.measurement import MeasureOptions
    from utils.models.networks import load_network
    from utils.study.validate import validate_one

    results: dict = {}
    net = load_network("efficientnet_lite0", pretrained=True)
    data = DataOptions(dataset=args.dataset, progress=False)
    ds = data.open(net.preprocess, net.num_classes)
    device = f"cuda:{torch.cuda.device_count() - 1}"

    # 1. the stream and device every runner sees
    seen = []
    real_infer = TorchRunner.infer

    def watching(self, x):  # type: ignore[no-untyped-def]
        seen.append((torch.cuda.current_stream().cuda_stream, torch.cuda.current_device(), str(x.device)))
        return real_infer(self, x)

    TorchRunner.infer = watching  # type: ignore[method-assign]
    rec, _ = validate_one(RunSpec("torch", "fp32", device=device), net, ds,
                          MeasureOptions(batch_size=8, progress=False), data=data)
    TorchRunner.infer = real_infer  # type: ignore[method-assign]
    rec = rec.as_dict()  # the record as written
    streams = {s for s, _, _ in seen}
    results["streams"] = {"default_stream_used": 0 in streams, "streams": len(streams),
                          "devices": sorted({d for _, d, _ in seen}), "tensor_devices": sorted({t for _, _, t in seen}),
                          "top1": rec["top1"], "record_gpu": rec["env"].get("gpu"), "device": rec["device"]}
    print("1. streams:", results["streams"], flush=True)

    # 2. a capture that fails: the forward synchronises (a host read), which CUDA graphs forbid
    class Syncing(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            if float(y.abs().sum()) < 0:  # never true; the .item() inside is what matters
                y = -y
            return y

    syncing = load_network("efficientnet_lite0", pretrained=True)
    syncing.model = Syncing(syncing.model)
    rec, _ = validate_one(RunSpec("torch", "fp32", device=device, cuda_graph=True), syncing, ds,
                          MeasureOptions(batch_size=8, progress=False), data=data)
    rec = rec.as_dict()  # the record as written
    results["capture_failure"] = {"cuda_graph": rec["cuda_graph"], "cuda_graph_error": rec["cuda_graph_error"],
                                  "top1": rec["top1"], "images": rec["images"]}
    print("2. capture failure:", results["capture_failure"], flush=True)

    # 3. the cache changed under a GPU run
    import utils.study.validate as validate

    real_measure = validate.measure

    def damage_then_measure(runner, dataset, *a, **k):  # type: ignore[no-untyped-def]
        row = int(np.prod(dataset.images.shape[1:]))
        with open(Path(dataset.meta["_sidecar"]).with_suffix(".u8"), "r+b") as f:
            f.seek(5 * row)
            f.write(bytes(row))
        return real_measure(runner, dataset, *a, **k)

    validate.measure = damage_then_measure
    try:
        validate_one(RunSpec("torch", "fp16", device=device), net, ds,
                     MeasureOptions(batch_size=8, progress=False), data=data)
        results["damaged_cache"] = "NOT CAUGHT"
    except ArtTRTError as err:
        results["damaged_cache"] = f"refused: {err}"
    validate.measure = real_measure
    print("3. damaged cache:", results["damaged_cache"], flush=True)
    ds = data.open(net.preprocess, net.num_classes)  # rebuilt
    rec, _ = validate_one(RunSpec("torch", "fp32", device=device, cuda_graph=True), net, ds,
                          MeasureOptions(batch_size=8, progress=False), data=data)
    rec = rec.as_dict()  # the record as written
    results["after_rebuild"] = {"top1": rec["top1"], "verified_images": rec["verified_images"],
                                "short_batch": rec["short_batch"], "cuda_graph": rec["cuda_graph"]}
    print("4. rebuilt, CUDA graph with a short batch:", results["after_rebuild"], flush=True)
    print(json.dumps(results))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_checks.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
