"""What a TensorRT engine runs, layer by layer, from TensorRT's engine inspector: name, type, the precision of
the data it reads, the tactic (kernel) chosen. ArtTRT builds engines with ProfilingVerbosity.DETAILED (as trtexec
--profilingVerbosity=detailed); an engine built with less gives names only, and says so.

The inspector's JSON (IEngineInspector.getEngineInformation(kJSON)) is {"Layers": [...], "Bindings": [...]} in
TensorRT 10, a layer being a name alone (LAYER_NAMES_ONLY) or {"Name", "LayerType", "Inputs": [{"Name", "Dimensions",
"Format/Datatype"}], "Outputs": [...], "TacticName" or "TacticValue", ...} (DETAILED). TensorRT 11 replaced
"Bindings" by "I/O Tensors" and split "Format/Datatype" in two (10.x -> 11.x migration guide, "Migrating
IEngineInspector Usage"): a tensor then has "Format" and a data type key ("Datatype" as NVIDIA's own 11.1 analyzer
reads it, .agents/skills/trt-perf-analysis; "DataType" in "I/O Tensors"); every spelling is read. With a
dynamic-shape engine the formats resolve only once an execution context with its input shape set is given.
Type-checked by mypy against TensorRT's stubs.

Usage:
    info = engine_information(engine, context)     # the runner's engine and context
    rows = engine_layers(info); print(engine_precision_counts(rows))  # drawn by utils/report/sections/look_inside
    info = plan_information(plan, (1, 3, 224, 224))  # a serialized engine, deserialized here
    measure, env = step_engine_probe("int8", 224)   # --mixed_precision: each step's engine layers by precision
"""
from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from utils.backends.tensorrt import api
from utils.backends.tensorrt.api import dims_tuple, error_mark, init_plugins, last_errors, logger
from utils.backends.tensorrt.build import BuildSettings, build_serialized
from utils.core.errors import ArtTRTError, first_line

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from utils.backends.tensorrt.api import trt

log = logging.getLogger(__name__)
NO_TENSORRT = "no: TensorRT is not installed (its builder is what would show each kept layer's cost)"

# words of the inspector's "Format/Datatype" strings, most specific first
DATATYPE_WORDS = (("uint8", "uint8"), ("int8", "int8"), ("fp8", "fp8"), ("e4m3", "fp8"), ("bf16", "bf16"),
                  ("bfloat16", "bf16"), ("fp16", "fp16"), ("float16", "fp16"), ("half", "fp16"), ("fp32", "fp32"),
                  ("float", "fp32"), ("int32", "int32"),
                  ("int64", "int64"), ("bool", "bool"), ("fp4", "fp4"), ("int4", "int4"))


def engine_information(engine: trt.ICudaEngine, context: Optional[trt.IExecutionContext] = None) -> Dict[str, Any]:
    """The engine inspector's JSON, parsed (with the context, formats of a dynamic engine are resolved)."""
    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return info if isinstance(info, dict) else {"Layers": info}


def plan_information(plan: bytes, shape: Tuple[int, ...]) -> Dict[str, Any]:
    """The inspector's JSON of a serialized engine, deserialized by this TensorRT's runtime, its input set to `shape`
    (a dynamic engine's formats resolve only then).

    Raises:
        ArtTRTError: the runtime returns no engine (TensorRT-RTX's refuses compute capability 9.0, for one).
    """
    mark = error_mark()
    init_plugins()
    runtime = trt.Runtime(logger())
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtTRTError(f"TensorRT's runtime cannot load the engine here ({last_errors(mark)})")
    context = engine.create_execution_context()
    if context is None:
        raise ArtTRTError(f"TensorRT made no execution context for the engine ({last_errors(mark)})")
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and -1 in dims_tuple(engine.get_tensor_shape(name)):
            # the profile that takes the shape (a context starts on profile 0), then the shape
            ranges = [[dims_tuple(d) for d in engine.get_tensor_profile_shape(name, k)]
                      for k in range(engine.num_optimization_profiles)]
            profile = next((k for k, (lo, _, hi) in enumerate(ranges)
                            if all(a <= v <= b for v, a, b in zip(shape, lo, hi))), None)
            if profile is None:
                raise ArtTRTError(f"no optimization profile of the engine takes input shape {tuple(shape)}")
            if profile:
                context.set_optimization_profile_async(profile, api.stream_handle(api.run_device()))
            if not context.set_input_shape(name, tuple(shape)):
                raise ArtTRTError(f"TensorRT refused input shape {tuple(shape)} ({last_errors(mark)})")
    info = engine_information(engine, context)
    del context, engine, runtime  # the runtime outlives the engine it made
    return info


