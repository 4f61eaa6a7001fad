"""TensorRT runner: a deserialized engine run with torch CUDA tensors as I/O (no pycuda, one CUDA context).

Named I/O tensors, execute_async_v3 on the current torch stream, per-batch input shapes for dynamic
engines, dtype mapping from TensorRT to torch, CUDA-graph replay shared with the PyTorch runner.
Type-checked by mypy against TensorRT's stubs.

Usage:
    with TensorRTRunner(Path("weights/engines/x.engine"), preprocess, "int8") as r: r.infer(x)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch

from utils.backends.base import CudaGraphs, Runner, mib
from utils.backends.tensorrt.api import dims_tuple, last_errors, make_logger
from utils.backends.tensorrt.build import engine_layer_count
from utils.core.errors import ArtTRTError
from utils.data.preprocess import Preprocess

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from utils.backends.tensorrt.api import trt


def torch_dtype(dt: trt.DataType) -> torch.dtype:
    """TensorRT DataType -> torch dtype (fp8 only where torch has float8_e4m3fn)."""
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16,
             trt.DataType.INT8: torch.int8, trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64,
             trt.DataType.BOOL: torch.bool, trt.DataType.UINT8: torch.uint8}
    if hasattr(torch, "float8_e4m3fn"):
        table[trt.DataType.FP8] = torch.float8_e4m3fn
    if dt not in table:
        raise ArtTRTError(f"engine I/O type {dt} has no torch equivalent")
    return table[dt]


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_path: Path, preprocess: Preprocess, precision: str,
                 facts: Optional[Dict[str, Any]] = None, cuda_graph: bool = False, device: str = "cuda"):
        super().__init__(preprocess)
        self.path = engine_path
        self.precision = precision
        dev = torch.device(device)
        self.device = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        self.facts = dict(facts or {})
        self.engine: Optional[trt.ICudaEngine] = None
        self.context: Optional[trt.IExecutionContext] = None
        self.input_name = ""
        self.output_name = ""
        self.output_dtype = torch.float32
        self.dynamic = False
        self.graphs = CudaGraphs(self.device, self._enqueue) if cuda_graph else None

    def activate(self) -> None:
        if self.active:
            return
        logger = make_logger()
        self._runtime = trt.Runtime(logger)  # kept alive as long as the engine
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtTRTError(f"TensorRT cannot load engine {self.path} ({last_errors(logger)}): it is "
                              "corrupt, from another TensorRT version, or not for this GPU; rebuild it with "
                              "build_trt.py --force")
        self.engine = engine
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_name = name
            else:
                self.output_name = name
        self.input_dtype = torch_dtype(engine.get_tensor_dtype(self.input_name))
        self.output_dtype = torch_dtype(engine.get_tensor_dtype(self.output_name))
        self._normalizer = None
        self.dynamic = -1 in dims_tuple(engine.get_tensor_shape(self.input_name))
        self.context = engine.create_execution_context()
        super().activate()

    def deactivate(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()
        self.context = None
        self.engine = None
        super().deactivate()

    @property
    def fixed_shape(self) -> bool:
        return self.cuda_graph or not self.dynamic  # a static engine takes its one shape only

    def serves(self, batch_size: int) -> bool:
        """A dynamic engine serves any batch of its profile; a static one its own batch size only."""
        if self.engine is None or self.dynamic:
            return True
        return dims_tuple(self.engine.get_tensor_shape(self.input_name))[0] == batch_size

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.graphs(x) if self.graphs is not None else self._enqueue(x)

    def _enqueue(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context
        if ctx is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        x = x.contiguous()
        if self.dynamic and not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            raise ArtTRTError(f"batch shape {tuple(x.shape)} is outside the engine's optimisation profile")
        out = torch.empty(dims_tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.output_dtype,
                          device=self.device)
        ctx.set_tensor_address(self.input_name, int(x.data_ptr()))
        ctx.set_tensor_address(self.output_name, int(out.data_ptr()))
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return out

    def engine_information(self, shape: Tuple[int, ...]) -> Optional[Dict[str, Any]]:
        from utils.backends.tensorrt.engine_layers import engine_information

        if self.engine is None or self.context is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        if self.dynamic:  # formats resolve only for a concrete shape
            self.context.set_input_shape(self.input_name, tuple(shape))
        return engine_information(self.engine, self.context)

    def info(self) -> Dict[str, Any]:
        if self.engine is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        facts: Dict[str, Any] = {"size_mib": mib(self.path.stat().st_size),
                                 "layers": engine_layer_count(self.engine), "engine": str(self.path),
                                 "size_note": "serialized engine", "layers_note": "engine layers (inspector)"}
        facts.update(self.facts)
        return facts
