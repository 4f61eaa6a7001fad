"""ArtTRT's TensorRT build code against a real TensorRT builder: TensorRT-RTX's, the one that installs from PyPI and
builds on the borrowed H100/H200 (its runtime refuses compute capability 9.0). Prints what each step gave and writes
rtx_check.json; every figure is what the real library returned.

Steps (resnet18, random weights, exported by ArtTRT's own chain):
  1. a dynamic engine with one profile per batch size (1, 8, 32), TF32 cleared, a new timing cache;
  2. the same build again: the timing cache is reused;
  3. a timing cache file TensorRT cannot take (foreign bytes): replaced with a warning, the build goes on;
  4. a static ONNX batch of 8: built with no profile;
  5. a batch profile TensorRT refuses (min 8 > opt 4): one sentence quoting it;
  6. the runtime: TensorRTRunner's activation, and the inspector's read-back (plan_information): what the runtime said;
  7. a garbage plan loaded while another runtime is alive: TensorRT's error quoted (not "no message from TensorRT").

Usage:
    python benchmarks/rtx_check.py --out DIR
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rtx-check-"))
    os.environ.setdefault("ARTTRT_WEIGHTS_DIR", str(work / "weights"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from utils.backends.tensorrt import api
    from utils.backends.tensorrt.build import BuildSettings, build_serialized
    from utils.backends.tensorrt.engine_layers import engine_layers, engine_precision_counts, plan_information
    from utils.backends.tensorrt.runner import TensorRTRunner
    from utils.core.errors import ArtTRTError
    from utils.models.chain import onnx_for
    from utils.models.networks import load_network

    results: Dict[str, Any] = {}

    def step(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            value = fn()
            results[name] = {"ok": True, "value": value, "s": round(time.perf_counter() - t0, 2)}
        except ArtTRTError as err:
            results[name] = {"ok": False, "sentence": str(err), "s": round(time.perf_counter() - t0, 2)}
        except Exception as err:  # a real failure of ArtTRT's code against the real library: kept with its trace
            results[name] = {"ok": False, "bug": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-3000:]}
        print(f"{name}: {json.dumps(results[name], default=str)[:600]}", flush=True)

    step("module", lambda: {"loaded": api.load_tensorrt(), "gpu": api.gpu_identity(),
                            "has_init_plugins": hasattr(api.trt, "init_libnvinfer_plugins")})
    net = load_network("resnet18", seed=0)
    dyn, _ = onnx_for(net, (-1, 3, 224, 224))
    static, _ = onnx_for(net, (8, 3, 224, 224))
    tc = work / "timing.cache"
    plans: Dict[str, bytes] = {}

    def build(name: str, onnx: Path, profiles: Any, **kw: Any) -> Dict[str, Any]:
        plan, facts = build_serialized(onnx, BuildSettings("fp32", profiles, (3, 224, 224), timing_cache=tc, **kw))
        plans[name] = plan
        return {**facts, "plan_mib": round(len(plan) / 2**20, 1),
                "timing_cache_bytes": tc.stat().st_size if tc.is_file() else None}

    step("1 dynamic, profiles 1/8/32, TF32 cleared", lambda: build("dyn", dyn, ((1, 1, 1), (2, 8, 8), (9, 32, 32))))
    step("2 again: timing cache reused", lambda: build("dyn2", dyn, ((1, 1, 1), (2, 8, 8), (9, 32, 32))))
    tc.write_bytes(b"not a timing cache of any TensorRT")
    step("3 foreign timing cache", lambda: build("dyn3", dyn, ((1, 32, 32),)))
    step("4 static batch 8, TF32 kept", lambda: build("static", static, ((1, 1, 1),), tf32=True))
    step("5 a profile TensorRT refuses", lambda: build("bad", dyn, ((8, 4, 8),)))

    engine = work / "dyn.engine"
    if "dyn" in plans:
        engine.write_bytes(plans["dyn"])

        def activate() -> Dict[str, Any]:
            with TensorRTRunner(engine, net.preprocess, "fp32") as r:
                return {"ranges": r.ranges, "served": r.served(), "info": r.info()}

        step("6a runtime: TensorRTRunner", activate)
        step("6b runtime: inspector read-back",
             lambda: engine_precision_counts(engine_layers(plan_information(plans["dyn"], (8, 3, 224, 224)))))

    def error_quoted() -> Dict[str, Any]:
        runtime = api.trt.Runtime(api.logger())  # alive while the next runtime fails: TensorRT keeps one logger
        garbage = work / "garbage.engine"
        garbage.write_bytes(b"not a serialized engine " * 64)
        try:
            TensorRTRunner(garbage, net.preprocess, "fp32").activate()
            return {"unexpected": "a garbage plan loaded"}
        finally:
            del runtime

    step("7 an error while a runtime lives", error_quoted)
    (out / "rtx_check.json").write_text(json.dumps(results, indent=1, default=str))
    bugs = [k for k, v in results.items() if "bug" in v]
    print(f"steps: {len(results)}; failures that are ArtTRT bugs: {bugs or 'none'}")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
