"""TensorRT runner: a deserialized engine run with torch CUDA tensors as I/O (no pycuda, one CUDA context).

Named I/O tensors, execute_async_v3 on the current torch stream, per-batch input shapes for
dynamic engines, dtype mapping from TensorRT to torch. Type-checked against tensorrt-stubs.

Usage:
    with TensorRTRunner(Path("weights/engines/x.engine"), preprocess, "int8") as r: r.infer(x)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch

from utils import trt_build
from utils.errors import ArtTRTError
from utils.networks import Preprocess
from utils.runners.base import Runner

if TYPE_CHECKING:
    import tensorrt as trt
else:
    trt = None  # bound by _bind() once TensorRT is loaded


def _bind() -> None:
    trt_build.load_tensorrt()
    globals()["trt"] = trt_build.module_object()


def torch_dtype(dt: "trt.DataType") -> torch.dtype:
    """TensorRT DataType -> torch dtype (fp8 only where torch has float8_e4m3fn)."""
    t = trt
    table = {t.DataType.FLOAT: torch.float32, t.DataType.HALF: torch.float16, t.DataType.BF16: torch.bfloat16,
             t.DataType.INT8: torch.int8, t.DataType.INT32: torch.int32, t.DataType.INT64: torch.int64,
             t.DataType.BOOL: torch.bool, t.DataType.UINT8: torch.uint8}
    if hasattr(torch, "float8_e4m3fn"):
        table[t.DataType.FP8] = torch.float8_e4m3fn
    if dt not in table:
        raise ArtTRTError(f"engine I/O type {dt} has no torch equivalent")
    return table[dt]


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_path: Path, preprocess: Preprocess, precision: str,
                 facts: Optional[Dict[str, Any]] = None, cuda_graph: bool = False):
        super().__init__(preprocess)
        self.cuda_graph = cuda_graph
        self._graphs: Dict[Tuple[int, ...], Tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self.path = engine_path
        self.precision = precision
        self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cuda")
        self.facts = dict(facts or {})
        self.engine: Optional[trt.ICudaEngine] = None
        self.context: Optional[trt.IExecutionContext] = None
        self.input_name = ""
        self.output_name = ""
        self.output_dtype = torch.float32

    def activate(self) -> None:
        if self.active:
            return
        _bind()
        t = trt
        logger = trt_build.make_logger()
        self._runtime = t.Runtime(logger)  # kept alive as long as the engine
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtTRTError(f"TensorRT cannot load engine {self.path} ({trt_build.last_errors(logger)}): it is "
                              "corrupt, from another TensorRT version, or not for this GPU; rebuild it with "
                              "build_trt.py --force")
        self.engine = engine
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == t.TensorIOMode.INPUT:
                self.input_name = name
            else:
                self.output_name = name
        self.input_dtype = torch_dtype(engine.get_tensor_dtype(self.input_name))
        self.output_dtype = torch_dtype(engine.get_tensor_dtype(self.output_name))
        self._normalizer = None
        self.dynamic = -1 in trt_build.dims_tuple(engine.get_tensor_shape(self.input_name))
        self.context = engine.create_execution_context()
        super().activate()

    def deactivate(self) -> None:
        self._graphs.clear()
        self.context = None
        self.engine = None
        super().deactivate()

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graph:
            return self._enqueue(x)
        key = tuple(x.shape)
        if key not in self._graphs:
            # TensorRT enqueues can be captured once shapes and addresses are set (a first enqueue
            # outside capture lets it finish any lazy set-up, as TensorRT's CUDA-graph guide says).
            static_in = x.clone()
            self._enqueue(static_in)
            torch.cuda.current_stream(self.device).synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._enqueue(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    def _enqueue(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context
        assert ctx is not None, "activate() first"
        x = x.contiguous()
        if self.dynamic and not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            raise ArtTRTError(f"batch shape {tuple(x.shape)} is outside the engine's optimisation profile")
        out = torch.empty(trt_build.dims_tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.output_dtype, device=self.device)
        ctx.set_tensor_address(self.input_name, int(x.data_ptr()))
        ctx.set_tensor_address(self.output_name, int(out.data_ptr()))
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return out

    def info(self) -> Dict[str, Any]:
        assert self.engine is not None
        facts: Dict[str, Any] = {"size_mb": round(self.path.stat().st_size / 1e6, 3),
                                 "layers": trt_build.engine_layer_count(self.engine), "engine": str(self.path),
                                 "size_note": "serialized engine", "layers_note": "engine layers (inspector)"}
        facts.update(self.facts)
        return facts
