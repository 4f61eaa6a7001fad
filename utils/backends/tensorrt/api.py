"""The one module that imports TensorRT: `tensorrt` (10.x, 11.x; or `tensorrt_bindings`, the compiled module
that the `tensorrt` package wraps, when only the bindings and libs wheels are installed) or, where only that
is installed, TensorRT-RTX (`tensorrt_rtx`, or `tensorrt_rtx_bindings` when only its bindings wheel is).
The other TensorRT modules name it `trt` through a proxy that forwards to the loaded module, and import
`tensorrt` only under TYPE_CHECKING, so mypy checks every attribute against TensorRT's stubs:

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        from utils.backends.tensorrt.api import trt

Also here: the process's one logger, which keeps TensorRT's errors so a failure can quote them, the plugin
registration, Dims as tuples, and the GPU identity, device and stream an engine runs with (the tests on a CPU
supply these three). Type-checked by mypy against TensorRT's stubs.

Usage:
    module, version = load_tensorrt()
    mark = error_mark(); builder = trt.Builder(logger()); ...; last_errors(mark)
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, cast

from utils.core.errors import ArtTRTError

if TYPE_CHECKING:
    import tensorrt as trt
    import torch
else:
    from utils.core.deps import torch

log = logging.getLogger(__name__)

# tensorrt: the package pip installs (a shim over tensorrt_bindings); tensorrt_bindings: the compiled module
# alone (bindings and libs wheels without the meta package); then TensorRT-RTX's two forms.
MODULES = ("tensorrt", "tensorrt_bindings", "tensorrt_rtx", "tensorrt_rtx_bindings")
INSTALL_HINT = ("TensorRT is not installed: pip install tensorrt-cu13 (or tensorrt-cu12) from NVIDIA's package "
                "index, or on RTX GPUs pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings")
_module: Optional[Any] = None


def load_tensorrt() -> Tuple[str, str]:
    """Imports the first TensorRT module present; returns (module name, version)."""
    global _module
    if _module is None:
        errors = []
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError as err:
                errors.append(f"{name}: {err}")
                continue
            # A folder of type stubs (tensorrt-stubs) imports as an empty namespace package: not TensorRT.
            if hasattr(mod, "Builder") and hasattr(mod, "__version__"):
                _module = mod
                break
            errors.append(f"{name}: no Builder (stubs only?)")
        else:
            log.debug("TensorRT imports failed: %s", errors)
            raise ArtTRTError(INSTALL_HINT)
    return str(_module.__name__), str(_module.__version__)


class _LoadedTensorRT:
    """Attribute access forwards to the TensorRT module load_tensorrt() found (loading it if needed)."""

    def __getattr__(self, name: str) -> Any:
        if _module is None:
            load_tensorrt()
        return getattr(_module, name)


if not TYPE_CHECKING:
    trt = _LoadedTensorRT()


class _Logger:
    """The one TensorRT logger of the process. TensorRT keeps a single logger pointer: while a Builder or Runtime made
    with one logger is alive, another one given to a new Builder or Runtime is ignored and the messages keep going to
    the first (NVIDIA/TensorRT#1475; Polygraphy keeps one for that reason, backend/trt/util.py get_trt_logger). So
    every Builder, Runtime and parser here gets this one, and a failure quotes the errors logged since its mark()."""

    def __init__(self) -> None:
        self.verbose = False
        self.errors: List[str] = []  # the last 50 errors TensorRT logged
        self.total = 0               # how many it logged in all (a mark counts these)
        self.instance: Optional[trt.ILogger] = None
        self.module: Any = None  # the TensorRT module the instance subclasses

    def get(self) -> trt.ILogger:
        if self.instance is None or self.module is not _module:
            outer = self

            class CollectingLogger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                    if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                        outer.errors.append(msg)
                        outer.total += 1
                        del outer.errors[:-50]
                        log.error("TensorRT: %s", msg)
                    elif severity == trt.ILogger.Severity.WARNING:
                        log.warning("TensorRT: %s", msg)
                    elif outer.verbose:
                        log.info("TensorRT: %s", msg)

            self.instance = CollectingLogger()
            self.module = _module
        return self.instance


_LOGGER = _Logger()
_plugins_for: Any = None  # the TensorRT module whose plugins are registered


def logger(verbose: Optional[bool] = None) -> trt.ILogger:
    """The process's TensorRT logger (made on first use); verbose=True also passes TensorRT's info messages on."""
    if verbose is not None:
        _LOGGER.verbose = verbose
    return _LOGGER.get()


def error_mark() -> int:
    """How many errors TensorRT has logged so far: last_errors(mark) quotes only what it logged after that."""
    return _LOGGER.total


def last_errors(mark: int = 0) -> str:
    """TensorRT's own error messages since `mark` (the last two of them), for a one-sentence failure."""
    since = min(max(_LOGGER.total - mark, 0), len(_LOGGER.errors))
    errors = _LOGGER.errors[len(_LOGGER.errors) - since:]
    return "; ".join(e.strip() for e in errors[-2:]) or "no message from TensorRT"


def init_plugins() -> None:
    """TensorRT's standard plugins registered once, before any parse or deserialize (as Polygraphy does in
    NetworkFromOnnx and EngineFromBytes: trt.init_libnvinfer_plugins(logger, "")): an ONNX node or an engine layer
    that is one of them is found. A build without it (TensorRT-RTX) has nothing to register."""
    global _plugins_for
    if _plugins_for is None or _plugins_for is not _module:
        if hasattr(trt, "init_libnvinfer_plugins"):
            # the binding types the logger as a capsule (void*); the ILogger is what Polygraphy passes
            trt.init_libnvinfer_plugins(cast(Any, logger()), "")
        _plugins_for = _module


def dims_tuple(dims: trt.Dims) -> Tuple[int, ...]:
    """A Dims as a plain tuple (-1 marks a dynamic dimension)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def gpu_identity(index: Optional[int] = None) -> Dict[str, str]:
    """Name and compute capability of GPU `index` (default: the current one, which the run's device scope
    sets): part of every engine and timing-cache key."""
    if not torch.cuda.is_available():
        raise ArtTRTError("TensorRT needs an NVIDIA GPU, and none is visible here")
    p = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
    return {"gpu": p.name, "compute_capability": f"{p.major}.{p.minor}"}


def family_of_loaded() -> str:
    """'tensorrt' or 'tensorrt_rtx' (a module and its compiled bindings are one TensorRT)."""
    name, _ = load_tensorrt()
    return name[:-len("_bindings")] if name.endswith("_bindings") else name


def run_device(device: str = "cuda") -> "torch.device":
    """The CUDA device an engine runs on and its buffers live on: 'cuda' is the current GPU (the run's device scope
    made it current)."""

    dev = torch.device(device)
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def stream_handle(device: "torch.device") -> int:
    """The cudaStream_t of the current PyTorch stream on `device`: TensorRT enqueues there, after the copy-in and
    before the copy-out that PyTorch orders on the same stream."""

    return int(torch.cuda.current_stream(device).cuda_stream)
