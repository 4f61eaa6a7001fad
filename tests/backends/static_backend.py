"""A test backend whose runner serves one batch size only, as a static TensorRT engine does: it says which batch
it was built for, so a test can check that each job's runner was made for that job's batch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch

from utils.backends.base import RunSpec, Runner, resolve_device

BUILT: List[int] = []  # the batch each runner was built for, in order


@dataclass(frozen=True)
class Options:
    pass


def add_args(g: Any) -> None:
    pass


def make(spec: RunSpec, net: Any, data: Any, batch_size: int) -> Tuple[Runner, Dict[str, Any]]:
    BUILT.append(batch_size)
    return StaticRunner(net, spec.device, batch_size), {"prepare_s": 0.0, "built_for": batch_size}


class StaticRunner(Runner):
    backend = "static"

    def __init__(self, net: Any, device: str, batch_size: int):
        super().__init__(net.preprocess)
        self.net, self.device, self.batch_size = net, resolve_device(device), batch_size

    @property
    def fixed_shape(self) -> bool:
        return True

    def serves(self, batch_size: int) -> bool:
        return batch_size == self.batch_size

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch_size:  # a short last batch is padded by the loop, as for a static engine
            raise RuntimeError(f"built for batch {self.batch_size}, fed {x.shape[0]}")
        return self.net.model(x)
