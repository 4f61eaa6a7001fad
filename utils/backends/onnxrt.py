"""ONNX Runtime backend: the CPU provider, and the CUDA / TensorRT providers where present.

ONNX Runtime silently falls back to the CPU when a provider fails to load; this runner checks the
providers the session really uses after creating it and refuses to go on if the one asked for is
missing, so a record never claims a provider that did not run.

Usage:
    with OnnxRuntimeRunner("weights/onnx/x.onnx", preprocess, provider="cpu") as r: r.infer(x)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from utils.backends.base import Runner, RunSpec, mib
from utils.core.content import files_bytes, onnx_files
from utils.core.errors import ArtTRTError, first_line
from utils.data.options import DataOptions
from utils.data.preprocess import Preprocess
from utils.models.chain import model_file
from utils.models.onnx_export import import_onnxruntime, session_options
from utils.models.onnx_layers import layer_count
from utils.models.precision import ORT_FP8_NOTE

if TYPE_CHECKING:
    import torch

    from utils.models.networks import Network
else:
    from utils.core.deps import torch

if TYPE_CHECKING:
    import onnx
else:
    from utils.core.deps import onnx


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
ORT_TO_TORCH = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16"}  # torch names


@dataclass(frozen=True)
class Options:
    provider: Optional[str] = None  # default: cuda on a CUDA device, else cpu


def add_args(g: Any) -> None:
    g.add_argument("--provider", choices=list(PROVIDERS),
                   help="ONNX Runtime execution provider (default: cuda with --device cuda, else cpu)")


def provider_of(spec: RunSpec) -> str:
    opts: Options = spec.options or Options()
    return opts.provider or ("cuda" if spec.device.startswith("cuda") else "cpu")


def label(spec: RunSpec) -> str:
    return provider_of(spec)


def check(spec: RunSpec) -> None:
    """Before any decoding, export or calibration: ONNX Runtime is there, and fp8 is not asked of the CPU."""
    import_onnxruntime()
    if spec.precision == "fp8" and provider_of(spec) == "cpu":
        raise ArtTRTError(ORT_FP8_NOTE)


def make(spec: RunSpec, net: Network, data: DataOptions, batch_size: int) -> Tuple["OnnxRuntimeRunner", Dict[str, Any]]:
    path, facts = model_file(net, spec.precision, spec.model, data)
    return OnnxRuntimeRunner(path, net.preprocess, provider_of(spec), spec.precision, facts=facts,
                             tf32=spec.tf32), facts


def check_providers(requested: str, used: List[str], available: List[str]) -> None:
    """Raises if the provider asked for is not the one the session runs first."""
    want = PROVIDERS[requested]
    if not used or used[0] != want:
        reason = ("it is not in this ONNX Runtime build" if want not in available
                  else "it failed to load (missing CUDA/cuDNN/TensorRT libraries?)")
        raise ArtTRTError(f"ONNX Runtime would run on {used[0] if used else 'nothing'} instead of {want}: "
                          f"{reason}; refusing to record a silent fallback")


class OnnxRuntimeRunner(Runner):
    backend = "onnxrt"

    def __init__(self, onnx_path: str | os.PathLike[str], preprocess: Preprocess, provider: str = "cpu",
                 precision: str = "fp32", threads: Optional[int] = None, facts: Optional[Dict[str, Any]] = None,
                 session_per_batch: Optional[bool] = None, tf32: bool = False):
        super().__init__(preprocess)
        if provider not in PROVIDERS:
            raise ArtTRTError(f"unknown ONNX Runtime provider {provider!r}: one of {', '.join(PROVIDERS)}")
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ArtTRTError(f"ONNX file {self.path} does not exist")
        self.provider = provider
        self.precision = precision
        if provider != "cpu" and not torch.cuda.is_available():
            raise ArtTRTError(f"the ONNX Runtime {provider} provider needs a CUDA GPU, and none is visible")
        # the run's GPU (device_scope made it current): the session and the bound tensors live there
        self.device = torch.device("cuda", torch.cuda.current_device()) if provider != "cpu" else torch.device("cpu")
        self.threads = threads
        self.tf32 = tf32
        self.facts = dict(facts or {})
        self.session: Any = None
        self.providers_used: List[str] = []
        # On the CUDA provider each prepared batch size gets a session of its own (see prepare). Not on the CPU (no
        # such plan), nor on the TensorRT provider (it builds an engine per session: not measured)
        self.session_per_batch = provider == "cuda" if session_per_batch is None else session_per_batch
        self.sessions: Dict[int, Any] = {}  # batch size -> the session that runs it

    def activate(self) -> None:
        if self.active:
            return
        ort = import_onnxruntime()
        opts = session_options(ort)  # Q/DQ int8 kept int8 (see there), as the mixed-precision search runs it
        if self.threads:
            opts.intra_op_num_threads = self.threads
        # ONNX Runtime's idle threads spin after each run and would steal the cores that the copy-in
        # and copy-out of the next batch need; without spinning latency-all measures the real work.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.provider == "cpu" and self.precision in ("fp16", "bf16"):
            # ONNX Runtime 1.24's CPU layout optimisations (level "all") crash the process (SIGSEGV) building a
            # session for ModelOpt's fp16 ViT-B/16, where "extended" builds it (measured here); the CPU runs fp16 as
            # fp32 kernels on fp16-rounded weights in any case, so the layout passes gain it nothing
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            self.facts["graph_optimization"] = "extended (fp16/bf16 on the CPU provider)"
        # Keep ORT's own error on a file it cannot load as one sentence for the user.
        if self.provider == "cuda" and hasattr(ort, "preload_dlls"):  # CUDA/cuDNN of the pip packages, as torch's
            try:
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - the session below says what is missing
                pass
        provider: Any = PROVIDERS[self.provider]
        if self.device.type == "cuda":
            provider = (provider, {"device_id": int(self.device.index or 0)})
            if self.provider == "cuda":  # the CUDA provider's use_tf32 is on by default: strict fp32 unless --tf32
                provider[1]["use_tf32"] = int(self.tf32)
        self._session_args = (ort, opts, provider)
        self.session = self._new_session()
        self.sessions = {}
        self.providers_used = list(self.session.get_providers())
        self.build = f"onnxruntime {ort.__version__} ({ort.get_device()} build)"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        self.input_dtype = getattr(torch, ORT_TO_TORCH.get(inp.type, "float32"))
        self.output_dtype = getattr(torch, ORT_TO_TORCH.get(out.type, "float32"))
        self.num_outputs = int(out.shape[-1]) if isinstance(out.shape[-1], int) else 0
        if self.device.type == "cuda" and not self.num_outputs:
            raise ArtTRTError(f"{self.path.name}: the class dimension of the output is not fixed, which GPU "
                              "output binding needs; export it with onnx_transform.py")
        self._normalizer = None
        super().activate()

    def _new_session(self) -> Any:
        """A session on the provider asked for, or one sentence (a silent fallback to the CPU is refused)."""
        ort, opts, provider = self._session_args
        try:
            session = ort.InferenceSession(str(self.path), opts, providers=[provider])
        except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise ArtTRTError(f"ONNX Runtime cannot load {self.path}: {first_line(err)}") from err
        check_providers(self.provider, list(session.get_providers()), list(ort.get_available_providers()))
        return session

    def deactivate(self) -> None:
        self.session = None
        self.sessions = {}
        super().deactivate()

    def _input_dims(self) -> List[Any]:
        return list(self.session.get_inputs()[0].shape) if self.session is not None else []

    @property
    def fixed_shape(self) -> bool:
        """A file with a static batch: the timing loop pads a short batch to it instead of feeding fewer images."""
        dims = self._input_dims()
        return bool(dims) and isinstance(dims[0], int) and dims[0] > 0

    def prepare(self, batch_shape: Tuple[int, ...]) -> None:
        """Batches of batch_shape fit the file's input, or one sentence (ONNX Runtime's own refusal comes mid-run)."""
        dims = self._input_dims()
        if len(dims) != len(batch_shape) or any(isinstance(d, int) and d > 0 and d != b
                                                for d, b in zip(dims, batch_shape)):
            raise ArtTRTError(f"{self.path.name} takes input {dims}; this run feeds batches of {list(batch_shape)}: "
                              "match --batch_size to its static batch, or export it with a dynamic batch (-1)")
        # ONNX Runtime's CUDA Conv keeps one cuDNN plan per node and rebuilds it whenever a run's input shape differs
        # from the last run's (Conv::UpdateState -> CreateCudnnFeExecutionPlan). Served through one session on the
        # H200 (2026-12-04), ResNet-50 batches of mixed sizes took 98 ms (fp32) and 127 ms (fp16) at the median at the
        # lowest rate, and no Server rate met p99 <= 15 ms; with a session per prepared size, 5.0 and 3.8 ms at the
        # Server peak (docs/serving.md). Each such session never sees a second shape (as torch.compile and CUDA graphs
        # keep one per shape); it holds its own copy of the weights and its own activation arena on the GPU.
        b = int(batch_shape[0])
        if self.session_per_batch and self.session is not None and b not in self.sessions:
            self.sessions[b] = self.session if not self.sessions else self._new_session()

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        session = self.sessions.get(int(x.shape[0]), self.session)
        if self.device.type == "cpu":
            out = session.run([self.output_name], {self.input_name: x.numpy()})[0]
            return torch.from_numpy(out)
        # GPU providers: bind torch CUDA tensors for input and output, so no host copy hides in the model time.
        # ONNX Runtime runs on a stream of its own: the input must be complete on ours first.
        x = x.contiguous()
        torch.cuda.current_stream(self.device).synchronize()
        out = torch.empty((x.shape[0], self.num_outputs), dtype=self.output_dtype, device=self.device)
        binding = session.io_binding()
        binding.bind_input(self.input_name, "cuda", self.device.index or 0, _np_dtype(x.dtype), tuple(x.shape),
                           x.data_ptr())
        binding.bind_output(self.output_name, "cuda", self.device.index or 0, _np_dtype(out.dtype), tuple(out.shape),
                            out.data_ptr())
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out

    def info(self) -> Dict[str, Any]:

        model = onnx.load(str(self.path), load_external_data=False)
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        facts = {"size_mib": mib(files_bytes(onnx_files(self.path))), "layers": layer_count(model.graph),
                 "params": params, "onnx_file": str(self.path), "providers_used": self.providers_used,
                 "provider": self.provider, "size_note": "ONNX file and its external data",
                 # the CUDA provider's use_tf32 follows --tf32; the TensorRT provider has no such option and keeps
                 # TensorRT's default (TF32 on)
                 "tf32": {"cuda": self.tf32, "tensorrt": True}.get(self.provider),
                 "layers_note": "ONNX layers (Q/DQ and Constant nodes not counted, as --inspect)",
                 "onnxruntime_build": getattr(self, "build", None),
                 "onnxruntime_session": {"session.qdqisint8allowed": "1", "session.intra_op.allow_spinning": "0"},
                 "onnxruntime_session_per_batch": self.session_per_batch,
                 "onnxruntime_sessions": sorted(self.sessions) or None}  # the batch sizes with a session of their own
        if self.device.type == "cuda":
            facts["latency_model_note"] = ("ONNX Runtime runs on a CUDA stream of its own and returns when it is done: "
                                           "latency-model is the host's wall time of run_with_iobinding, not "
                                           "CUDA events around the model's kernels")
        facts.update(self.facts)
        return facts


def _np_dtype(dtype: torch.dtype) -> Any:
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]
