"""TensorRT engine building, written against the documented TensorRT 10 / 11 Python API.

The same code drives `tensorrt` (10.x, 11.x) or, where only that is installed, TensorRT-RTX
(`tensorrt_rtx`, or `tensorrt_rtx_bindings` when only its bindings wheel is installed).
Routes, chosen by feature detection:
  strong typing  the ONNX file carries its precision (AutoCast fp16/bf16, Q/DQ int8/fp8): the network
                 is created STRONGLY_TYPED where that flag exists (TensorRT 11 and TensorRT-RTX are
                 always strongly typed). The only route on TensorRT 11; valid on 10.x.
  weak typing    an fp32 ONNX file plus BuilderFlag.FP16/BF16/INT8 (+ an entropy calibrator fed by
                 ArtTRT's calibration images): only where the installed TensorRT still has those flags.
This module is type-checked by mypy against tensorrt-stubs (TensorRT 10.13); it cannot run on the
machines ArtTRT is built on, so it stays small.

Usage:
    mod = load_tensorrt()
    plan, facts = build_serialized(Path("x-int8.onnx"), BuildSettings("int8", (1,3,224,224), (32,3,224,224), (256,3,224,224)))
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from utils.errors import ArtTRTError
from utils.fileio import atomic_path

if TYPE_CHECKING:
    import tensorrt as trt
else:
    trt = None  # bound by load_tensorrt()

log = logging.getLogger(__name__)

MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")
INSTALL_HINT = ("TensorRT is not installed: pip install tensorrt-cu13 (or tensorrt-cu12) from NVIDIA's package "
                "index, or on RTX GPUs pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings")
WEAK_FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}


def load_tensorrt() -> Tuple[str, str]:
    """Imports the first TensorRT module present; returns (module name, version)."""
    global trt
    if trt is None:
        errors = []
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError as err:
                errors.append(f"{name}: {err}")
                continue
            # A folder of type stubs (tensorrt-stubs) imports as an empty namespace package: not TensorRT.
            if hasattr(mod, "Builder") and hasattr(mod, "__version__"):
                globals()["trt"] = mod
                break
            errors.append(f"{name}: no Builder (stubs only?)")
        else:
            log.debug("TensorRT imports failed: %s", errors)
            raise ArtTRTError(INSTALL_HINT)
    return str(trt.__name__), str(trt.__version__)


def module_object() -> Any:
    """The loaded TensorRT module (for modules that bind it the same way)."""
    return trt


def make_logger(verbose: bool = False) -> trt.ILogger:
    """A logger that prints warnings and errors and keeps the errors, so a failure can quote TensorRT."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING or verbose:
                log.warning("TensorRT: %s", msg)

    return CollectingLogger()


def last_errors(logger: trt.ILogger) -> str:
    """TensorRT's own last error messages, for a one-sentence failure."""
    errors: List[str] = getattr(logger, "errors", [])
    return "; ".join(e.strip() for e in errors[-2:]) or "no message from TensorRT"


def has_weak_typing() -> bool:
    """TensorRT 10.x keeps BuilderFlag.FP16/INT8 and the calibrators; TensorRT 11 and TensorRT-RTX do not."""
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt, "IInt8EntropyCalibrator2")


@dataclass
class BuildSettings:
    precision: str
    min_shape: Tuple[int, ...]
    opt_shape: Tuple[int, ...]
    max_shape: Tuple[int, ...]
    weak_typing: bool = False
    workspace_bytes: Optional[int] = None
    timing_cache: Optional[Path] = None
    calib_data: Optional[np.ndarray] = None
    calib_cache: Optional[Path] = None
    facts: Dict[str, Any] = field(default_factory=dict)


