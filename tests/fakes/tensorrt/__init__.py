"""A contract fake of NVIDIA's `tensorrt` Python module, for running ArtTRT's real TensorRT code on a CPU in CI.

Written from NVIDIA's documentation and sources, never from ArtTRT's code: the TensorRT headers (NvInferRuntime.h,
NvInfer.h) and the Python bindings' sources (python/src/infer/pyCore.cpp, pyInt8.cpp, pyFoundationalTypes.cpp) of
NVIDIA/TensorRT at tags v10.16 and v11.x, the Python API reference, the developer guide, the 10.x -> 11.x migration
guide, and Polygraphy's known-working use. Each rule below names its source. Every public name, class, method and
parameter offered here exists in the stubs generated from NVIDIA's real compiled bindings (tests/backends/
test_tensorrt_fake_conformance.py checks it against 11.4 and 10.16): this fake never offers an API TensorRT lacks.

What it does instead of a GPU: the ONNX parser reads the real file (onnx), an engine is that file plus the build's
settings, and execute_async_v3 runs the graph with ONNX Runtime on the CPU, reading each input from, and writing each
output to, the raw address it was given. "Device memory" is the memory of live torch tensors: an address outside
every live tensor's storage, or a read or write that runs past the end of the storage holding it, fails loudly
(_MemoryViolation, an AssertionError that no product code catches), as compute-sanitizer would report it.
Streams and CUDA graph capture come from fake_cudart (CUDA's stream-capture semantics).

Flavours: `_select("11")` (11.4.0.106, the default) or `_select("10")` (10.16.1.11: weak typing, calibrators).
Only a test selects; the product has no option or variable for this fake.
"""
from __future__ import annotations

import ctypes
import enum
import gc
import json
import sys
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


def _load_cudart() -> Any:
    """tests/fakes/fake_cudart.py, the CUDA side this fake enqueues on (loaded by path: nothing added to sys.path)."""
    import importlib.util

    if "fake_cudart" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_cudart",
                                                      Path(__file__).resolve().parent.parent / "fake_cudart.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_cudart"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_cudart"]


fake_cudart = _load_cudart()

__version__ = "11.4.0.106"
_FLAVOUR = "11"
_VERSIONS = {"11": "11.4.0.106", "10": "10.16.1.11"}


class _MemoryViolation(AssertionError):
    """What compute-sanitizer would report: an address TensorRT was given does not hold what it must read or write."""


class _GraphReplayError(AssertionError):
    """A CUDA graph replayed after the execution context it captured changed shape (see IExecutionContext)."""


class _NoInit:
    """A class TensorRT's Python API gives no constructor (pybind11 raises "No constructor defined!"): the fake makes
    its instances through _new, never through the class call the product could make."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"tensorrt.{type(self).__name__}: No constructor defined!")

    __init__._no_constructor = True  # type: ignore[attr-defined]

    @classmethod
    def _new(cls, *args: Any) -> Any:
        obj = cls.__new__(cls)
        obj._setup(*args)
        return obj


# --- enums (pybind11 enums: members compare by identity, int() gives the value; pyFoundationalTypes.cpp) ---------

class _Enum(enum.Enum):
    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


class DataType(_Enum):
    # NvInferRuntimeBase.h, enum class DataType (values as there)
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10

    @property
    def itemsize(self) -> int:
        return {0: 4, 1: 2, 2: 1, 3: 4, 4: 1, 5: 1, 6: 1, 7: 2, 8: 8}.get(self.value, 1)


class TensorIOMode(_Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(_Enum):
    WORKSPACE = 0


class ProfilingVerbosity(_Enum):
    # Python API, IBuilderConfig: "LAYER_NAMES_ONLY : Print only the layer names. This is the default setting."
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(_Enum):
    ONELINE = 0
    JSON = 1


class _NetworkFlag11(_Enum):
    # NvInfer.h (v11): kSTRONGLY_TYPED = 0, "Deprecated in TensorRT 11.0. Strongly typed mode is always enabled"
    STRONGLY_TYPED = 0


class _NetworkFlag10(_Enum):
    # NvInfer.h (v10.16): kEXPLICIT_BATCH = 0 (ignored), kSTRONGLY_TYPED = 1
    STRONGLY_TYPED = 1


NetworkDefinitionCreationFlag: Any = _NetworkFlag11


class ExecutionContextAllocationStrategy(_Enum):
    # NvInferRuntime.h: kSTATIC "Default static allocation with the maximum size across all profiles";
    # kON_PROFILE_CHANGE; kUSER_MANAGED "The user supplies custom allocation to the execution context".
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class EngineStat(_Enum):
    TOTAL_WEIGHTS_SIZE = 0
    STRIPPED_WEIGHTS_SIZE = 1


class _BuilderFlag11(_Enum):
    # NvInfer.h (v11): the precision flags are gone (migration guide: "TensorRT 11.x removes all weak typing APIs")
    TF32 = 6


class _BuilderFlag10(_Enum):
    # NvInfer.h (v10.16), enum class BuilderFlag
    FP16 = 0
    INT8 = 1
    TF32 = 6
    FP8 = 15
    BF16 = 17


BuilderFlag: Any = _BuilderFlag11


# --- Dims, IHostMemory ---------------------------------------------------------------------------------------------

class Dims:
    """A shape; -1 marks a dynamic dimension (NvInferRuntime.h, ICudaEngine::getTensorShape)."""

    MAX_DIMS = 8

    def __init__(self, shape: Sequence[int] = ()) -> None:
        self._d = [int(v) for v in shape]

    def __len__(self) -> int:
        return len(self._d)

    def __getitem__(self, arg0: Any) -> Any:
        return self._d[arg0]

    def __repr__(self) -> str:
        return f"Dims({tuple(self._d)})"

    def __eq__(self, other: object) -> bool:
        return list(self._d) == [int(v) for v in other]  # type: ignore[attr-defined]


def _dims(shape: Any) -> Tuple[int, ...]:
    return tuple(int(shape[i]) for i in range(len(shape)))


class IHostMemory:
    """Serialized bytes. pyFoundationalTypes.cpp: py::class_<IHostMemory>(..., py::buffer_protocol()) with dtype and
    nbytes; the buffer protocol is how Python reads it (bytes(memoryview(m)))."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __buffer__(self, flags: int) -> memoryview:  # Python 3.12's buffer protocol for Python classes
        return memoryview(self._data)

    @property
    def nbytes(self) -> int:
        return len(self._data)

    @property
    def dtype(self) -> DataType:
        return DataType.UINT8


