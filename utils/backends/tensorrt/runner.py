"""TensorRT runner: a deserialized engine run with torch CUDA tensors as I/O (no pycuda, one CUDA context).

What the engine serves is read from the engine itself: a static input takes its one batch; a dynamic one takes the
batches of its optimization profiles (ICudaEngine.get_tensor_profile_shape), each batch run under the profile tuned
for it. Every batch size gets an execution context of its own, made once: its profile selected and its input shape
set once (not on every enqueue), and, with CUDA graphs, its own captured graph. NVIDIA's guidance is one execution
context per captured graph (developer guide, quoted in NVIDIA/TensorRT#3798; trtexec captures one graph per context),
because a graph replayed after its context's shape changed runs with stale state. The contexts share one block of
device memory, allocated through PyTorch (USER_MANAGED, ICudaEngine.device_memory_size_v2): they run one at a time
on the run's stream, which NVIDIA allows ("no concurrent execution when two contexts share the same memory",
#3798), and PyTorch's allocator then counts that memory.

A batch the engine does not serve is refused in one sentence, never fed: a static engine of batch B fed b > B would
compute B images (and images/s would be inflated by b/B), fed b < B it would read past the input buffer.
Type-checked by mypy against TensorRT's stubs, and run in CI against the contract fake in tests/fakes/tensorrt.

Usage:
    with TensorRTRunner(Path("weights/engines/x.engine"), preprocess, "int8") as r: r.infer(x)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from utils.backends.base import CudaGraphs, Runner, mib
from utils.backends.tensorrt import api
from utils.backends.tensorrt.api import dims_tuple, error_mark, last_errors
from utils.backends.tensorrt.build import engine_layer_count
from utils.backends.tensorrt.engine_layers import engine_information
from utils.core.errors import ArtTRTError
from utils.data.preprocess import Preprocess

if TYPE_CHECKING:
    import tensorrt as trt
    import torch
else:
    from utils.backends.tensorrt.api import trt
    from utils.core.deps import torch


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


class _Context:
    """One batch size's execution context: its profile, input and output shapes, and (with CUDA graphs) its graph."""

    def __init__(self, context: trt.IExecutionContext, profile: int, shape: Tuple[int, ...],
                 out_shape: Tuple[int, ...]):
        self.context, self.profile, self.shape, self.out_shape = context, profile, shape, out_shape


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_path: Path, preprocess: Preprocess, precision: str,
                 facts: Optional[Dict[str, Any]] = None, cuda_graph: bool = False, device: str = "cuda"):
        super().__init__(preprocess)
        self.path = engine_path
        self.precision = precision
        self.device = api.run_device(device)
        self.facts = dict(facts or {})
        self.engine: Optional[trt.ICudaEngine] = None
        self.input_name = ""
        self.output_name = ""
        self.output_dtype = torch.float32
        self.input_shape: Tuple[int, ...] = ()          # the engine's, -1 where dynamic
        self.ranges: List[Tuple[int, int, int]] = []    # (min, opt, max) batch of each profile
        self.contexts: Dict[Tuple[int, ...], _Context] = {}
        self.memory: Optional[torch.Tensor] = None
        self._runtime: Optional[trt.Runtime] = None
        self.last_shape: Optional[Tuple[int, ...]] = None
        self.graphs = CudaGraphs(self.device, self._enqueue) if cuda_graph else None

    def activate(self) -> None:
        if self.active:
            return
        mark = error_mark()
        api.init_plugins()  # an engine with a standard plugin layer deserializes only once they are registered
        self._runtime = trt.Runtime(api.logger())  # kept alive as long as the engine
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtTRTError(f"TensorRT cannot load engine {self.path} ({last_errors(mark)}): it is "
                              "corrupt, from another TensorRT version, or not for this GPU; rebuild it with "
                              "build_trt.py --force")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtTRTError(f"engine {self.path.name} has {len(inputs)} inputs and {len(outputs)} outputs: ArtTRT "
                              "runs image classifiers, one image input and one logits output")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = torch_dtype(engine.get_tensor_dtype(self.input_name))
        self.output_dtype = torch_dtype(engine.get_tensor_dtype(self.output_name))
        self._normalizer = None
        self.input_shape = dims_tuple(engine.get_tensor_shape(self.input_name))
        if -1 in self.input_shape:
            self.ranges = []
            for k in range(engine.num_optimization_profiles):
                lo, opt, hi = (dims_tuple(d) for d in engine.get_tensor_profile_shape(self.input_name, k))
                self.ranges.append((lo[0], opt[0], hi[0]))
        else:
            b = self.input_shape[0]
            self.ranges = [(b, b, b)]
        # one block of activation memory for every context (they run one at a time on the run's stream)
        size = int(engine.device_memory_size_v2)
        self.memory = torch.empty(max(size, 1), dtype=torch.uint8, device=self.device)
        self.engine = engine
        self.contexts = {}
        super().activate()

    def deactivate(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()
        self.contexts = {}
        self.engine = None
        self.memory = None
        self._runtime = None
        super().deactivate()

    # --- what the engine serves ------------------------------------------------------------------------------------

    def _ranges(self) -> List[Tuple[int, int, int]]:
        if self.engine is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        return self.ranges

    def serves(self, batch_size: int) -> bool:
        """True where a profile of the engine takes batch_size (a static engine: its one batch)."""
        return any(lo <= batch_size <= hi for lo, _, hi in self._ranges())

    def served(self) -> str:
        """The batches the engine takes, in words."""
        ranges = self._ranges()
        if all(lo == hi for lo, _, hi in ranges):
            sizes = sorted({lo for lo, _, _ in ranges})
            return f"batch {sizes[0]} only" if len(sizes) == 1 else "batches " + ", ".join(map(str, sizes))
        return "batches " + ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, _, hi in ranges)

    def check_batch(self, batch_size: int) -> None:
        if not self.serves(batch_size):
            raise ArtTRTError(f"{self.name}: the engine {self.path.name} takes {self.served()}, not {batch_size} "
                              "(its optimization profiles); rebuild it for this batch (build_trt.py --min_batch/"
                              "--max_batch, or --trt_shapes static per batch size)")

    @property
    def fixed_shape(self) -> bool:
        """A short batch is padded to the full one where CUDA graphs replay one shape each, or where the engine does
        not take every size from 1 to its largest."""
        if self.cuda_graph:
            return True
        covered = 0
        for lo, _, hi in sorted(self._ranges()):
            if lo > covered + 1:
                return True
            covered = max(covered, hi)
        return False

    def _profile_for(self, b: int) -> int:
        """The profile tuned for b (its opt), else the first whose range takes it."""
        ranges = self._ranges()
        exact = [k for k, (lo, opt, hi) in enumerate(ranges) if opt == b]
        return exact[0] if exact else next(k for k, (lo, _, hi) in enumerate(ranges) if lo <= b <= hi)

    def _context(self, shape: Tuple[int, ...]) -> _Context:
        """The execution context of one input shape, made once: profile selected, shape set, device memory given."""
        held = self.contexts.get(shape)
        if held is not None:
            return held
        engine = self.engine
        assert engine is not None and self.memory is not None
        self.check_batch(shape[0])
        if len(shape) != len(self.input_shape) or any(d not in (-1, v) for d, v in zip(self.input_shape, shape)):
            raise ArtTRTError(f"{self.name}: the engine takes input {self.input_shape} (-1: any), not {shape}")
        mark = error_mark()
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:  # nullptr from TensorRT (out of host memory, say): the reason is in its log
            raise ArtTRTError(f"{self.name}: TensorRT made no execution context for input {shape} "
                              f"({last_errors(mark)})")
        context.set_device_memory(int(self.memory.data_ptr()), int(self.memory.numel()))
        profile = self._profile_for(shape[0])
        if profile != 0:
            try:  # the binding raises where the C++ call returns false
                context.set_optimization_profile_async(profile, api.stream_handle(self.device))
            except RuntimeError as err:
                raise ArtTRTError(f"{self.name}: TensorRT refused optimization profile {profile} "
                                  f"({last_errors(mark)})") from err
        if -1 in self.input_shape and not context.set_input_shape(self.input_name, shape):
            raise ArtTRTError(f"{self.name}: TensorRT refused input shape {shape} under profile {profile} "
                              f"({last_errors(mark)})")
        out_shape = dims_tuple(context.get_tensor_shape(self.output_name))  # the context's own, for this input
        if -1 in out_shape:
            raise ArtTRTError(f"{self.name}: the engine's output shape {out_shape} is not known for input {shape}")
        held = self.contexts[shape] = _Context(context, profile, shape, out_shape)
        return held

    # --- running ---------------------------------------------------------------------------------------------------

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.graphs(x) if self.graphs is not None else self._enqueue(x)

    def _enqueue(self, x: torch.Tensor) -> torch.Tensor:
        if self.engine is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        c = self._context(tuple(int(v) for v in x.shape))
        if x.dtype != self.input_dtype:
            raise ArtTRTError(f"{self.name}: the engine takes {self.input_dtype} input, not {x.dtype}")
        x = x.contiguous()
        out = torch.empty(c.out_shape, dtype=self.output_dtype, device=self.device)
        ctx = c.context
        ctx.set_tensor_address(self.input_name, int(x.data_ptr()))
        ctx.set_tensor_address(self.output_name, int(out.data_ptr()))
        mark = error_mark()
        if not ctx.execute_async_v3(api.stream_handle(self.device)):
            # a RuntimeError: where it happens during a CUDA graph capture, CudaGraphs goes on without graphs
            raise RuntimeError(f"TensorRT execute_async_v3 failed for input {c.shape} ({last_errors(mark)})")
        return out

    def prepare(self, batch_shape: Tuple[int, ...]) -> None:
        """The batch size's context (and with CUDA graphs its graph) made now, as preparation, not in a timed batch."""
        shape = tuple(int(v) for v in batch_shape)
        if self.engine is None or not self.serves(shape[0]):
            return
        self.last_shape = shape
        if self.graphs is not None and self.graphs.active:
            if shape not in self.graphs.graphs:
                self.infer(torch.zeros(shape, device=self.device, dtype=self.input_dtype))
                self.synchronize()
        else:
            self._context(shape)

    # --- what the record says --------------------------------------------------------------------------------------

    def engine_information(self, shape: Tuple[int, ...]) -> Optional[Dict[str, Any]]:
        if self.engine is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        # formats of a dynamic engine resolve only for a concrete shape: the inspector reads that shape's context
        return engine_information(self.engine, self._context(tuple(int(v) for v in shape)).context)

    def device_bytes_outside_torch(self) -> int:
        """GPU memory TensorRT holds that PyTorch's allocator does not count: the engine's weights (its activation
        memory is allocated through PyTorch here)."""
        # EngineStat and ICudaEngine.get_engine_stat came in 10.x after 10.8 (the oldest 10.x wheel on PyPI has neither)
        stat = getattr(trt, "EngineStat", None)
        get = getattr(self.engine, "get_engine_stat", None) if self.engine is not None else None
        if stat is None or get is None:
            return 0
        return int(get(stat.TOTAL_WEIGHTS_SIZE))

    def trtexec_run(self, shape: Tuple[int, ...]) -> str:
        """The trtexec command that times this engine at `shape` as ArtTRT does (samples/common/sampleOptions.cpp):
        the profile ArtTRT selects, CUDA graphs on or off, host<->device copies included (ArtTRT's latency-all; its
        latency-model is trtexec's "GPU Compute Time"). TensorRT 11's trtexec captures CUDA graphs and leaves out the
        copies by default (--noCudaGraph, --includeDataTransfers); 10.x's does neither (--useCudaGraph)."""
        eleven = not str(trt.__version__).startswith(("8.", "9.", "10."))  # TensorRT's trtexec (not TensorRT-RTX's)
        parts = ["trtexec", f"--loadEngine={self.path}"]
        if len(self._ranges()) > 1:
            parts.append(f"--useProfile={self._profile_for(shape[0])}")
        if -1 in self.input_shape:
            parts.append(f"--shapes={self.input_name}:" + "x".join(str(v) for v in shape))
        if eleven:
            parts += ([] if self.cuda_graph else ["--noCudaGraph"]) + ["--includeDataTransfers"]
        elif self.cuda_graph:
            parts.append("--useCudaGraph")
        return " ".join(parts)

    def info(self) -> Dict[str, Any]:
        engine = self.engine
        if engine is None:
            raise RuntimeError("TensorRTRunner.activate() first")
        facts: Dict[str, Any] = {"size_mib": mib(self.path.stat().st_size),
                                 "layers": engine_layer_count(engine), "engine": str(self.path),
                                 "size_note": "serialized engine", "layers_note": "engine layers (inspector)",
                                 "engine_profiles": [list(r) for r in self._ranges()],
                                 "engine_activation_mib": mib(int(engine.device_memory_size_v2)),
                                 "engine_weights_mib": mib(self.device_bytes_outside_torch())}
        facts.update(self.facts)
        if self.last_shape is not None and api.family_of_loaded() == "tensorrt":  # TensorRT-RTX has no trtexec
            facts["trtexec_run"] = self.trtexec_run(self.last_shape)
        return facts
