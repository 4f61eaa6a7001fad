"""PyTorch eager runner ("Vanilla" in the tables): CPU or CUDA; fp32, and fp16/bf16 on CUDA.

With cuda_graph=True each input shape is captured once as a CUDA graph and replayed, so small-batch
figures measure the GPU rather than Python's kernel launches (the replay costs one device-to-device
copy of the input into the graph's static buffer).

Usage:
    with TorchRunner(net, device="cuda", precision="fp16", cuda_graph=True) as r: r.infer(x)
"""
from __future__ import annotations

import copy
import io
from typing import Any, Dict, Tuple

import torch

from utils.errors import ArtTRTError
from utils.networks import Network
from utils.runners.base import Runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; a CUDA device that is not there is a user error."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArtTRTError("--device cuda asked, but PyTorch sees no CUDA GPU here (use --device cpu)")
    return dev


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False):
        super().__init__(net.preprocess)
        if precision not in DTYPES:
            raise ArtTRTError(f"the torch backend runs fp32, fp16 or bf16, not {precision}")
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise ArtTRTError(f"torch {precision} runs on CUDA only here: add --device cuda or use fp32")
        if cuda_graph and self.device.type != "cuda":
            raise ArtTRTError("--cuda_graph needs --device cuda")
        self.precision = precision
        self.input_dtype = DTYPES[precision]
        self.net = net
        self.channels_last = channels_last and net.convolutional
        self.cuda_graph = cuda_graph
        self.model: torch.nn.Module = net.model
        self._graphs: Dict[Tuple[int, ...], Tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def activate(self) -> None:
        if self.active:
            return
        model = copy.deepcopy(self.net.model) if self.device.type == "cuda" or self.precision != "fp32" else self.net.model
        model = model.to(self.device, dtype=self.input_dtype).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        super().activate()

    def deactivate(self) -> None:
        self._graphs.clear()
        self.model = self.net.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        super().deactivate()

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _graph_for(self, x: torch.Tensor) -> Tuple[Any, torch.Tensor, torch.Tensor]:
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs requires
                    self._eager(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._eager(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        return self._graphs[key]

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graph:
            return self._eager(x)
        graph, static_in, static_out = self._graph_for(x)
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    def info(self) -> Dict[str, Any]:
        buf = io.BytesIO()
        torch.save(self.net.model.state_dict(), buf)
        scale = torch.finfo(self.input_dtype).bits / 32
        return {"size_mb": round(buf.tell() * scale / 1e6, 3), "layers": self.net.layers, "params": self.net.params,
                "cuda_graph": self.cuda_graph, "channels_last": self.channels_last,
                "size_note": "state_dict bytes at this precision"}
