"""torchao backend: PyTorch's own low precision (torchao.quantization.quantize_) run through torch.compile, beside
TensorRT's int8/fp8 engines. No calibration: torchao scales weights per output row when it quantizes, and int8 dynamic
and fp8 scale activations per row at run time.

  int8 dynamic     Int8DynamicActivationInt8WeightConfig: int8 weights and int8 activations (int8 matrix products)
  int8 weight-only Int8WeightOnlyConfig (--ao_int8 weight_only): int8 weights dequantised into the float product
  fp8              Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()): e4m3 weights and activations;
                   compute capability 8.9 or above (Ada, Hopper, Blackwell)

torchao's quantize_ replaces nn.Linear weights only (its default filter): a ResNet keeps every convolution in float
and gains at most its last layer; nn.MultiheadAttention's projections are not nn.Linear layers torchao takes either.
The record counts what was quantized (quantized_layers of linear_layers, conv_layers left, the share of weights) so a
row never claims a speed-up for layers it did not touch. Float layers run in bf16 on a GPU (torchao's documented
path) and fp32 on the CPU.

Usage:
    with AoRunner(net, "cuda", "int8", "dynamic") as r:
        r.prepare((256, 3, 224, 224)); r.infer(x)
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from utils.backends.base import RunSpec, mib
from utils.backends.compile import MODES, CompileRunner
from utils.core.errors import ArtTRTError
from utils.data.options import DataOptions

if TYPE_CHECKING:
    import torch

    from utils.models.networks import Network
else:
    from utils.core.deps import torch

INT8_MODES = ("dynamic", "weight_only")
INSTALL = ("torchao is not installed: pip install torchao (PyTorch's quantization library; torchao 0.18 needs "
           "torch 2.11+)")
FP8_CAPABILITY = (8, 9)


@dataclass(frozen=True)
class Options:
    ao_int8: str = "dynamic"
    compile_mode: str = "default"


def add_args(g: Any) -> None:
    g.add_argument("--ao_int8", default="dynamic", choices=INT8_MODES, metavar="M",
                   help="torchao int8: dynamic or weight_only")


def label(spec: RunSpec) -> str:
    opts: Options = spec.options or Options()
    if spec.precision == "int8":
        return "weight-only" if opts.ao_int8 == "weight_only" else "dynamic activations"
    return "dynamic activations"


def check(spec: RunSpec) -> None:
    """torchao installed; fp8 on a GPU of compute capability 8.9 or above."""
    if importlib.util.find_spec("torchao") is None:
        raise ArtTRTError(INSTALL)
    if spec.precision == "fp8" and spec.device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(spec.device).index or 0
        if index < torch.cuda.device_count():
            cap = torch.cuda.get_device_capability(index)
            if tuple(cap) < FP8_CAPABILITY:
                raise ArtTRTError(f"torchao fp8 needs a GPU of compute capability 8.9 or above (Ada, Hopper, "
                                  f"Blackwell): {torch.cuda.get_device_name(index)} is {cap[0]}.{cap[1]}")


def make(spec: RunSpec, net: Network, data: DataOptions, batch_size: int) -> Tuple["AoRunner", Dict[str, Any]]:
    opts: Options = spec.options or Options()
    return AoRunner(net, spec.device, spec.precision, opts.ao_int8, opts.compile_mode, spec.cuda_graph), \
        {"prepare_s": 0.0}


def config_for(precision: str, int8: str = "dynamic") -> Any:
    """torchao's quantization config for a precision (the documented names of torchao 0.18)."""
    try:
        from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig,
                                          Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, PerRow)
    except ImportError as err:
        raise ArtTRTError(f"{INSTALL} ({err})") from err
    if precision == "fp8":
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    if precision != "int8":
        raise ArtTRTError(f"the torchao backend runs int8 or fp8, not {precision}")
    if int8 not in INT8_MODES:
        raise ArtTRTError(f"--ao_int8 {int8!r} is not one of {', '.join(INT8_MODES)}")
    return Int8WeightOnlyConfig() if int8 == "weight_only" else Int8DynamicActivationInt8WeightConfig()


# torch._int_mm, the int8 x int8 product of int8 dynamic on CUDA, refuses fewer than 17 rows ("self.size(0) needs to be
# greater than 16"): a layer fed one row per image (a classifier head) fails at every batch up to 16 (measured on an
# H200: resnet50 and vit_b_16 at batch 1).
INT_MM_MIN_ROWS = 17


