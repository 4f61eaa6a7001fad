"""TensorRT engine building, written against the documented TensorRT 10 / 11 Python API.

The strongly typed route is the only one on TensorRT 11 and TensorRT-RTX and valid on 10.x: the ONNX file
carries its precision (AutoCast fp16/bf16, Q/DQ int8/fp8) and the network is created STRONGLY_TYPED where
that flag exists (TensorRT 11 and TensorRT-RTX are always strongly typed). TensorRT 10's weak typing
(builder flags and calibrators) lives in `weak.py` and is only asked for with --weak_typing.
Type-checked by mypy against TensorRT's stubs; it cannot run on the machines ArtTRT is built on, so it
stays small.

Usage:
    plan, facts = build_serialized(Path("x-int8.onnx"), BuildSettings("int8", (1,3,224,224), (32,3,224,224), (256,3,224,224)))
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, cast

from utils.backends.tensorrt import weak
from utils.backends.tensorrt.api import dims_tuple, last_errors, make_logger
from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_path

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from utils.backends.tensorrt.api import trt

log = logging.getLogger(__name__)


@dataclass
class BuildSettings:
    precision: str
    min_shape: Tuple[int, ...]
    opt_shape: Tuple[int, ...]
    max_shape: Tuple[int, ...]
    weak_typing: bool = False
    workspace_bytes: Optional[int] = None
    timing_cache: Optional[Path] = None
    calibration: Optional[weak.Calibration] = None  # weak-typed int8 only


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
    use_weak = s.weak_typing and s.precision != "fp32"
    if use_weak:
        weak.require(s.precision)
    network, parser = parse_onnx(builder, logger, onnx_path, strongly_typed=not use_weak)
    config = builder.create_builder_config()
    # layer names, types, formats and tactics for the engine inspector (--inspect), as trtexec
    # --profilingVerbosity=detailed; it changes what the engine tells, not how it runs
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if s.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_bytes)
    inp = network.get_input(0)
    dynamic = -1 in dims_tuple(inp.shape)
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, trt.Dims(list(s.min_shape)), trt.Dims(list(s.opt_shape)),
                          trt.Dims(list(s.max_shape)))
        config.add_optimization_profile(profile)
    calib_facts: Dict[str, Any] = {}
    if use_weak:
        calib_facts = weak.configure(builder, config, inp.name, dynamic, s.precision, s.calibration)
    reused = _load_timing_cache(config, s.timing_cache)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise ArtTRTError(f"TensorRT returned no engine for {onnx_path.name} ({last_errors(logger)}): "
                          "nothing was written")
    if s.timing_cache is not None:
        with atomic_path(s.timing_cache) as tmp:
            tmp.write_bytes(host_bytes(config.get_timing_cache().serialize()))
    facts = {"route": "weak typing (builder flags)" if use_weak else "strongly typed", "build_s": round(seconds, 3),
             "timing_cache": str(s.timing_cache) if s.timing_cache else None, "timing_cache_reused": reused,
             "network_layers": network.num_layers, "module": trt.__name__, "tensorrt_version": trt.__version__,
             **calib_facts}
    del parser
    return host_bytes(plan), facts


def host_bytes(memory: trt.IHostMemory) -> bytes:
    """The bytes of an IHostMemory (a serialized engine or timing cache). TensorRT documents that IHostMemory
    implements Python's buffer protocol (pybind11's buffer_protocol), which stubs generated from the module
    cannot show: hence the cast."""
    return bytes(memoryview(cast(Any, memory)))


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
