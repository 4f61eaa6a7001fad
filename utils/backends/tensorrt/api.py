"""The one module that imports TensorRT: `tensorrt` (10.x, 11.x; or `tensorrt_bindings`, the compiled module
that the `tensorrt` package wraps, when only the bindings and libs wheels are installed) or, where only that
is installed, TensorRT-RTX (`tensorrt_rtx`, or `tensorrt_rtx_bindings` when only its bindings wheel is).
The other TensorRT modules name it `trt` through a proxy that forwards to the loaded module, and import
`tensorrt` only under TYPE_CHECKING, so mypy checks every attribute against TensorRT's stubs:

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        from utils.backends.tensorrt.api import trt

Also here: the logger that keeps TensorRT's errors so a failure can quote them, Dims as tuples, and the GPU
identity that every engine and timing-cache key includes. Type-checked by mypy against TensorRT's stubs.

Usage:
    module, version = load_tensorrt()
    builder = trt.Builder(make_logger())
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from utils.core.errors import ArtTRTError

if TYPE_CHECKING:
    import tensorrt as trt

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


def dims_tuple(dims: trt.Dims) -> Tuple[int, ...]:
    """A Dims as a plain tuple (-1 marks a dynamic dimension)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def gpu_identity(index: Optional[int] = None) -> Dict[str, str]:
    """Name and compute capability of GPU `index` (default: the current one, which the run's device scope
    sets): part of every engine and timing-cache key."""
    import torch

    if not torch.cuda.is_available():
        raise ArtTRTError("TensorRT needs an NVIDIA GPU, and none is visible here")
    p = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
    return {"gpu": p.name, "compute_capability": f"{p.major}.{p.minor}"}
