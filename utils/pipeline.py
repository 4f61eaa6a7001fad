"""What main.py does, as functions: build a runner for (backend, precision), validate it, record it.

Nothing here imports onnxruntime or tensorrt at module level; the runner modules do, lazily.

Usage:
    net = load_network("efficientnet_lite0", pretrained=True)
    ds = open_dataset(Path("datasets/demo"), net.preprocess)
    rec = validate_one(RunSpec("onnxrt", "fp32"), net, ds, opts)
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from utils.datasets import CachedDataset
from utils.errors import ArtTRTError
from utils.measure import MeasureOptions, MeasureResult, measure
from utils.networks import Network
from utils.records import gpu_facts, make_record, write_record
from utils.registry import check_combination
from utils.runners.base import Runner

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One backend and precision, with the options that change how it is built or run."""

    backend: str
    precision: str = "fp32"
    device: str = "cpu"
    provider: str = "cpu"  # onnxrt only
    cuda_graph: bool = False
    channels_last: bool = False
    compile_mode: str = "default"
    onnx: Optional[str] = None  # an existing ONNX file instead of an export
    engine: Optional[str] = None  # an existing engine file (tensorrt)
    input_shape: Tuple[int, int, int, int] = (-1, 3, 224, 224)
    calib: Dict[str, Any] = field(default_factory=dict)  # int8/fp8 calibration settings
    autocast_io_fp16: bool = False
    trt: Dict[str, Any] = field(default_factory=dict)  # build options for TensorRT


def spec_from_args(args: argparse.Namespace, backend: str, precision: str, net: Network) -> RunSpec:
    """A RunSpec from main.py's arguments."""
    shape = tuple(args.input_shape) if args.input_shape else (-1, 3, net.preprocess.crop, net.preprocess.crop)
    device = args.device
    provider = getattr(args, "provider", None) or ("cuda" if device.startswith("cuda") else "cpu")
    return RunSpec(backend=backend, precision=precision, device=device, provider=provider,
                   cuda_graph=getattr(args, "cuda_graph", False), channels_last=getattr(args, "channels_last", False),
                   compile_mode=getattr(args, "compile_mode", "default"), onnx=getattr(args, "onnx", None),
                   engine=getattr(args, "engine", None), input_shape=shape,  # type: ignore[arg-type]
                   calib={"method": getattr(args, "calib_method", "entropy"), "size": getattr(args, "calib_size", 500),
                          "dataset": getattr(args, "calib_dataset", None) or getattr(args, "dataset", None),
                          "seed": getattr(args, "seed", 0), "tool": getattr(args, "quantizer", "auto")},
                   autocast_io_fp16=getattr(args, "fp16_io", False),
                   trt={"workspace_gb": getattr(args, "workspace", None), "timing_cache": getattr(args, "timing_cache", None),
                        "min_batch": getattr(args, "min_batch", None), "opt_batch": getattr(args, "opt_batch", None),
                        # an engine must take every batch this run will feed it
                        "max_batch": getattr(args, "max_batch", None)
                        or max(getattr(args, "batch_sizes", None) or [getattr(args, "batch_size", 1)]),
                        "force": getattr(args, "force", False),
                        "weak_typing": getattr(args, "weak_typing", False)})


def onnx_model_for(spec: RunSpec, net: Network) -> Tuple[Path, Dict[str, Any]]:
    """The ONNX file a spec runs: the user's, or the cached export, converted to spec.precision."""
    from utils.artefacts import onnx_for
    from utils.onnx_export import check_input_shape

    if spec.onnx:
        meta = check_input_shape(spec.onnx, spec.input_shape)
        if meta.get("num_classes") not in (None, net.num_classes):
            raise ArtTRTError(f"ONNX file {spec.onnx} has {meta['num_classes']} classes, the network "
                              f"{net.num_classes}")
        path, facts = Path(spec.onnx), {"prepare_s": 0.0, "cached": True}
    else:
        path, facts = onnx_for(net, spec.input_shape)
    if spec.precision == "fp32":
        return path, {"export_s": facts["prepare_s"], "prepare_s": facts["prepare_s"]}
    from utils.precision import convert_precision

    out, conv = convert_precision(path, spec.precision, net, calib=spec.calib, io_fp16=spec.autocast_io_fp16)
    conv["export_s"] = facts["prepare_s"]
    conv["prepare_s"] = round(facts["prepare_s"] + conv.get("convert_s", 0.0) + conv.get("calibrate_s", 0.0), 3)
    return out, conv


