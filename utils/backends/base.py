"""The Runner interface every backend implements (after Polygraphy's BaseRunner), the run specification
every backend is built from, and the CUDA-graph replay that the PyTorch and TensorRT runners share.

A runner owns a model in one backend and precision. It never times itself: the one timing loop
(utils/measure/timing.py) and the one comparison loop (utils/measure/compare.py) drive every runner alike.

Usage:
    with runner:                            # activate() ... deactivate()
        x = runner.normalizer(images_uint8)  # copy-in: host uint8 -> device, normalised, in runner.input_dtype
        logits = runner.infer(x)             # the model alone, on runner.device
"""
from __future__ import annotations

import abc
import contextlib
import logging
from dataclasses import dataclass, field
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

from utils.core.errors import ArtTRTError, first_line
from utils.data.preprocess import Normalizer, Preprocess
from utils.models.chain import ModelOptions

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One backend and precision on one device, with everything that changes how it is built or run."""

    backend: str
    precision: str = "fp32"
    device: str = "cpu"
    max_batch_size: Optional[int] = None    # the largest batch of the whole run (a dynamic engine's maximum);
    # the batch a runner is fed is the job's (MeasureOptions.batch_size), given to make_runner, never kept here
    cuda_graph: bool = False                # replay a CUDA graph per batch shape where the backend can
    tf32: bool = False                      # fp32 on a GPU may use TF32 (every backend alike); off: strict fp32
    batch_sizes: Tuple[int, ...] = ()       # every batch size the run measures (TensorRT tunes a profile for each)
    model: ModelOptions = field(default_factory=ModelOptions)  # the ONNX file and how it is made
    options: Any = None                     # the backend's own Options (None: its defaults)

    def largest_batch(self, batch_size: int) -> int:
        """The largest batch a runner first fed batch_size must serve in this run."""
        return max(batch_size, self.max_batch_size or 1)


@contextlib.contextmanager
def torch_tf32(enabled: bool, device: torch.device) -> Iterator[None]:
    """PyTorch's TF32 switches set for a block on a GPU: matmuls (off by default) and cuDNN convolutions (on by default)
    alike, so "fp32" means one thing in every PyTorch row, and the same thing as a TensorRT engine built without
    BuilderFlag.TF32 (trtexec --noTF32). PyTorch 2.9+ has fp32_precision ("ieee" or "tf32"), and refuses a read of the
    old allow_tf32 switches once it was used: the new one where it exists, the old one before."""
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        before = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = before
        return
    legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


def mib(nbytes: float) -> float:
    """Bytes -> MiB (2**20 bytes), the unit of the original's size column."""
    return round(nbytes / 2**20, 3)


def parse_device(device: str) -> "torch.device":
    """'cpu', 'cuda' or 'cuda:N' as a device, whether or not it is here (a plan may name GPUs this machine lacks:
    those rows are skipped); anything else is one sentence. The one check of --device's spelling, made without
    loading PyTorch (an argument refusal answers at once); the device object is made where it is used."""
    if not DEVICE_SPELLING.fullmatch(device or ""):
        kind = (device or "").split(":")[0]
        if kind and kind not in ("cpu", "cuda") and re.fullmatch(r"[a-z_]+(:\d+)?", device):
            raise ArtTRTError(f"--device {device!r}: ArtTRT runs on cpu or cuda[:N]")
        raise ArtTRTError(f"--device {device!r} is not a device: use cpu, cuda or cuda:N")
    return DeviceName(device)


class DeviceName(str):
    """A checked device spelling ('cpu', 'cuda', 'cuda:N'), with torch.device's type and index, no PyTorch needed."""

    @property
    def type(self) -> str:
        return self.split(":")[0]

    @property
    def index(self) -> Optional[int]:
        return int(self.split(":")[1]) if ":" in self else None


DEVICE_SPELLING = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; a device that is not there is a user error."""
    dev = torch.device(parse_device(device))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ArtTRTError("--device cuda asked, but PyTorch sees no CUDA GPU here (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ArtTRTError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


@contextlib.contextmanager
def device_scope(device: str) -> Iterator[None]:
    """Makes `device` the current CUDA device and a new non-default stream its current stream for the block:
    events, copies, graph captures and TensorRT's enqueue then all go to that device and stream (enqueueV3 on
    the legacy default stream would add synchronisations). A no-op on the CPU, and where no GPU is visible
    (the runner itself then says what is missing)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        yield
        return
    dev = resolve_device(device)
    with torch.cuda.device(dev), torch.cuda.stream(torch.cuda.Stream(dev)):
        yield