def quantize_linear_layers(model: torch.nn.Module, precision: str, int8: str = "dynamic",
                           sample: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """Quantizes `model` in place with torchao's quantize_ and counts what changed: the Linear layers whose weight
    became a torchao tensor, the Linear and convolution layers in all, and the share of the model's weights that sit
    in quantized layers. torchao's default filter takes nn.Linear layers; for int8 dynamic, `sample` (one image) finds
    the layers fed fewer than INT_MM_MIN_ROWS rows per image, which stay float (kept_for_rows in the counts)."""
    from torchao.quantization import quantize_
    from torchao.quantization.quant_api import _is_linear
    small: Dict[str, int] = {}
    if precision == "int8" and int8 == "dynamic" and sample is not None:
        small = {name: rows for name, rows in rows_per_image(model, sample).items() if rows < INT_MM_MIN_ROWS}
    quantize_(model, config_for(precision, int8), filter_fn=lambda m, name: _is_linear(m) and name not in small)
    return {**count_quantized(model), "kept_for_rows": len(small)}


def rows_per_image(model: torch.nn.Module, sample: torch.Tensor) -> Dict[str, int]:
    """Each nn.Linear's rows per image on `sample` (its input's elements / features / images): 1 for a classifier
    head, the token count for a transformer's blocks."""
    rows: Dict[str, int] = {}
    images = int(sample.shape[0])

    def hook(name: str) -> Any:
        return lambda mod, args, out: rows.__setitem__(name, args[0].numel() // args[0].shape[-1] // images)

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return rows


def count_quantized(model: torch.nn.Module) -> Dict[str, Any]:
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    done = [m for m in linear if _quantized(m.weight)]
    total = sum(p.numel() for p in model.parameters()) or 1
    in_done = sum(m.weight.numel() for m in done)
    return {"quantized_layers": len(done), "linear_layers": len(linear), "conv_layers": len(convs),
            "quantized_weight_share": round(in_done / total, 4)}


def _quantized(weight: Any) -> bool:
    """A weight torchao replaced: a tensor subclass of its own, not a plain Parameter or Tensor."""
    return type(weight) not in (torch.nn.Parameter, torch.Tensor) and type(weight).__module__.startswith("torchao")


class AoRunner(CompileRunner):
    backend = "torchao"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "int8", int8: str = "dynamic",
                 mode: str = "default", cuda_graph: bool = False):
        if mode not in MODES:
            raise ArtTRTError(f"--compile_mode {mode!r} is not one of {', '.join(MODES)}")
        config_for(precision, int8)  # refuses a precision or mode it does not run, and a missing torchao, now
        compute = "bf16" if str(device).startswith("cuda") else "fp32"
        super().__init__(net, device, compute, mode, net.convolutional, cuda_graph)
        self.compute_precision = compute
        self.precision = precision
        self.int8 = int8
        self.counts: Dict[str, Any] = {}
        self._inductor: Optional[Dict[str, Any]] = None

    def _before_compile(self, model: torch.nn.Module) -> torch.nn.Module:
        """Quantizes this runner's own copy; quantize_ sets inductor options of its own (set_inductor_config), kept
        for this runner only: the process's options come back at deactivate()."""
        import torch._inductor.config as inductor
        self._inductor = inductor.get_config_copy()
        try:
            crop = self.net.preprocess.crop
            sample = torch.zeros((1, 3, crop, crop), device=self.device, dtype=self.input_dtype)
            self.counts = quantize_linear_layers(model, self.precision, self.int8, sample)
        except (RuntimeError, NotImplementedError, ValueError, AssertionError) as err:
            raise ArtTRTError(f"torchao could not quantize {self.net.name} to {self.precision} on {self.device}: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
        return model

    @property
    def peak_precision(self) -> str:
        """The precision whose GPU peak this runner's % of peak is read against: its own where the quantized layers hold
        most of the weights and compute in it, else the float layers' (weight-only int8 computes in float; a ResNet's
        convolutions are float)."""
        low = self.precision != "int8" or self.int8 != "weight_only"
        return self.precision if low and float(self.counts.get("quantized_weight_share") or 0) > 0.5 \
            else self.compute_precision

    def deactivate(self) -> None:
        if self._inductor is not None:
            import torch._inductor.config as inductor
            inductor.load_config(self._inductor)
            self._inductor = None
        super().deactivate()

    def info(self) -> Dict[str, Any]:
        facts = super().info()
        if self.counts:
            buf = io.BytesIO()
            torch.save(self.model.state_dict(), buf)  # torchao's tensors save their int8/fp8 data and scales
            facts.update(size_mib=mib(buf.tell()), size_note="state_dict bytes as torchao quantized it",
                         float_layers=self.compute_precision, int8_mode=self.int8 if self.precision == "int8" else None,
                         peak_precision=self.peak_precision, **self.counts)
        facts["channels_last"] = self.channels_last
        return facts