def make_runner(spec: RunSpec, net: Network) -> Tuple[Runner, Dict[str, Any]]:
    """Builds (and caches) what the spec needs, then returns its runner and preparation facts."""
    check_combination(spec.backend, spec.precision, spec.device)
    if spec.backend == "torch":
        from utils.runners.torch_runner import TorchRunner

        return TorchRunner(net, spec.device, spec.precision, spec.channels_last, spec.cuda_graph), {"prepare_s": 0.0}
    if spec.backend == "compile":
        from utils.runners.compile_runner import CompileRunner

        return CompileRunner(net, spec.device, spec.precision, spec.compile_mode, net.convolutional), {"prepare_s": 0.0}
    if spec.backend == "onnxrt":
        from utils.runners.onnxrt_runner import OnnxRuntimeRunner

        if spec.precision == "fp8" and spec.provider == "cpu":  # refused before minutes of calibration
            from utils.precision import ORT_FP8_NOTE

            raise ArtTRTError(ORT_FP8_NOTE)
        path, facts = onnx_model_for(spec, net)
        runner = OnnxRuntimeRunner(path, net.preprocess, spec.provider, spec.precision, facts=facts)
        return runner, facts
    if spec.backend == "tensorrt":
        from utils.trt_pipeline import tensorrt_runner

        return tensorrt_runner(spec, net)
    raise ArtTRTError(f"unknown backend {spec.backend}")


def validate_one(spec: RunSpec, net: Network, dataset: CachedDataset, opts: MeasureOptions,
                 output: Optional[Path], num_outputs: Optional[int], telemetry: Any = None,
                 extra: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Any], MeasureResult]:
    """Prepares, validates and times one spec at one batch size; writes and returns its record."""
    import torch

    cuda = spec.device.startswith("cuda") or spec.backend == "tensorrt"
    if cuda and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if telemetry is not None:
        telemetry.phase = "build"
    runner, facts = make_runner(spec, net)
    if telemetry is not None:
        telemetry.phase = "load"
    clock_start = gpu_facts().get("sm_clock_mhz")
    with runner:
        load_s = time.perf_counter() - t0
        crop = net.preprocess.crop
        t1 = time.perf_counter()
        runner.prepare((opts.batch_size, 3, crop, crop))
        compile_s = time.perf_counter() - t1
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda and torch.cuda.is_available() else None
        result = measure(runner, dataset, opts, num_outputs=num_outputs, telemetry=telemetry)
        info = runner.info()
    if spec.backend == "compile":
        facts["compile_s"] = round(compile_s, 3)
        facts["prepare_s"] = round(float(facts.get("prepare_s") or 0.0) + compile_s, 3)
    fields: Dict[str, Any] = {
        "network": net.name, "weights": net.weights, "backend": spec.backend, "precision": spec.precision,
        "device": str(runner.device), "batch_size": opts.batch_size,
        "dataset": dataset.meta.get("root", "synthetic"),
        "provider": spec.provider if spec.backend == "onnxrt" else None,
        "cuda_graph": runner.cuda_graph or None,  # what ran, not what was asked
        "compile_mode": spec.compile_mode if spec.backend == "compile" else None}
    fields.update(result.summary())
    fields.update(info)
    fields.update({"prepare_s": facts.get("prepare_s"), "load_s": round(load_s, 3),
                   "preparation": {k: v for k, v in facts.items() if k != "prepare_s"},
                   "prepare_peak_gpu_mb": round(peak, 1) if peak is not None else None,
                   "sm_clock_start_mhz": clock_start, "sm_clock_end_mhz": gpu_facts().get("sm_clock_mhz")})
    fields.update(extra or {})
    rec = make_record("validate", **fields)
    if output is not None:
        path = write_record(rec, output / "records")
        rec["_path"] = str(path)
    if rec.get("latency_unstable"):
        log.warning("%s bs%d: latency varies by more than 2.5%% (CV model %.1f%%, all %.1f%%): "
                    "treat the mean with care", runner.name, opts.batch_size,
                    rec.get("latency_model_cv_percent") or 0, rec.get("latency_all_cv_percent") or 0)
    return rec, result
