"""PyTorch eager backend ("Vanilla" in the tables): CPU or CUDA; fp32, and fp16/bf16 on CUDA.

With cuda_graph=True each input shape is captured once as a CUDA graph and replayed, so small-batch
figures measure the GPU rather than Python's kernel launches (the replay costs one device-to-device
copy of the input into the graph's static buffer).

Usage:
    with TorchRunner(net, device="cuda", precision="fp16", cuda_graph=True) as r: r.infer(x)
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Tuple


from utils.core.deps import inference_mode
from utils.backends.base import CudaGraphs, RunSpec, Runner, mib, resolve_device, torch_tf32
from utils.core.errors import ArtTRTError
from utils.data.options import DataOptions

if TYPE_CHECKING:
    from utils.models.networks import Network
    import torch
else:
    from utils.core.deps import torch


DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # precision -> torch dtype's name


@dataclass(frozen=True)
class Options:
    channels_last: bool = False


def add_args(g: Any) -> None:
    g.add_argument("--channels_last", action="store_true", help="channels_last memory format (torch)")


def label(spec: RunSpec) -> str:
    return "channels_last" if (spec.options or Options()).channels_last else ""


def make(spec: RunSpec, net: Network, data: DataOptions, batch_size: int) -> Tuple["TorchRunner", Dict[str, Any]]:
    opts: Options = spec.options or Options()
    return TorchRunner(net, spec.device, spec.precision, opts.channels_last, spec.cuda_graph,
                       tf32=spec.tf32), {"prepare_s": 0.0}


class TorchRunner(Runner):
    backend = "torch"
    torch_ops = True

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False, tf32: bool = False):
        super().__init__(net.preprocess)
        if precision not in DTYPES:
            raise ArtTRTError(f"the torch backend runs fp32, fp16 or bf16, not {precision}")
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise ArtTRTError(f"torch {precision} runs on CUDA only here: add --device cuda or use fp32")
        if cuda_graph and self.device.type != "cuda":
            raise ArtTRTError("--cuda_graph needs --device cuda")
        self.precision = precision
        self.input_dtype = getattr(torch, DTYPES[precision])
        self.net = net
        self.channels_last = channels_last and net.convolutional
        self.model: torch.nn.Module = net.model
        self.graphs = CudaGraphs(self.device, self._forward) if cuda_graph else None
        self.tf32 = tf32
        self._scope = contextlib.ExitStack()

    def activate(self) -> None:
        if self.active:
            return
        model = copy.deepcopy(self.net.model) if self.device.type == "cuda" or self.precision != "fp32" else self.net.model
        model = model.to(self.device, dtype=self.input_dtype).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._scope.enter_context(torch_tf32(self.tf32, self.device))  # last: nothing after it can fail and leave it
        super().activate()

    def deactivate(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()
        self.model = self.net.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._scope.close()
        super().deactivate()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model on one batch, as captured into a CUDA graph where cuda_graph is on."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    @inference_mode
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.graphs(x) if self.graphs is not None else self._forward(x)

    @inference_mode
    def prepare(self, batch_shape: Tuple[int, ...]) -> None:
        """With CUDA graphs: captures this shape's graph now, so the capture is preparation, not a timed batch."""
        if self.graphs is not None and self.graphs.active and tuple(batch_shape) not in self.graphs.graphs:
            self.infer(torch.zeros(batch_shape, device=self.device, dtype=self.input_dtype))
            self.synchronize()

    def info(self) -> Dict[str, Any]:
        buf = io.BytesIO()
        torch.save(self.net.model.state_dict(), buf)
        scale = torch.finfo(self.input_dtype).bits / 32
        facts: Dict[str, Any] = {"size_mib": mib(buf.tell() * scale), "layers": self.net.layers,
                                 "params": self.net.params, "channels_last": self.channels_last,
                                 "tf32": self.tf32 if self.device.type == "cuda" else None,
                                 "size_note": "state_dict bytes at this precision"}
        return facts
