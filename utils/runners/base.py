"""The Runner interface every backend implements (after Polygraphy's BaseRunner).

A runner owns a model in one backend and precision. It never times itself: the one timing loop
(utils/measure.py) and the one comparison loop (utils/compare.py) drive every runner alike.

Usage:
    with TorchRunner(net, device="cuda", precision="fp16") as r:
        x = r.normalizer(images_uint8)      # copy-in: host uint8 -> device, normalised, in r.input_dtype
        logits = r.infer(x)                 # the model alone, on r.device
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional, Tuple

import torch

from utils.datasets import Normalizer
from utils.networks import Preprocess


class Runner(abc.ABC):
    """One model in one backend and precision.

    Subclasses set `backend`, `precision`, `device`, `input_dtype` and implement `infer`.
    """

    backend: str = ""
    precision: str = "fp32"
    device: torch.device = torch.device("cpu")
    input_dtype: torch.dtype = torch.float32
    cuda_graph: bool = False  # True where infer() replays captured CUDA graphs

    def __init__(self, preprocess: Preprocess):
        self.preprocess = preprocess
        self._normalizer: Optional[Normalizer] = None
        self.active = False

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    @property
    def normalizer(self) -> Normalizer:
        """The copy-in step: uint8 images on the host -> normalised input on this runner's device."""
        if self._normalizer is None:
            self._normalizer = Normalizer(self.preprocess, self.device, self.input_dtype)
        return self._normalizer

    def activate(self) -> None:
        """Loads what inference needs (sessions, engines, graphs). Idempotent."""
        self.active = True

    def deactivate(self) -> None:
        """Frees what activate() took."""
        self.active = False

    @abc.abstractmethod
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the model on a normalised batch already on self.device; returns logits on self.device."""

    def prepare(self, batch_shape: Tuple[int, ...]) -> None:
        """Ahead-of-time work for one input shape (compilation, graph capture); timed as preparation."""

    def info(self) -> Dict[str, Any]:
        """Facts for the record: size_mb, layers, params, and anything that qualifies the figures."""
        return {}

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()
