"""Runs ArtTRT's TensorRT builder code for real where a TensorRT builder exists (a benchmark, not a test).

On the H200 this project borrows, only TensorRT-RTX is installable; its builder runs there (its runtime
refuses compute capability 9.0). This drives utils/backends/tensorrt/engine.py as build_trt.py does:
strongly typed fp32 / fp16 (ModelOpt AutoCast file) / int8 (ONNX Runtime Q/DQ, biases in float) builds
with a dynamic-batch profile and a timing cache, the engine cache and sidecar, the weak-typing refusal,
a parser rejection (int32 biases) with the node named, and the runtime's answer.

Usage:
    python benchmarks/trt_builder_check.py --fp16_onnx FILE --dataset datasets/demo --out DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.core.errors import ArtTRTError, setup_logging  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--fp16_onnx", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    setup_logging()
    from utils.backends.tensorrt.engine import EngineShapes, engine_for, environment_key
    from utils.data.options import DataOptions
    from utils.models.chain import onnx_for
    from utils.models.networks import load_network
    from utils.models.paths import weights_dir
    from utils.models.precision import CalibOptions, convert_precision

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"environment": environment_key()}
    print("TensorRT:", results["environment"])
    net = load_network("mobilenet_v2", seed=0)
    fp32, _ = onnx_for(net, (-1, 3, 224, 224))
    int8, qfacts = convert_precision(fp32, "int8", net, CalibOptions(calib_method="max", calib_size=20, quantizer="ort"),
                                     DataOptions(dataset=args.dataset))
    shapes = EngineShapes.of((-1, 3, 224, 224), 1, 32, 256)
    folder = weights_dir() / "engines"
    for prec, onnx_file in (("fp32", fp32), ("fp16", Path(args.fp16_onnx)), ("int8", int8)):
        t0 = time.perf_counter()
        try:
            engine, facts = engine_for(onnx_file, prec, shapes, folder)
            again, facts2 = engine_for(onnx_file, prec, shapes, folder)
            results[prec] = {"engine_mb": round(engine.stat().st_size / 1e6, 2), "build_s": facts["build_s"],
                             "route": facts["route"], "network_layers": facts["network_layers"],
                             "timing_cache_reused": facts["timing_cache_reused"],
                             "second_call_cached": facts2.get("cached") and again == engine,
                             "sidecar_keys": sorted(json.loads(engine.with_suffix(".json").read_text()))}
        except ArtTRTError as err:
            results[prec] = {"error": str(err)}
        results[prec]["wall_s"] = round(time.perf_counter() - t0, 2)
        print(prec, results[prec])
    # a rebuild with the timing cache now warm
    t0 = time.perf_counter()
    _, f = engine_for(fp32, "fp32", shapes, folder, force=True)
    results["fp32_rebuild_with_timing_cache"] = {"build_s": f["build_s"], "timing_cache_reused": f["timing_cache_reused"]}
    print("fp32 rebuild:", results["fp32_rebuild_with_timing_cache"])
    try:
        engine_for(fp32, "fp16", shapes, folder, weak_typing=True)
        results["weak_typing"] = "built"
    except ArtTRTError as err:
        results["weak_typing"] = f"refused: {err}"
    print("weak typing:", results["weak_typing"])
    # int32 biases (ONNX Runtime's default) must be rejected by the parser with the node named
    try:
        import subprocess

        bad = out / "int32bias.onnx"
        code = ("import numpy as np\nfrom onnxruntime.quantization import *\n"
                "from onnxruntime.quantization.shape_inference import quant_pre_process\n"
                f"quant_pre_process('{fp32}', '{out}/pre.onnx')\n"
                "class R(CalibrationDataReader):\n def __init__(s): s.i=0\n"
                " def get_next(s):\n  s.i+=1\n  return None if s.i>2 else {'input': np.random.rand(1,3,224,224).astype(np.float32)}\n"
                f"quantize_static('{out}/pre.onnx', '{bad}', R(), quant_format=QuantFormat.QDQ, per_channel=True)\n")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        engine_for(bad, "int8", shapes, folder)
        results["int32_bias"] = "built (unexpected)"
    except ArtTRTError as err:
        results["int32_bias"] = f"refused: {err}"
    print("int32 bias:", results["int32_bias"][:300])
    try:
        from utils.backends.tensorrt.runner import TensorRTRunner

        engine, _ = engine_for(fp32, "fp32", shapes, folder)
        with TensorRTRunner(engine, net.preprocess, "fp32") as r:
            import torch

            y = r.infer(r.normalizer(torch.zeros(2, 3, 224, 224, dtype=torch.uint8)))
            results["runtime"] = f"ran: output {tuple(y.shape)}"
    except Exception as err:
        results["runtime"] = f"{type(err).__name__}: {err}"
    print("runtime:", results["runtime"][:300])
    (out / "trt_builder_check.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