def _host_bytes(buf: Any) -> bytes:
    if isinstance(buf, IHostMemory):
        return buf._data
    return bytes(memoryview(buf))


# Python 3.11 has no __buffer__ for Python classes: a bytes subclass keeps the buffer protocol NVIDIA documents.
if sys.version_info < (3, 12):
    class IHostMemory(bytes):  # type: ignore[no-redef]
        @property
        def nbytes(self) -> int:
            return len(self)

        @property
        def dtype(self) -> DataType:
            return DataType.UINT8

    def _host_bytes(buf: Any) -> bytes:  # type: ignore[misc]
        return bytes(memoryview(buf))


# --- logging -------------------------------------------------------------------------------------------------------

class _Severity(_Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    """Subclassed by the application (NvInferRuntimeBase.h: "A callback implemented by the application to handle
    logging messages"). TensorRT keeps one logger per process: the first one given to a Builder or Runtime (see
    _take_logger)."""

    Severity = _Severity
    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self) -> None:
        pass

    def log(self, severity: _Severity, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    def __init__(self, min_severity: _Severity = _Severity.WARNING) -> None:
        ILogger.__init__(self)
        self.min_severity = min_severity

    def log(self, severity: _Severity, msg: str) -> None:
        if severity.value <= self.min_severity.value:
            print(f"[TRT] {severity.name}: {msg}", file=sys.stderr)


_state: Dict[str, Any] = {}


def _reset() -> None:
    """A fresh process, as far as TensorRT's own state goes (a test's fixture calls it)."""
    _state.clear()
    # device: the GPU this "process" sees (a timing cache is tagged with it); fail_contexts: make context creation give
    # None, as TensorRT's createExecutionContext gives nullptr when it cannot allocate
    _state.update(logger=None, plugins=False, owners=weakref.WeakSet(), device="NVIDIA H100 80GB HBM3 sm90",
                  fail_contexts=False)
    fake_cudart.reset()


_reset()


def _take_logger(logger: ILogger, owner: Any = None) -> None:
    """TensorRT keeps one logger pointer per process. The header (NvInferRuntime.h, ILogger) says the logger given to a
    Builder, Runtime or Refitter "is used for all objects created through that interface", but while one of them is
    alive, a Builder or Runtime given another logger keeps the existing one and warns (NVIDIA/TensorRT#1475, 8.0.1:
    "TensorRT maintains only a single logger pointer at any given time, so the existing value, which can be retrieved
    with getLogger(), will be used instead. In order to use a new logger, first destroy all existing builder, runner
    or refitter objects."). Polygraphy keeps one process-wide logger for that reason (backend/trt/util.py,
    get_trt_logger)."""
    owners = _state["owners"]
    if _state["logger"] is None or len(owners) == 0:
        _state["logger"] = logger
    elif logger is not _state["logger"]:
        _log(_Severity.WARNING, "The logger passed into createInferRuntime differs from one already provided for an "
                                "existing builder, runtime, or refitter. TensorRT maintains only a single logger "
                                "pointer at any given time, so the existing value, which can be retrieved with "
                                "getLogger(), will be used instead. In order to use a new logger, first destroy all "
                                "existing builder, runner or refitter objects.")
    if owner is not None:
        owners.add(owner)


def _log(severity: _Severity, msg: str) -> None:
    logger = _state["logger"]
    if logger is not None:
        logger.log(severity, msg)


def _error(code: int, where: str, msg: str) -> None:
    # TensorRT's error lines: "<code>: [<file>::<function>::<line>] Error Code <code>: <kind> (<message>)"
    _log(_Severity.ERROR, f"{code}: [{where}] Error Code {code}: {msg}")


def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
    """pyPlugin.cpp: m.def("init_libnvinfer_plugins", &initLibNvInferPlugins, "logger"_a, "namespace"_a): registers
    TensorRT's standard plugins (plugin/*: EfficientNMS_TRT, ...) so the parser and the runtime can find them.
    Polygraphy calls it before parsing and before deserializing (polygraphy/backend/trt/loader.py)."""
    _state["plugins"] = True
    return True


# The standard plugins' names (NVIDIA/TensorRT v10.16 plugin/*/ *.cpp, e.g. efficientNMSPlugin.cpp:
# kEFFICIENT_NMS_PLUGIN_NAME{"EfficientNMS_TRT"}); the ONNX parser imports an unknown node as a plugin of its op name.
_STANDARD_PLUGINS = {"EfficientNMS_TRT", "BatchedNMSDynamic_TRT", "ROIAlign_TRT", "ScatterElements",
                    "InstanceNormalization_TRT", "GroupNormalizationPlugin", "ResizeNearest_TRT"}


# --- memory: live torch tensors are the "device memory" ------------------------------------------------------------

def _allocation(addr: int) -> Optional[Tuple[int, int]]:
    """(start, nbytes) of the live torch storage holding `addr`, youngest objects first."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    frozen = gc.get_freeze_count() > 0  # gc.freeze() hides objects from get_objects: look at them too
    if frozen:
        gc.unfreeze()
    try:
        return _scan(addr, torch)
    finally:
        if frozen:
            gc.freeze()


def _scan(addr: int, torch: Any) -> Optional[Tuple[int, int]]:
    for generation in (0, 1, 2):
        for obj in gc.get_objects(generation):
            if isinstance(obj, torch.Tensor) and not obj.is_meta:
                try:
                    s = obj.untyped_storage()
                    start, size = s.data_ptr(), s.nbytes()
                except (RuntimeError, NotImplementedError):  # a tracing tensor (FakeTensor) holds no memory
                    continue
                if start <= addr < start + max(size, 1):
                    return start, size
    return None


def _check_range(addr: int, nbytes: int, what: str) -> None:
    if addr == 0:
        raise _MemoryViolation(f"{what}: address 0 (NvInferRuntime.h, setTensorAddress: each input must have a "
                              "non-null address)")
    held = _allocation(addr)
    if held is None:
        raise _MemoryViolation(f"{what}: address {addr:#x} is in no live allocation")
    start, size = held
    if addr + nbytes > start + size:
        raise _MemoryViolation(f"{what}: {nbytes} bytes at {addr:#x} run {addr + nbytes - start - size} bytes past the "
                              f"end of the allocation holding it ({size} bytes): setTensorAddress's buffer must be "
                              "of sufficient size (NvInferRuntime.h)")


def _read(addr: int, shape: Tuple[int, ...], dtype: DataType, what: str) -> np.ndarray:
    np_dtype = _NUMPY[dtype]
    n = int(np.prod(shape)) * np.dtype(np_dtype).itemsize
    _check_range(addr, n, what)
    raw = (ctypes.c_char * n).from_address(addr)
    return np.frombuffer(bytes(raw), dtype=np_dtype).reshape(shape)


def _write(addr: int, array: np.ndarray, what: str) -> None:
    data = np.ascontiguousarray(array).tobytes()
    _check_range(addr, len(data), what)
    ctypes.memmove(addr, data, len(data))


_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
          DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
# onnx.TensorProto element types -> TensorRT types (the ONNX parser's mapping: onnx-tensorrt, convertDtype)
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
              2: DataType.UINT8, 7: DataType.INT64, 16: DataType.BF16, 17: DataType.FP8}


# --- network and parser --------------------------------------------------------------------------------------------

class ITensor(_NoInit):
    def _setup(self, name: str, dtype: DataType, shape: Tuple[int, ...], dim_names: Tuple[str, ...]) -> None:
        self.name = name
        self._dtype = dtype
        self.shape = Dims(shape)
        self._dim_names = dim_names

    @property
    def dtype(self) -> DataType:
        return self._dtype

    @property
    def is_network_input(self) -> bool:
        return True

    def get_dimension_name(self, index: int) -> Optional[str]:
        return self._dim_names[index] or None


class INetworkDefinition(_NoInit):
    def _setup(self, flags: int) -> None:
        self._flags = int(flags)
        self._onnx: Optional[bytes] = None
        self._inputs: List[ITensor] = []
        self._outputs: List[ITensor] = []
        self._nodes: List[Dict[str, Any]] = []
        self._plugins: List[str] = []
        self.name = "network"

    @property
    def flags(self) -> int:
        return self._flags

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def num_layers(self) -> int:
        return len(self._nodes)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ParserError(_NoInit):
    """NvOnnxParser.h IParserError: code(), desc(), node(), nodeName(), nodeOperator()..."""

    def _setup(self, desc: str, node: int = -1, node_name: str = "", node_operator: str = "") -> None:
        self._desc, self._node, self._name, self._op = desc, node, node_name, node_operator

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def code(self) -> int:
        return 8  # ErrorCode.UNSUPPORTED_NODE


def _tensor_of(value_info: Any, dtype_override: Optional[DataType] = None) -> ITensor:
    tt = value_info.type.tensor_type
    dims, names = [], []
    for d in tt.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else -1)  # onnx-tensorrt: a dim_param is dynamic
        names.append(d.dim_param if d.HasField("dim_param") else "")
    dtype = dtype_override or _FROM_ONNX.get(tt.elem_type, DataType.FLOAT)
    return ITensor._new(value_info.name, dtype, tuple(dims), tuple(names))


class OnnxParser:
    """NvOnnxParser.h: createParser(network, logger); parseFromFile returns true on success, errors through
    getNbErrors/getError."""

    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network = network
        self._errors: List[ParserError] = []
        _take_logger(logger)

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(model)
        except Exception as err:  # the parser reports, never raises (NvOnnxParser.h: returns false)
            self._errors.append(ParserError._new(f"Failed to parse ONNX model from file: {model} ({err})"))
            return False
        net = self._network
        known = {o.domain or "": o.version for o in proto.opset_import}
        initializers = {i.name for i in proto.graph.initializer}
        for i, node in enumerate(proto.graph.node):
            if node.domain not in ("", "ai.onnx") or _is_plugin(node.op_type):
                # onnx-tensorrt: "No importer registered for op: X. Attempting to import as plugin."
                if not (_state["plugins"] and node.op_type in _STANDARD_PLUGINS):
                    self._errors.append(ParserError._new(
                        "Plugin not found, are the plugin name, version, and namespace correct?", i,
                        node.name, node.op_type))
                    return False
                net._plugins.append(node.op_type)
        if not known:
            self._errors.append(ParserError._new("the model has no opset_import"))
            return False
        net._onnx = proto.SerializeToString()
        net._inputs = [_tensor_of(v) for v in proto.graph.input if v.name not in initializers]
        net._outputs = [_tensor_of(v) for v in proto.graph.output]
        net._nodes = [{"name": n.name or f"node_{i}", "op": n.op_type, "inputs": list(n.input),
                       "outputs": list(n.output)} for i, n in enumerate(proto.graph.node)]
        return True


def _is_plugin(op: str) -> bool:
    return op.endswith("_TRT") or op in _STANDARD_PLUGINS


# --- builder -------------------------------------------------------------------------------------------------------

class IOptimizationProfile(_NoInit):
    """NvInferRuntime.h, IOptimizationProfile::setDimensions: (1) equal ranks, (2) 0 <= min <= opt <= max per dim,
    (3) a static network dim must equal min, opt and max (checked at build); "inputs can be validated only partially;
    a full validation is performed at engine build time". pyCore.cpp's set_shape raises RuntimeError("Shape provided
    for ... is inconsistent with other shapes.") when setDimensions returns false; TensorRT-RTX 1.7 on an H100 took a
    profile of min 8, opt 4, max 8 at set_shape and refused it at add_optimization_profile: "IOptimizationProfile::
    isValid: Error Code 4: API Usage Error (Invalid optimization profiles for input tensors input, please ensure that the
    optimization profiles satisfy MIN<=OPT<=MAX." (docs/h100-rtx-2026-12-06). So: a negative or rank-changing shape
    raises at set_shape, MIN<=OPT<=MAX is judged by isValid."""

    def _setup(self) -> None:
        self._shapes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = _dims(min), _dims(opt), _dims(max)
        if any(v < 0 for v in lo):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        if len(mid) != len(lo):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(hi) != len(mid):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self._shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> List[Dims]:
        got = self._shapes.get(input)
        return [Dims(s) for s in got] if got else []

    def _invalid(self) -> List[str]:
        return [name for name, (lo, mid, hi) in self._shapes.items()
                if any(not a <= b <= c for a, b, c in zip(lo, mid, hi))]

    def __bool__(self) -> bool:  # pyCore.cpp: .def("__bool__", &IOptimizationProfile::isValid)
        bad = self._invalid()
        if bad:
            _error(4, "IOptimizationProfile::isValid", f"API Usage Error (Invalid optimization profiles for input "
                   f"tensors {', '.join(bad)}, please ensure that the optimization profiles satisfy MIN<=OPT<=MAX.)")
        return bool(self._shapes) and not bad


_TC_MAGIC = b"FAKE-TRT-TIMING-CACHE:"


class ITimingCache(_NoInit):
    """A timing cache; serialize() gives an IHostMemory whose bytes carry the TensorRT version and the device that made
    them (NvInfer.h, setTimingCache: "The timing cache has verification header to make sure the provided cache can be
    used in current environment. A failure will be reported if the CUDA device property in the provided cache is
    different from current environment")."""

    def _setup(self, entries: Dict[str, float], device: Optional[str] = None) -> None:
        self._entries = dict(entries)
        self._device = device or _state["device"]

    def serialize(self) -> IHostMemory:
        return IHostMemory(_TC_MAGIC + json.dumps({"version": __version__, "device": self._device,
                                                   "entries": self._entries}).encode())

    def combine(self, input_cache: "ITimingCache", ignore_mismatch: bool) -> bool:
        self._entries.update(input_cache._entries)
        return True

    def reset(self) -> bool:
        self._entries.clear()
        return True


class _BuilderConfigBase(_NoInit):
    """NvInfer.h, IBuilderConfig. Flags start as TensorRT sets them: BuilderFlag::kTF32 "Enabled by default"."""

    def _setup(self) -> None:
        self._flags = {BuilderFlag.TF32}
        self._profiles: List[IOptimizationProfile] = []
        self._pools: Dict[Any, int] = {}
        self._timing_cache: Optional[ITimingCache] = None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self._calibrator: Any = None
        self._calibration_profile: Optional[IOptimizationProfile] = None

    def set_flag(self, flag: Any) -> None:
        self._flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        self._flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self._flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self._pools.get(pool, 1 << 40)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        # NvInfer.h: "The index of the optimization profile (starting from 0) if the input is valid, or -1 if not"
        if not profile:
            _error(3, "IBuilderConfig::addOptimizationProfile", "API Usage Error (Parameter check failed, condition: "
                   "profile->isValid().)")
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)

    def create_timing_cache(self, serialized_timing_cache: Any) -> Optional[ITimingCache]:
        """Bytes TensorRT cannot take (damaged, or another version's) give an empty cache, with an error and two
        warnings logged: seen from TensorRT-RTX 1.7.1.116's builder on an H100 (docs/h100-rtx-2026-12-06/
        rtx_check.log: "Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match", "The
        timing cache will not be used!", "Failed to deserialize timing cache. Returning an empty timing cache."), and
        the same first two lines from TensorRT 8.6 (NVIDIA/TensorRT#3566)."""
        blob = _host_bytes(serialized_timing_cache)
        if not blob:  # NvInfer.h: "Size 0 means create a new cache from scratch"
            return ITimingCache._new({})
        meta = json.loads(blob[len(_TC_MAGIC):]) if blob.startswith(_TC_MAGIC) else None
        if meta is None or meta.get("version") != __version__:
            _error(1, "stdArchiveReader.cpp::stdArchiveReaderInitCommon", "Serialization (Serialization assertion "
                   "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            _log(_Severity.WARNING, "The timing cache will not be used!")
            _log(_Severity.WARNING, "Failed to deserialize timing cache. Returning an empty timing cache.")
            return ITimingCache._new({})
        return ITimingCache._new(meta.get("entries") or {}, meta.get("device"))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, ITimingCache):  # pybind11: a reference argument takes no None
            raise TypeError("set_timing_cache(): incompatible function arguments. The following argument types are "
                            "supported: (self, cache: tensorrt.ITimingCache, ignore_mismatch: bool) -> bool")
        if cache._device != _state["device"] and not ignore_mismatch:  # "A failure will be reported": false
            _error(4, "builderConfig.cpp::setTimingCache", f"API Usage Error (the timing cache was made on "
                   f"{cache._device}, this is {_state['device']})")
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> Optional[ITimingCache]:
        return self._timing_cache


class _BuilderConfig10(_BuilderConfigBase):
    """TensorRT 10's weak typing: int8_calibrator and set_calibration_profile (NvInfer.h v10.16, deprecated in 10.1,
    removed in 11)."""

    @property
    def int8_calibrator(self) -> Any:
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, arg1: Any) -> None:
        self._calibrator = arg1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        # NvInfer.h: "MIN and MAX values will be overwritten by kOPT."
        if not profile:
            return False
        self._calibration_profile = profile
        return True

    def get_calibration_profile(self) -> Optional[IOptimizationProfile]:
        return self._calibration_profile


_PLAN_MAGIC = b"FAKE-TRT-PLAN\0"


class Builder:
    def __init__(self, logger: ILogger) -> None:
        _take_logger(logger, self)
        self._logger = logger

    @property
    def logger(self) -> ILogger:
        return self._logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition._new(flags)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile._new()

    def create_builder_config(self) -> Any:
        return IBuilderConfig._new()

    def build_serialized_network(self, network: INetworkDefinition, config: Any) -> Optional[IHostMemory]:
        """Returns the plan, or None with the reason logged as an error (NvInfer.h buildSerializedNetwork:
        "A pointer to a IHostMemory object that contains a serialized network", nullptr on failure)."""
        if network._onnx is None:
            _error(4, "network.cpp::validate", "API Usage Error (the network has no layers)")
            return None
        dynamic = [t for t in network._inputs if -1 in _dims(t.shape)]
        if dynamic and not config._profiles:
            _error(4, "network.cpp::validate", "API Usage Error (Network has dynamic or shape inputs, but no "
                   "optimization profile has been defined.)")
            return None
        profiles: List[Dict[str, List[List[int]]]] = []
        for k, p in enumerate(config._profiles):
            shapes: Dict[str, List[List[int]]] = {}
            for t in network._inputs:
                net_dims = _dims(t.shape)
                got = p._shapes.get(t.name)
                if got is None:
                    if -1 in net_dims:
                        _error(4, "network.cpp::validate", f"API Usage Error (Optimization profile {k} has no shape "
                               f"for dynamic input {t.name})")
                        return None
                    got = (net_dims, net_dims, net_dims)
                for which, s in zip(("min", "opt", "max"), got):
                    if len(s) != len(net_dims) or any(n != -1 and v != n for v, n in zip(s, net_dims)):
                        _error(4, "network.cpp::validate", f"API Usage Error (profile {k}: {which} shape {s} of "
                               f"{t.name} does not match the network's dimensions {net_dims})")
                        return None
                shapes[t.name] = [list(s) for s in got]
            profiles.append(shapes)
        if not profiles:
            profiles.append({t.name: [list(_dims(t.shape))] * 3 for t in network._inputs})
        weak = [f.name for f in (getattr(BuilderFlag, n, None) for n in ("FP16", "BF16", "INT8", "FP8"))
                if f is not None and f in config._flags]
        calibrated = 0
        if "INT8" in weak:
            calibrated = _calibrate(config, network, profiles[0])
            if calibrated < 0:
                return None
        if config._timing_cache is not None:
            config._timing_cache._entries[f"{len(network._nodes)}-layers"] = 1.0
        meta = {"version": __version__, "flavour": _FLAVOUR, "profiles": profiles,
                "inputs": [[t.name, t.dtype.value, list(_dims(t.shape)), list(t._dim_names)] for t in network._inputs],
                "outputs": [[t.name, t.dtype.value, list(_dims(t.shape)), list(t._dim_names)]
                            for t in network._outputs],
                "nodes": network._nodes, "plugins": network._plugins,
                "verbosity": config.profiling_verbosity.name, "tf32": BuilderFlag.TF32 in config._flags,
                "weak_flags": weak, "calibrated_batches": calibrated}
        header = json.dumps(meta).encode()
        return IHostMemory(_PLAN_MAGIC + len(header).to_bytes(8, "little") + header + network._onnx)


def _calibrate(config: Any, network: INetworkDefinition, profile: Dict[str, List[List[int]]]) -> int:
    """INT8 calibration through the application's calibrator, as TensorRT 10 calls it through the Python trampoline
    (python/src/infer/pyInt8.cpp, v10.16): read_calibration_cache first (a cache skips calibration); then get_batch
    until it returns None or an empty list; an exception raised in get_batch is caught by the trampoline, printed as
    "[ERROR] Exception caught in get_batch(): ..." and treated as the end of the data (it returns false); the scales
    are handed to write_calibration_cache as a memoryview. Calibration uses the calibration profile's opt shape
    (NvInfer.h setCalibrationProfile: "Calibration optimization profile must be set if int8 calibration is used to set
    scales for a network with runtime dimensions"; "MIN and MAX values will be overwritten by kOPT")."""
    cal = getattr(config, "_calibrator", None)
    if cal is None:
        _error(4, "builder.cpp::buildSerializedNetwork", "API Usage Error (BuilderFlag::kINT8 is set but neither a "
               "calibrator nor dynamic ranges are given)")
        return -1
    name = network._inputs[0].name
    shape = profile[name][1]
    if -1 in _dims(network._inputs[0].shape):
        cp = config._calibration_profile
        if cp is None or name not in cp._shapes:
            _error(4, "builder.cpp::buildSerializedNetwork", "API Usage Error (Calibration profile must be set for a "
                   "network with runtime dimensions)")
            return -1
        shape = list(cp._shapes[name][1])
    try:
        cache = cal.read_calibration_cache()
    except Exception as err:
        print(f"[ERROR] Exception caught in read_calibration_cache(): {err}", file=sys.stderr)
        cache = None
    if cache:
        return 0
    batches = 0
    while True:
        try:
            ptrs = cal.get_batch([name])
        except Exception as err:  # pyInt8.cpp: caught, printed, "return false"
            print(f"[ERROR] Exception caught in get_batch(): {err}", file=sys.stderr)
            break
        if ptrs is None or len(ptrs) == 0:
            break
        _read(int(ptrs[0]), tuple(shape), network._inputs[0].dtype, "calibration batch")
        batches += 1
    if batches == 0:
        _error(2, "calibrator.cpp::calibrateEngine", "Internal Error (Calibration failure occurred with no scaling "
               "factors detected.)")
        return -1
    try:
        cal.write_calibration_cache(memoryview(f"fake scales of {batches} batches".encode()))
    except Exception as err:
        print(f"[ERROR] Exception caught in write_calibration_cache(): {err}", file=sys.stderr)
    return batches


# --- runtime -------------------------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger: ILogger) -> None:
        _take_logger(logger, self)
        self._logger = logger

    @property
    def logger(self) -> ILogger:
        return self._logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Optional["ICudaEngine"]:
        """pyCore.cpp runtime_deserialize_cuda_engine: any buffer; None (nullptr) on failure, the reason logged."""
        blob = _host_bytes(serialized_engine)
        if not blob.startswith(_PLAN_MAGIC):
            _error(1, "stdArchiveReader.cpp::StdArchiveReader", "Serialization (Serialization assertion "
                   "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        n = int.from_bytes(blob[len(_PLAN_MAGIC):len(_PLAN_MAGIC) + 8], "little")
        start = len(_PLAN_MAGIC) + 8
        meta = json.loads(blob[start:start + n])
        if meta["version"] != __version__:
            _error(1, "stdArchiveReader.cpp::StdArchiveReader", "Serialization (Serialization assertion "
                   f"stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. The engine was "
                   f"built by {meta['version']}, this is {__version__})")
            return None
        if meta["plugins"] and not _state["plugins"]:
            _error(1, "pluginV2Runner.cpp::load", f"Serialization (getPluginCreator could not find plugin "
                   f"{meta['plugins'][0]} version 1)")
            return None
        return ICudaEngine._new(meta, blob[start + n:])


class EngineInspector(_NoInit):
    """IEngineInspector (NvInferRuntime.h): getEngineInformation(kJSON). The JSON's form follows the developer guide
    (10.x) and the 10.x -> 11.x migration guide ("Migrating IEngineInspector Usage from TensorRT 10.x to 11.x":
    Bindings replaced by "I/O Tensors", and the "Format/Datatype" of a tensor split in two)."""

    def _setup(self, engine: "ICudaEngine") -> None:
        self._engine = engine
        self.execution_context: Optional[IExecutionContext] = None

    def get_layer_information(self, layer_index: int, format: LayerInformationFormat) -> str:
        return json.dumps(self._layers()[layer_index])

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        e = self._engine
        layers = self._layers()
        if _FLAVOUR == "10":
            return json.dumps({"Layers": layers, "Bindings": [t[0] for t in e._io]})
        return json.dumps({"Layers": layers, "I/O Tensors": [
            {"Name": t[0], "IOMode": "Input" if t[4] else "Output", "DataType": _DTYPE_WORD[DataType(t[1])],
             "Dimensions": list(t[2]), "Location": "Device", "IsShapeInferenceIO": False} for t in e._io]})

    def _shape_of(self, tensor: str) -> List[int]:
        ctx = self.execution_context
        if ctx is not None and tensor in ctx._engine._io_names:
            return list(_dims(ctx.get_tensor_shape(tensor)))
        return []

    def _layers(self) -> List[Any]:
        e = self._engine
        verbosity = e._meta["verbosity"]
        if verbosity == "NONE":
            return []
        if verbosity == "LAYER_NAMES_ONLY":
            return [n["name"] for n in e._meta["nodes"]]
        dtypes = e._value_types()
        out = []
        for n in e._meta["nodes"]:
            def tensor(name: str) -> Dict[str, Any]:
                dt = dtypes.get(name, DataType.FLOAT)
                entry: Dict[str, Any] = {"Name": name, "Dimensions": self._shape_of(name)}
                if _FLAVOUR == "10":
                    entry["Format/Datatype"] = f"Row major linear {_FORMAT_WORD[dt]} format"
                else:  # 11.x: "the split of the Format/DataType field" (migration guide); the per-layer key as
                    # NVIDIA's own 11.1 analyzer reads it (.agents/skills/trt-perf-analysis/scripts/trt_perf/data.py:
                    # detailed_keys "Datatype", "Format")
                    entry["Format"] = f"Row major linear {_FORMAT_WORD[dt]} format (kLINEAR)"
                    entry["Datatype"] = _DTYPE_WORD[dt]
                return entry
            out.append({"Name": n["name"], "LayerType": n["op"], "Inputs": [tensor(i) for i in n["inputs"][:1] if i],
                        "Outputs": [tensor(o) for o in n["outputs"][:1]], "TacticName": f"fake_{n['op'].lower()}"})
        return out


_FORMAT_WORD = {DataType.FLOAT: "FP32", DataType.HALF: "FP16", DataType.BF16: "BF16", DataType.INT8: "Int8",
                DataType.FP8: "FP8", DataType.INT32: "Int32", DataType.INT64: "Int64", DataType.BOOL: "Bool",
                DataType.UINT8: "UInt8"}
_DTYPE_WORD = {DataType.FLOAT: "Float", DataType.HALF: "Half", DataType.BF16: "BFloat16", DataType.INT8: "Int8",
               DataType.FP8: "FP8", DataType.INT32: "Int32", DataType.INT64: "Int64", DataType.BOOL: "Bool",
               DataType.UINT8: "UInt8"}


class ICudaEngine(_NoInit):
    def _setup(self, meta: Dict[str, Any], onnx_bytes: bytes) -> None:
        self._meta = meta
        self._onnx = onnx_bytes
        # (name, dtype, dims, dim names, is input)
        self._io = [(n, d, tuple(s), tuple(dn), True) for n, d, s, dn in meta["inputs"]] + \
                   [(n, d, tuple(s), tuple(dn), False) for n, d, s, dn in meta["outputs"]]
        self._io_names = {t[0]: t for t in self._io}
        self._session: Any = None
        self._types: Optional[Dict[str, DataType]] = None

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_layers(self) -> int:
        return len(self._meta["nodes"])

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._meta["profiles"])

    @property
    def device_memory_size_v2(self) -> int:
        """The activation memory a context needs: an upper bound over every profile (NvInferRuntime.h,
        getDeviceMemorySizeV2). The fake's figure: 64 KiB per image of the largest profile maximum."""
        return max(self.get_device_memory_size_for_profile_v2(k) for k in range(self.num_optimization_profiles))

    def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int:
        shapes = self._meta["profiles"][profile_index]
        return max(int(s[2][0]) for s in shapes.values()) * 65536 if shapes else 0

    def get_engine_stat(self, stat: EngineStat = EngineStat.TOTAL_WEIGHTS_SIZE) -> int:
        return len(self._onnx)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        t = self._io_names.get(name)
        return TensorIOMode.NONE if t is None else TensorIOMode.INPUT if t[4] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self._io_names[name][1])

    def get_tensor_shape(self, name: str) -> Dims:
        """NvInferRuntime.h: "shape of the tensor, with -1 in place of each dynamic runtime dimension"."""
        t = self._io_names.get(name)
        return Dims(t[2]) if t else Dims([-1])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> List[Dims]:
        """[min, opt, max] of an input under a profile (pyCore.cpp get_tensor_profile_shape)."""
        if not 0 <= profile_index < self.num_optimization_profiles:
            raise RuntimeError(f"profile index {profile_index} out of range")
        shapes = self._meta["profiles"][profile_index].get(name)
        if shapes is None:
            raise RuntimeError(f"{name} is not an input tensor")
        return [Dims(s) for s in shapes]

    def create_execution_context(self, strategy: ExecutionContextAllocationStrategy =
                                 ExecutionContextAllocationStrategy.STATIC) -> Optional["IExecutionContext"]:
        """The new context is on profile 0 (NvInferRuntime.h); None where TensorRT cannot make one (nullptr)."""
        if _state["fail_contexts"]:
            _error(2, "executionContext.cpp::ExecutionContext", "OutOfMemory (Requested size was too large)")
            return None
        return IExecutionContext._new(self, strategy)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector._new(self)

    def serialize(self) -> IHostMemory:
        header = json.dumps(self._meta).encode()
        return IHostMemory(_PLAN_MAGIC + len(header).to_bytes(8, "little") + header + self._onnx)

    def _run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            self._session = ort.InferenceSession(self._onnx, so, providers=["CPUExecutionProvider"])
        return list(self._session.run(None, feeds))

    def _value_types(self) -> Dict[str, DataType]:
        if self._types is None:
            import onnx

            model = onnx.shape_inference.infer_shapes(onnx.load_from_string(self._onnx))
            g = model.graph
            self._types = {v.name: _FROM_ONNX.get(v.type.tensor_type.elem_type, DataType.FLOAT)
                           for v in list(g.value_info) + list(g.input) + list(g.output)}
            for init in g.initializer:
                self._types[init.name] = _FROM_ONNX.get(init.data_type, DataType.FLOAT)
        return self._types