class Runner(abc.ABC):
    """One model in one backend and precision.

    Subclasses set `backend`, `precision`, `device`, `input_dtype` and implement `infer`.
    """

    backend: str = ""
    precision: str = "fp32"
    device: torch.device       # set by each runner (the CPU unless it runs on a GPU)
    input_dtype: torch.dtype   # float32 unless the runner's engine or precision takes another
    torch_ops = False  # runs PyTorch operators (the PyTorch profiler sees its work on the CPU too)

    def __init__(self, preprocess: Preprocess):
        self.preprocess = preprocess
        if not hasattr(type(self), "device"):  # a subclass may name its device as a class attribute
            self.device = torch.device("cpu")
        if not hasattr(type(self), "input_dtype"):
            self.input_dtype = torch.float32
        self._normalizer: Optional[Normalizer] = None
        self.graphs: Optional[CudaGraphs] = None  # set by runners that can replay CUDA graphs
        self.active = False

    @property
    def cuda_graph(self) -> bool:
        """True where infer() replays captured CUDA graphs (False again if a capture failed)."""
        return self.graphs is not None and self.graphs.active

    @property
    def fixed_shape(self) -> bool:
        """True where another batch shape would cost a recompile or a new capture (or cannot run at all):
        the timing loop then pads a short batch to the full batch instead of feeding it as it is."""
        return self.cuda_graph

    def serves(self, batch_size: int) -> bool:
        """True where this runner can run batches of batch_size (a static TensorRT engine: its one size only)."""
        return True

    def check_batch(self, batch_size: int) -> None:
        """One sentence where this runner cannot run batches of batch_size (before any of them is fed)."""
        if not self.serves(batch_size):
            raise ArtTRTError(f"{self.name} cannot run batches of {batch_size}")

    def device_bytes_outside_torch(self) -> int:
        """GPU memory the runner's library holds that PyTorch's allocator does not count (TensorRT's engine weights):
        added to the record's prepare_peak_gpu_mb."""
        return 0

    label: Optional[str] = None  # the row label the registry gives it (make_runner): how tables name it

    @property
    def name(self) -> str:
        """How every table, comparison title, log line and progress bar names this runner: its row label
        ("Vanilla", "ONNX Runtime int8 (cpu)", "TRT fp16 (static)"), the original project's names."""
        return self.label or f"{self.backend}-{self.precision}"

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
        """Facts for the record: size_mib, layers, params, and anything that qualifies the figures."""
        return {}

    def engine_information(self, shape: Tuple[int, ...]) -> Optional[Dict[str, Any]]:
        """What a compiled engine says of its layers at this input shape (TensorRT's engine inspector, as JSON);
        None for a runner without one."""
        return None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()


class CudaGraphs:
    """One captured CUDA graph per input shape, replayed after copying the input into its static buffer.

    `run` must be capturable once warmed up (PyTorch modules, TensorRT's execute_async_v3 on the current
    stream). Capture follows torch.cuda.graphs' recipe: three warm-up runs on a side stream, then the
    capture. If a capture fails, the runner goes on without graphs and `error` says why (as trtexec does).
    """

    def __init__(self, device: torch.device, run: Callable[[torch.Tensor], torch.Tensor]):
        self.device, self.run = device, run
        self.graphs: Dict[Tuple[int, ...], Tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self.error: Optional[str] = None

    def _capture(self, x: torch.Tensor) -> Tuple[Any, torch.Tensor, torch.Tensor]:
        static_in = x.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.run(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(self.device), torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device)):
            static_out = self.run(static_in)
        return graph, static_in, static_out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.error is not None:
            return self.run(x)
        key = tuple(x.shape)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(x)
            except RuntimeError as err:
                self.error = first_line(err)
                log.warning("CUDA graph capture failed (%s): going on without CUDA graphs", self.error)
                torch.cuda.synchronize(self.device)
                return self.run(x)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    @property
    def active(self) -> bool:
        return self.error is None

    def clear(self) -> None:
        self.graphs.clear()
