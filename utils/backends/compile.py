"""torch.compile backend (inductor): static shapes per batch size, channels_last for convolutional networks,
fp32/fp16/bf16, behind the same Runner interface. Compilation happens in prepare() for each batch shape,
so its cost is recorded as preparation time, not hidden in the warm-up. With --cuda_graph (modes default and
max-autotune-no-cudagraphs), each shape's compiled kernels are also captured once as a CUDA graph in prepare() and
replayed (as trtexec --useCudaGraph does): a batch then costs one launch instead of Python launching every kernel.

Usage:
    with CompileRunner(net, "cuda", "fp16", mode="max-autotune") as r:
        r.prepare((256, 3, 224, 224)); r.infer(x)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Set, Tuple


from utils.core.deps import inference_mode
from utils.backends.base import RunSpec
from utils.backends.torch_eager import TorchRunner
from utils.core.errors import ArtTRTError
from utils.data.options import DataOptions

if TYPE_CHECKING:
    import torch
    from utils.models.networks import Network
else:
    from utils.core.deps import torch


MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes whose compiled code replays CUDA graphs itself


@dataclass(frozen=True)
class Options:
    compile_mode: str = "default"


def add_args(g: Any) -> None:
    g.add_argument("--compile_mode", default="default", choices=MODES,
                   help="torch.compile mode (reduce-overhead replays CUDA graphs)")


def label(spec: RunSpec) -> str:
    return str((spec.options or Options()).compile_mode)


def make(spec: RunSpec, net: Network, data: DataOptions, batch_size: int) -> Tuple["CompileRunner", Dict[str, Any]]:
    opts: Options = spec.options or Options()
    return CompileRunner(net, spec.device, spec.precision, opts.compile_mode, net.convolutional,
                         spec.cuda_graph, tf32=spec.tf32), {"prepare_s": 0.0}


class CompileRunner(TorchRunner):
    backend = "compile"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32", mode: str = "default",
                 channels_last: bool = True, cuda_graph: bool = False, tf32: bool = False):
        if mode not in MODES:
            raise ArtTRTError(f"--compile_mode {mode!r} is not one of {', '.join(MODES)}")
        if cuda_graph and mode in GRAPH_MODES:
            raise ArtTRTError(f"--cuda_graph with --compile_mode {mode}: that mode already replays torch.compile's own "
                              "CUDA graphs; --cuda_graph captures the kernels of default or max-autotune-no-cudagraphs")
        super().__init__(net, device, precision, channels_last=channels_last, cuda_graph=cuda_graph, tf32=tf32)
        self.mode = mode
        self._compiled: Any = None
        self._shapes: Set[Tuple[int, ...]] = set()

    def activate(self) -> None:
        if self.active:
            return
        super().activate()
        self.model = self._before_compile(self.model)
        # dynamic=False: one specialised graph per batch shape, as a deployed model would be compiled.
        self._compiled = torch.compile(self.model, mode=self.mode, dynamic=False, fullgraph=False)

    def _before_compile(self, model: torch.nn.Module) -> torch.nn.Module:
        """What a subclass does to its own copy of the model before it is compiled (torchao: quantizes it)."""
        return model

    def deactivate(self) -> None:
        self._compiled = None
        self._shapes.clear()
        torch._dynamo.reset()
        super().deactivate()

    @property
    def fixed_shape(self) -> bool:
        return True  # dynamic=False: one compiled graph per shape

    @inference_mode
    def prepare(self, batch_shape: Tuple[int, ...]) -> None:
        """Compiles for this shape (a few calls: reduce-overhead records its graph on the third)."""
        if batch_shape in self._shapes:
            return
        _allow_recompiles(len(self._shapes) + 1)
        x = torch.zeros(batch_shape, device=self.device, dtype=self.input_dtype)
        for _ in range(3):
            self.infer(x)
        self.synchronize()
        self._shapes.add(batch_shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled model on one batch; with cuda_graph, what CudaGraphs captures once per shape."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._compiled(x)
        # reduce-overhead replays CUDA graphs whose output buffers are reused by the next replay
        return out.clone() if self.mode == "reduce-overhead" else out

    def info(self) -> Dict[str, Any]:
        facts = super().info()
        facts["compile_mode"] = self.mode
        return facts


def _allow_recompiles(shapes: int) -> None:
    """Dynamo compiles a frame at most recompile_limit times (8 by default) and then runs it eagerly without a
    word: a serving job's 13 padded shapes (1 .. 256) would time eager PyTorch under the compile label. The limit
    is raised to the shapes this runner prepares."""
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    if getattr(cfg, name) < shapes:
        setattr(cfg, name, shapes)
