"""TensorRT engine building, written against the documented TensorRT 10 / 11 Python API.

The strongly typed route is the only one on TensorRT 11 and TensorRT-RTX and valid on 10.x: the ONNX file
carries its precision (AutoCast fp16/bf16, Q/DQ int8/fp8) and the network is created STRONGLY_TYPED where
that flag exists (TensorRT 11 and TensorRT-RTX are always strongly typed). TensorRT 10's weak typing
(builder flags and calibrators) lives in `weak.py` and is only asked for with --weak_typing.

Profiles: a dynamic-batch input gets one optimization profile per (min, opt, max) batch triple asked (the engine's
kernels are tuned for each profile's opt, as trtexec tunes for --optShapes); a static input gets none (its one shape).
TF32: cleared unless asked (BuilderFlag.TF32 is on by default in TensorRT, trtexec --noTF32 clears it), so an fp32
engine computes fp32 as PyTorch's fp32 rows do. Type-checked by mypy against TensorRT's stubs; run in CI against the
contract fake in tests/fakes/tensorrt.

Usage:
    plan, facts = build_serialized(Path("x-int8.onnx"), BuildSettings("int8", ((1, 1, 1), (2, 8, 8)), (3, 224, 224)))
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, cast

from utils.backends.tensorrt import weak
from utils.backends.tensorrt.api import dims_tuple, error_mark, init_plugins, last_errors, logger
from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_path

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from utils.backends.tensorrt.api import trt

log = logging.getLogger(__name__)

Profile = Tuple[int, int, int]  # (min, opt, max) batch


@dataclass
class BuildSettings:
    precision: str
    profiles: Tuple[Profile, ...]           # one per optimization profile; a static input ignores them
    image_shape: Tuple[int, ...]            # C, H, W of one image
    weak_typing: bool = False
    workspace_bytes: Optional[int] = None
    timing_cache: Optional[Path] = None
    calibration: Optional[weak.Calibration] = None  # weak-typed int8 only
    tf32: bool = False                      # BuilderFlag.TF32 kept (TensorRT's default) or cleared (trtexec --noTF32)

    def shape(self, batch: int) -> Tuple[int, ...]:
        return (batch, *self.image_shape)


def parse_onnx(builder: trt.Builder, onnx_path: Path, strongly_typed: bool
               ) -> Tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Parses an ONNX file (plugins registered first); a parser error names the ONNX node it refused."""
    init_plugins()
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors: List[str] = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node_name() or err.node()}: {err.desc()}")
        raise ArtTRTError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + "; ".join(errors or ["no detail"]))
    if network.num_inputs != 1:
        raise ArtTRTError(f"{onnx_path.name} has {network.num_inputs} inputs: ArtTRT feeds image classifiers one "
                          "image tensor")
    return network, parser


def _load_timing_cache(config: trt.IBuilderConfig, path: Optional[Path]) -> bool:
    """Loads a timing cache into the config, as Polygraphy's CreateConfig does, never fatally: a file TensorRT cannot
    take (another version, damaged) or one set_timing_cache refuses (another GPU) is replaced by a fresh cache with a
    warning. TensorRT-RTX 1.7 on an H100 logged "Magic tag does not match" and "Failed to deserialize timing cache.
    Returning an empty timing cache." for foreign bytes and gave an empty cache (docs/h100-rtx-2026-12-06), where
    Polygraphy also guards a None: each counts as not reused. Returns whether the file's cache is in use."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache: Optional[trt.ITimingCache] = None
    if blob:
        mark = error_mark()
        try:
            cache = config.create_timing_cache(blob)
        except Exception as err:  # TensorRT raises its own exception types
            log.debug("create_timing_cache: %s", first_line(err))
        refused = error_mark() > mark  # TensorRT logged an error reading it: what it gave back is an empty cache
        if cache is not None and not refused and config.set_timing_cache(cache, False):
            return True
        log.warning("timing cache %s was made by another TensorRT version or GPU, or is damaged: starting a fresh one "
                    "(it is replaced when this build ends)", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return False


def _add_profiles(builder: trt.Builder, config: trt.IBuilderConfig, name: str, s: BuildSettings) -> None:
    for lo, opt, hi in s.profiles:
        profile = builder.create_optimization_profile()
        try:
            profile.set_shape(name, trt.Dims(list(s.shape(lo))), trt.Dims(list(s.shape(opt))),
                              trt.Dims(list(s.shape(hi))))
        except (RuntimeError, ValueError) as err:  # the binding raises RuntimeError, its docstring says ValueError
            raise ArtTRTError(f"TensorRT refused the batch profile min {lo}, opt {opt}, max {hi}: "
                              f"{first_line(err)}") from err
        if config.add_optimization_profile(profile) < 0:
            raise ArtTRTError(f"TensorRT refused the batch profile min {lo}, opt {opt}, max {hi} "
                              f"({last_errors()})")


def build_serialized(onnx_path: Path, s: BuildSettings, verbose: bool = False) -> Tuple[bytes, Dict[str, Any]]:
    """Parses and builds; returns the serialized engine and facts (route, seconds, profiles, TF32, timing cache)."""
    mark = error_mark()
    builder = trt.Builder(logger(verbose))
    use_weak = s.weak_typing and s.precision != "fp32"
    if use_weak:
        weak.require(s.precision)
    network, parser = parse_onnx(builder, onnx_path, strongly_typed=not use_weak)
    config = builder.create_builder_config()
    # layer names, types, formats and tactics for the engine inspector (--inspect), as trtexec
    # --profilingVerbosity=detailed; it changes what the engine tells, not how it runs
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if not s.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if s.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_bytes)
    inp = network.get_input(0)
    shape = dims_tuple(inp.shape)
    dynamic = -1 in shape
    if dynamic:
        _add_profiles(builder, config, inp.name, s)
    calibrator: Optional[Any] = None
    calib_facts: Dict[str, Any] = {}
    if use_weak:
        calibrator, calib_facts = weak.configure(builder, config, inp.name, dynamic, s.precision, s.calibration)
    reused = _load_timing_cache(config, s.timing_cache)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if calibrator is not None:
        calib_facts.update(weak.check_calibrated(calibrator))  # a get_batch that raised is an error, not the end
    if plan is None:
        raise ArtTRTError(f"TensorRT returned no engine for {onnx_path.name} ({last_errors(mark)}): "
                          "nothing was written")
    if s.timing_cache is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            with atomic_path(s.timing_cache) as tmp:
                tmp.write_bytes(host_bytes(cache.serialize()))
    profiles = [list(p) for p in s.profiles] if dynamic else [[shape[0]] * 3]
    facts = {"route": "weak typing (builder flags)" if use_weak else "strongly typed", "build_s": round(seconds, 3),
             "timing_cache": str(s.timing_cache) if s.timing_cache else None, "timing_cache_reused": reused,
             "network_layers": network.num_layers, "module": trt.__name__, "tensorrt_version": trt.__version__,
             "tf32": s.tf32, "input_name": inp.name, "onnx_input_shape": list(shape), "profiles": profiles, **calib_facts}
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