def step_engine_probe(precision: str, crop: int) -> Tuple[Optional[Callable[[Path], Dict[str, Any]]], str]:
    """What measures each --mixed_precision step's engine here (utils.models.mixed_precision.EngineProbe):
    (measure(onnx file) -> {"built", "build_s", "layer_precisions", and "why" where not}, the environment in words),
    or (None, why not) where TensorRT does not load or no GPU is visible: then no build is tried at all. Each file
    is built strongly typed at the fixed shape (1, 3, crop, crop); its layers' precisions are read back by the
    engine inspector where this runtime deserializes it."""

    try:
        module, version = api.load_tensorrt()
    except ArtTRTError:
        return None, NO_TENSORRT
    try:
        gpu = api.gpu_identity()
    except ArtTRTError:
        return None, f"no: {module} {version} is installed but no NVIDIA GPU is visible, and its builder needs one"
    shape = (1, 3, int(crop), int(crop))

    def measure(path: Path) -> Dict[str, Any]:
        try:
            plan, facts = build_serialized(path, BuildSettings(precision, ((1, 1, 1),), shape[1:]))
        except Exception as err:  # TensorRT raises its own exception types
            return {"built": False, "build_s": None, "layer_precisions": None,
                    "why": f"TensorRT did not build {path.name}: {first_line(err)}"[:1000]}
        build_s = float(facts.get("build_s") or 0.0)
        try:
            counts = engine_precision_counts(engine_layers(plan_information(plan, shape)))
        except Exception as err:  # as above; TensorRT-RTX's runtime refuses compute capability 9.0
            return {"built": True, "build_s": build_s, "layer_precisions": None,
                    "why": f"built, but not read back: {first_line(err)}"[:1000]}
        log.info("mixed precision: the engine of %s runs %s", path.name,
                 ", ".join(f"{p} {n}" for p, n in counts.items()))
        return {"built": True, "build_s": build_s, "layer_precisions": counts}

    return measure, f"{module} {version} on {gpu['gpu']} (compute capability {gpu['compute_capability']})"


def datatype(fmt: str) -> str:
    """'Thirty-two wide channel vectorized row major Int8 format.' -> 'int8', 'Half' -> 'fp16'; '?' where it does not
    say."""
    low = fmt.lower()
    for word, name in DATATYPE_WORDS:
        if word in low:
            return name
    return "?"


def tensor_precision(tensor: Dict[str, Any]) -> str:
    """The precision of one tensor of the inspector's JSON: TensorRT 11's data type key, else 10's combined
    "Format/Datatype", else what its "Format" names."""
    for key in ("Datatype", "DataType", "Format/Datatype", "Format"):
        value = tensor.get(key)
        if isinstance(value, str) and datatype(value) != "?":
            return datatype(value)
    return "?"


def engine_layers(info: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per engine layer: name, type, precision (of the data it reads), tactic."""
    rows = []
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):  # built with LAYER_NAMES_ONLY
            rows.append({"name": str(layer), "type": "?", "precision": "?", "tactic": ""})
            continue
        tensors = layer.get("Inputs") or layer.get("Outputs") or [{}]
        first = tensors[0] if isinstance(tensors, list) and isinstance(tensors[0], dict) else {}
        rows.append({"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", "?")),
                     "precision": tensor_precision(first),
                     "tactic": str(layer.get("TacticName") or layer.get("TacticValue") or "")})
    return rows


def engine_precision_counts(rows: List[Dict[str, Any]]) -> Dict[str, int]:
    """How many engine layers read each precision, most first (Reformat layers included: they run too)."""
    return dict(collections.Counter(r["precision"] for r in rows).most_common())