class IExecutionContext(_NoInit):
    """NvInferRuntime.h, IExecutionContext, and the rules each method's documentation states."""

    def _setup(self, engine: ICudaEngine, strategy: ExecutionContextAllocationStrategy) -> None:
        self._engine = engine
        self._strategy = strategy
        self._profile = 0  # "The newly created execution context will be assigned optimization profile 0."
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        self._addresses: Dict[str, int] = {}
        self._memory: Optional[Tuple[int, int]] = None
        self._shape_epoch = 0     # bumped by each shape or profile change
        self._ran_epoch = -1      # the epoch of the last enqueue outside a capture
        self.name = ""

    @property
    def engine(self) -> ICudaEngine:
        return self._engine

    @property
    def active_optimization_profile(self) -> int:
        return self._profile

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        """NvInferRuntime.h: "The value must lie between 0 and getEngine().getNbOptimizationProfiles() - 1";
        "must be called before calling setInputShape() for all dynamic input tensors". The Python binding raises
        where C++ returns false (pyCore.cpp: PY_ASSERT_RUNTIME_ERROR(..., "Error in set optimization profile
        async."))."""
        if not 0 <= profile_index < self._engine.num_optimization_profiles:
            _error(3, "executionContext.cpp::setOptimizationProfileInternal", "API Usage Error (Parameter check "
                   "failed, condition: profileIndex >= 0 && profileIndex < mEngine.getNbOptimizationProfiles())")
            raise RuntimeError("Error in set optimization profile async.")
        if profile_index != self._profile:
            self._profile = profile_index
            self._shapes.clear()  # the dynamic shapes are set again under the new profile
            self._shape_epoch += 1
        return True

    def set_device_memory(self, memory: int, size: int) -> None:
        """setDeviceMemoryV2: "its size must be large enough for performing inference with the given network
        inputs. getDeviceMemorySize() and getDeviceMemorySizeForProfile() report upper bounds of the size": the
        memory is taken here and judged at enqueue, for the profile then active."""
        _check_range(int(memory), int(size), "setDeviceMemoryV2")
        self._memory = (int(memory), int(size))

    def _profile_shapes(self, name: str) -> Tuple[Tuple[int, ...], ...]:
        return tuple(tuple(s) for s in self._engine._meta["profiles"][self._profile][name])

    def set_input_shape(self, name: str, shape: Any) -> bool:
        """"True on success, false if the provided name does not map to an input tensor, or if some other error
        occurred." "Each dimension must agree with the network dimension unless the latter was -1." And the shape
        must lie within the active profile (IOptimizationProfile: "A runtime error will be raised if the input
        tensor dimensions fall outside the valid range for this profile")."""
        t = self._engine._io_names.get(name)
        if t is None or not t[4]:
            _error(3, "executionContext.cpp::setInputShape", f"API Usage Error ({name} is not an input tensor)")
            return False
        s = _dims(shape)
        net = t[2]
        if len(s) != len(net) or any(n != -1 and v != n for v, n in zip(s, net)):
            _error(3, "executionContext.cpp::setInputShape", f"API Usage Error (Parameter check failed, condition: "
                   f"engineDims.d[i] == dims.d[i] Static dimension mismatch while setting input shape {s} of "
                   f"{name}, the network has {net}.)")
            return False
        lo, _, hi = self._profile_shapes(name)
        if any(not a <= v <= b for v, a, b in zip(s, lo, hi)):
            _error(3, "executionContext.cpp::setInputShape", f"API Usage Error (Parameter check failed, condition: "
                   f"satisfyProfile Runtime dimension does not satisfy any optimization profile: {s} of {name}, "
                   f"profile {self._profile} takes {lo} .. {hi}.)")
            return False
        if self._shapes.get(name) != s:
            self._shapes[name] = s
            self._shape_epoch += 1
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        """Inputs: the set shape, else -1 for a runtime dimension not constrained to one value by the profile.
        Outputs: -1 for a runtime dimension while an input shape is unset (NvInferRuntime.h getTensorShape)."""
        t = self._engine._io_names.get(name)
        if t is None:
            return Dims([-1])
        if t[4]:
            if name in self._shapes:
                return Dims(self._shapes[name])
            lo, _, hi = self._profile_shapes(name)
            return Dims([d if d != -1 else (a if a == b else -1) for d, a, b in zip(t[2], lo, hi)])
        known: Dict[str, int] = {}
        for inp in self._engine._io:
            if inp[4]:
                s = _dims(self.get_tensor_shape(inp[0]))
                for dn, v in zip(inp[3], s):
                    if dn and v != -1:
                        known[dn] = v
        return Dims([d if d != -1 else known.get(dn, -1) for d, dn in zip(t[2], t[3])])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        """"Return false if the provided name does not map to an input or output tensor.\""""
        if name not in self._engine._io_names:
            _error(3, "executionContext.cpp::setTensorAddress", f"API Usage Error ({name} is not an I/O tensor)")
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    @property
    def all_binding_shapes_specified(self) -> bool:
        return all(-1 not in _dims(self.get_tensor_shape(t[0])) for t in self._engine._io if t[4])

    def execute_async_v3(self, stream_handle: int) -> bool:
        """enqueueV3: "True if the kernels were enqueued successfully, false otherwise". Before it, "each input must
        have a non-null address and each output must have a non-null address" (setTensorAddress) and every dynamic
        input shape set (setInputShape); a USER_MANAGED context needs its device memory (setDeviceMemoryV2). The work
        is a kernel on the stream: run now, or captured if the stream captures (fake_cudart). Developer guide, "CUDA
        Graphs": a graph captured from enqueueV3 is only valid for the shapes it was captured with, and enqueueV3 must
        run once outside capture after any shape change (layer resources are updated on that first call,
        setOptimizationProfileAsync: "will trigger layer resource updates on the next call of enqueueV3")."""
        e = self._engine
        for t in e._io:
            if not self._addresses.get(t[0]):
                _error(3, "executionContext.cpp::enqueueV3", f"API Usage Error (Parameter check failed, condition: "
                       f"mContext.profileObliviousBindings.at(profileObliviousIndex) != nullptr. Address is not set "
                       f"for {'input' if t[4] else 'output'} tensor {t[0]}. Call setInputTensorAddress or "
                       f"setTensorAddress before enqueue/execute.)")
                return False
        if not self.all_binding_shapes_specified:
            _error(3, "executionContext.cpp::enqueueV3", "API Usage Error (Parameter check failed, condition: all "
                   "input dimensions specified)")
            return False
        if self._strategy == ExecutionContextAllocationStrategy.USER_MANAGED:
            if self._memory is None:
                _error(3, "executionContext.cpp::enqueueV3", "API Usage Error (a USER_MANAGED execution context has no "
                       "device memory: call setDeviceMemoryV2 first)")
                return False
            # the memory must be large enough for the inputs (setDeviceMemoryV2) and "in use from the invocation of
            # enqueueV3() until network execution is complete": live, and of the active profile's size
            need = e.get_device_memory_size_for_profile_v2(self._profile)
            if self._memory[1] < need:
                raise _MemoryViolation(f"the device memory given ({self._memory[1]} bytes) is smaller than profile "
                                       f"{self._profile} needs ({need} bytes)")
            _check_range(self._memory[0], need, "the execution context's device memory")
        graph = fake_cudart.capturing(stream_handle)
        if graph is not None and self._ran_epoch != self._shape_epoch:
            _error(1, "cudaGraph", "Cuda Runtime (operation not permitted when stream is capturing: enqueueV3 was "
                   "not called once after the last shape change before capture)")
            return False
        shapes = {t[0]: _dims(self.get_tensor_shape(t[0])) for t in e._io}
        addresses = dict(self._addresses)
        captured_epoch = self._shape_epoch

        def kernel() -> None:
            if graph is not None and self._shape_epoch != captured_epoch:
                raise _GraphReplayError(
                    f"a CUDA graph captured with input shapes {[shapes[t[0]] for t in e._io if t[4]]} was replayed "
                    f"after this execution context's shapes changed to "
                    f"{[_dims(self.get_tensor_shape(t[0])) for t in e._io if t[4]]} (developer guide, CUDA Graphs: "
                    "capture one graph per context and shape, or capture again after a shape change)")
            feeds = {t[0]: _read(addresses[t[0]], shapes[t[0]], DataType(t[1]), f"input {t[0]}")
                     for t in e._io if t[4]}
            outs = e._run(feeds)
            for t, value in zip([t for t in e._io if not t[4]], outs):
                want = shapes[t[0]]
                if tuple(value.shape) != want:
                    raise _MemoryViolation(f"output {t[0]} has shape {value.shape}, the context said {want}")
                _write(addresses[t[0]], value.astype(_NUMPY[DataType(t[1])]), f"output {t[0]}")

        fake_cudart.launch(stream_handle, kernel)
        if graph is None:
            self._ran_epoch = self._shape_epoch
        return True