def parse_onnx(builder: trt.Builder, logger: trt.ILogger, onnx_path: Path,
               strongly_typed: bool) -> Tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Parses an ONNX file; a parser error names the ONNX node it refused."""
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors: List[str] = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node_name() or err.node()}: {err.desc()}")
        raise ArtTRTError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors or ["no detail"]))
    return network, parser


def make_entropy_calibrator(data: np.ndarray, batch_size: int, cache_file: Path) -> trt.IInt8Calibrator:
    """TensorRT 10's entropy calibrator fed by ArtTRT's calibration images (device memory from torch)."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.current: Optional[torch.Tensor] = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            if self.index >= len(data):
                return None  # type: ignore[return-value]  # the documented end-of-data answer
            chunk = data[self.index:self.index + batch_size]
            self.index += batch_size
            self.current = torch.from_numpy(np.ascontiguousarray(chunk)).cuda()
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> bytes:
            return cache_file.read_bytes() if cache_file.is_file() else None  # type: ignore[return-value]

        def write_calibration_cache(self, cache: Any) -> None:
            with atomic_path(cache_file) as tmp:
                tmp.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _load_timing_cache(config: trt.IBuilderConfig, path: Optional[Path]) -> bool:
    """Loads a timing cache into the config; one from another TensorRT version or GPU is refused, not fatal."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if config.set_timing_cache(cache, False):
        return bool(blob)
    log.warning("timing cache %s was made by another TensorRT version or GPU: starting a fresh one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return False


def build_serialized(onnx_path: Path, s: BuildSettings, verbose: bool = False) -> Tuple[bytes, Dict[str, Any]]:
    """Parses and builds; returns the serialized engine and facts (route, seconds, timing cache use)."""
    logger = make_logger(verbose)
    builder = trt.Builder(logger)
    weak = s.weak_typing and s.precision != "fp32"
    if weak and not has_weak_typing():
        raise ArtTRTError(f"{trt.__name__} {trt.__version__} has no weak typing (BuilderFlag.{WEAK_FLAGS[s.precision]} "
                          "and the calibrators were removed in TensorRT 11): build from an ONNX file that carries "
                          "its precision (the default, without --weak_typing)")
    network, parser = parse_onnx(builder, logger, onnx_path, strongly_typed=not weak)
    config = builder.create_builder_config()
    if s.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_bytes)
    inp = network.get_input(0)
    dynamic = -1 in dims_tuple(inp.shape)
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, trt.Dims(list(s.min_shape)), trt.Dims(list(s.opt_shape)),
                          trt.Dims(list(s.max_shape)))
        config.add_optimization_profile(profile)
    if weak:
        config.set_flag(getattr(trt.BuilderFlag, WEAK_FLAGS[s.precision]))
        if s.precision == "int8":
            if s.calib_data is None or s.calib_cache is None:
                raise ArtTRTError("weak-typed int8 needs calibration images: pass --dataset")
            config.int8_calibrator = make_entropy_calibrator(s.calib_data, int(s.opt_shape[0]), s.calib_cache)
            if dynamic:
                config.set_calibration_profile(profile)
    reused = _load_timing_cache(config, s.timing_cache)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise ArtTRTError(f"TensorRT returned no engine for {onnx_path.name} ({last_errors(logger)}): "
                          "nothing was written")
    if s.timing_cache is not None:
        with atomic_path(s.timing_cache) as tmp:
            tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    facts = {"route": "weak typing (builder flags)" if weak else "strongly typed", "build_s": round(seconds, 3),
             "timing_cache": str(s.timing_cache) if s.timing_cache else None, "timing_cache_reused": reused,
             "network_layers": network.num_layers, "module": trt.__name__, "tensorrt_version": trt.__version__}
    del parser
    return bytes(memoryview(plan)), facts


def dims_tuple(dims: trt.Dims) -> Tuple[int, ...]:
    """A Dims as a plain tuple (-1 marks a dynamic dimension)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def engine_layer_count(engine: trt.ICudaEngine) -> int:
    """Layers from the engine inspector where it answers in JSON, else ICudaEngine.num_layers."""
    try:
        inspector = engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        layers = info.get("Layers") if isinstance(info, dict) else None
        if isinstance(layers, list):
            return len(layers)
    except (AttributeError, ValueError, RuntimeError):
        pass
    return int(engine.num_layers)


def gpu_identity() -> Dict[str, str]:
    """GPU name and compute capability: part of every engine and timing-cache key."""
    import torch

    if not torch.cuda.is_available():
        raise ArtTRTError("TensorRT needs an NVIDIA GPU, and none is visible here")
    p = torch.cuda.get_device_properties(0)
    return {"gpu": p.name, "compute_capability": f"{p.major}.{p.minor}"}
