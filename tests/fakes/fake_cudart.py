"""A CPU stand-in for the part of the CUDA runtime a TensorRT engine meets through PyTorch: streams and stream capture
into CUDA graphs. Written from NVIDIA's CUDA Runtime API documentation, not from ArtTRT's code:

- cudaStreamBeginCapture / cudaStreamEndCapture: "When a stream is in capture mode, all operations pushed into the
  stream will not be executed, but will instead be captured into a graph" (CUDA Runtime API, Stream Management).
- cudaGraphLaunch: "Executes graphExec in stream" (Graph Management): the captured work runs again, with the
  arguments it was captured with (kernel parameters, and so device pointers, are fixed at capture).
- Capture must not happen on the legacy default stream (CUDA Programming Guide, "Stream Capture": "it is invalid to
  capture the legacy stream").

`install(monkeypatch)` puts stand-ins for torch.cuda's Stream, current_stream, stream, device, CUDAGraph, graph and
synchronize in place for one test, so that PyTorch code that captures and replays graphs (utils.backends.base.CudaGraphs)
runs on the CPU; work that is not a captured kernel (tensor copies on the CPU) runs at once, as a host would.
A "kernel" is a Python callable enqueued with `launch(stream_handle, kernel)`: run now, or recorded while the stream
captures. The fake TensorRT enqueues its inference this way.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional

_handles = itertools.count(0x1000)
_capturing: Dict[int, "Graph"] = {}   # stream handle -> the graph it is capturing into
_current: List["Stream"] = []          # the stack of current streams (torch.cuda.stream contexts)


class Stream:
    """A non-default stream: its handle is what PyTorch's `cuda_stream` gives TensorRT (cudaStream_t)."""

    def __init__(self, device: Any = None, priority: int = 0) -> None:
        self.cuda_stream = next(_handles)
        self.device = device

    def wait_stream(self, other: "Stream") -> None:
        pass  # work runs in order on the CPU

    def wait_event(self, event: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass


LEGACY_DEFAULT = Stream()
LEGACY_DEFAULT.cuda_stream = 0  # the legacy default stream's handle is 0 (cudaStreamLegacy is NULL)


class Graph:
    """A captured CUDA graph: the kernels enqueued while its stream captured, replayed in order."""

    def __init__(self) -> None:
        self.kernels: List[Callable[[], None]] = []
        self.captured = False

    def capture_begin(self, stream: Stream) -> None:
        if stream.cuda_stream == 0:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the legacy default stream cannot be captured")
        if stream.cuda_stream in _capturing:
            raise RuntimeError("cudaErrorIllegalState: the stream is already capturing")
        _capturing[stream.cuda_stream] = self

    def capture_end(self, stream: Stream) -> None:
        _capturing.pop(stream.cuda_stream, None)
        self.captured = True

    def replay(self) -> None:
        if not self.captured:
            raise RuntimeError("cudaErrorInvalidValue: the graph was never captured")
        for kernel in self.kernels:
            kernel()

    def reset(self) -> None:
        self.kernels.clear()
        self.captured = False


def capturing(stream_handle: int) -> Optional[Graph]:
    """cudaStreamIsCapturing: the graph a stream is capturing into, or None."""
    return _capturing.get(int(stream_handle))


def launch(stream_handle: int, kernel: Callable[[], None]) -> None:
    """Enqueues a kernel: recorded if the stream captures (it runs at each replay), else run now."""
    graph = capturing(stream_handle)
    if graph is not None:
        graph.kernels.append(kernel)
    else:
        kernel()


def current_stream(device: Any = None) -> Stream:
    return _current[-1] if _current else LEGACY_DEFAULT


@contextlib.contextmanager
def stream(s: Optional[Stream]) -> Iterator[None]:
    if s is None:
        yield
        return
    _current.append(s)
    try:
        yield
    finally:
        _current.pop()


@contextlib.contextmanager
def device(d: Any) -> Iterator[None]:
    yield


@contextlib.contextmanager
def graph(g: Graph, pool: Any = None, stream: Optional[Stream] = None, capture_error_mode: str = "global"
          ) -> Iterator[None]:
    """torch.cuda.graph: capture on `stream` (a new side stream if None), which is current inside the block."""
    s = stream or Stream()
    g.capture_begin(s)
    _current.append(s)
    try:
        yield
    finally:
        _current.pop()
        g.capture_end(s)


def synchronize(device: Any = None) -> None:
    pass


def reset() -> None:
    _capturing.clear()
    _current.clear()


def install(monkeypatch: Any) -> None:
    """torch.cuda's stream and graph API replaced by these stand-ins for one test (monkeypatch undoes it)."""
    import torch

    reset()
    for name, value in (("Stream", Stream), ("current_stream", current_stream), ("stream", stream),
                        ("device", device), ("CUDAGraph", Graph), ("graph", graph), ("synchronize", synchronize)):
        monkeypatch.setattr(torch.cuda, name, value)
