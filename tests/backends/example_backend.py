"""An example backend in one module: torch.export's ExportedProgram, run as its GraphModule (fp32)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import torch

from utils.backends.base import RunSpec, Runner, resolve_device


@dataclass(frozen=True)
class Options:
    export_max_batch: int = 4096  # the largest batch the exported program accepts


def add_args(g: Any) -> None:
    g.add_argument("--export_max_batch", type=int, help="torch.export: largest batch (default 4096)")


def make(spec: RunSpec, net: Any, data: Any, batch_size: int) -> Tuple[Runner, Dict[str, Any]]:
    return ExportRunner(net, spec.device, spec.options or Options()), {"prepare_s": 0.0}


class ExportRunner(Runner):
    backend = "export"

    def __init__(self, net: Any, device: str, options: Options):
        super().__init__(net.preprocess)
        self.net, self.device, self.options = net, resolve_device(device), options

    def activate(self) -> None:
        model = self.net.model.to(self.device).eval()
        x = torch.zeros(2, 3, self.preprocess.crop, self.preprocess.crop, device=self.device)
        batch = torch.export.Dim("batch", min=1, max=self.options.export_max_batch)
        self.module = torch.export.export(model, (x,), dynamic_shapes=({0: batch},)).module()
        super().activate()

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