# --- TensorRT 10's calibrators (pyInt8.cpp; removed in 11: migration guide "Migrating INT8 Calibration") ----------

class IInt8Calibrator:
    def __init__(self) -> None:
        pass

    def get_batch_size(self) -> int:
        raise NotImplementedError

    def get_batch(self, names: List[str]) -> Optional[List[int]]:
        raise NotImplementedError

    def read_calibration_cache(self) -> Optional[bytes]:
        raise NotImplementedError

    def write_calibration_cache(self, cache: Any) -> None:
        raise NotImplementedError


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


class IInt8MinMaxCalibrator(IInt8Calibrator):
    pass


_TEN_ONLY = ("IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")
_TEN_CLASSES = {n: globals()[n] for n in _TEN_ONLY}


IBuilderConfig: Any = _BuilderConfigBase


def _select(flavour: str) -> None:
    """Makes this module TensorRT 11.4 ("11") or 10.16 ("10"): the version, BuilderFlag's members, IBuilderConfig's
    weak-typing members and the calibrator classes that only 10.x has; then a fresh process state."""
    global _FLAVOUR, __version__, BuilderFlag, IBuilderConfig, NetworkDefinitionCreationFlag
    if flavour not in _VERSIONS:
        raise ValueError(f"flavour {flavour!r}: one of {sorted(_VERSIONS)}")
    _FLAVOUR, __version__ = flavour, _VERSIONS[flavour]
    BuilderFlag = _BuilderFlag10 if flavour == "10" else _BuilderFlag11
    NetworkDefinitionCreationFlag = _NetworkFlag10 if flavour == "10" else _NetworkFlag11
    IBuilderConfig = _BuilderConfig10 if flavour == "10" else _BuilderConfigBase
    for name, cls in _TEN_CLASSES.items():
        if flavour == "10":
            globals()[name] = cls
        else:
            globals().pop(name, None)
    global __all__
    __all__ = _PUBLIC + (list(_TEN_ONLY) if flavour == "10" else [])
    _reset()


# The public API this fake offers (tests/backends/test_tensorrt_fake_conformance.py checks each name against the stubs
# of NVIDIA's real bindings of the selected version).
_PUBLIC = ["__version__", "DataType", "TensorIOMode", "MemoryPoolType", "ProfilingVerbosity", "LayerInformationFormat",
           "NetworkDefinitionCreationFlag", "ExecutionContextAllocationStrategy", "EngineStat", "BuilderFlag", "Dims",
           "IHostMemory", "ILogger", "Logger", "init_libnvinfer_plugins", "ITensor", "INetworkDefinition",
           "ParserError", "OnnxParser", "IOptimizationProfile", "ITimingCache", "IBuilderConfig", "Builder", "Runtime",
           "EngineInspector", "ICudaEngine", "IExecutionContext"]
__all__ = list(_PUBLIC)
_select("11")
