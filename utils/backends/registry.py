"""The one table of backends (after Ultralytics' export_formats()): each row names a backend, its table
label, its precisions and needs, and the module that implements it, imported only when used.

argparse choices and groups, row labels, the checks for unsupported combinations and the making of
runners all read this table; nothing above the backends layer compares backend names.

A backend module provides:
    Options                      a frozen dataclass of its own settings (argparse dests)
    add_args(group)              its argument group
    make(spec, net, data, batch_size) -> (Runner, preparation facts); builds what it needs, cached
                                 (batch_size: the job's, the first batch the runner is fed)
and optionally:
    check(spec)                  cheap refusals before any decoding, export or build
    variants(options)            several runs from one set of options (TensorRT: dynamic and static)
    label(spec)                  what the options add to the row label ("cuda", "max-autotune", ...)

Usage:
    spec = RunSpec("onnxrt", "int8", options=options_from_args("onnxrt", args))
    check(spec)
    runner, facts = make_runner(spec, net, DataOptions(dataset="datasets/demo"))
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from utils.backends import base
from utils.backends.base import Runner, RunSpec
from utils.backends.tensorrt.engine_layers import step_engine_probe
from utils.core.errors import ArtTRTError
from utils.core.namespace import from_args
from utils.data.options import DataOptions
from utils.models import mixed_precision
from utils.models.precision import CALIB_METHODS

if TYPE_CHECKING:
    from utils.models.networks import Network

PRECISIONS: Tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class Backend:
    name: str
    label: str                            # row label in tables ("Vanilla" is the original's plain PyTorch)
    precisions: Tuple[str, ...]
    gpu_only_precisions: Tuple[str, ...]  # precisions that need a CUDA GPU
    needs_gpu: bool
    module: str                           # the module implementing it (Options, add_args, make, ...)
    uses_onnx: bool = False               # runs an ONNX file (--onnx, --input_shape, precision conversion)
    # On a GPU, a study runs each setup of this backend in a process of its own: its runtime keeps a memory arena
    # of its own that never shrinks, beside PyTorch's cache (an H200 study ran ONNX Runtime out of memory at
    # batch 256 after PyTorch setups); the child's exit gives every byte back.
    own_process_on_gpu: bool = False
    # What it builds depends on every batch size of the run (TensorRT: an optimization profile tuned for each), so a
    # job's key holds the run's batch sizes too: a record is reused only by a run that builds the same engine.
    built_for_run_batches: bool = False
    # Its int8/fp8 rows are calibrated on images (--calib_method, --calib_size, --calib_methods/--calib_sizes make
    # more rows of them); torchao's are not (it scales weights when it quantizes and activations at run time).
    calibrates: bool = False
    # The libraries besides PyTorch whose versions change its figures (the record's env fields: ONNX Runtime runs
    # ModelOpt's calibration for TensorRT too): records differing only in others are one environment for its rows,
    # and a study job's key holds only these. None (a backend that does not say): every library's version.
    libraries: Optional[Tuple[str, ...]] = None
    # What a provider adds to them (provider, libraries): ONNX Runtime's TensorRT provider runs TensorRT.
    provider_libraries: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    def libraries_of(self, provider: Optional[str] = None) -> Optional[Tuple[str, ...]]:
        """The libraries a row of this backend runs on `provider` (None: every library)."""
        if self.libraries is None:
            return None
        return self.libraries + dict(self.provider_libraries).get(provider or "", ())

    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)


BACKENDS: Dict[str, Backend] = {
    "torch": Backend("torch", "Vanilla", ("fp32", "fp16", "bf16"), ("fp16", "bf16"), False,
                     "utils.backends.torch_eager", libraries=()),
    # (Triton, which compiles its kernels, comes pinned by the torch wheel: torch's version names it)
    "compile": Backend("compile", "torch.compile", ("fp32", "fp16", "bf16"), ("fp16", "bf16"), False,
                       "utils.backends.compile", libraries=()),
    "onnxrt": Backend("onnxrt", "ONNX Runtime", PRECISIONS, ("bf16", "fp8"), False, "utils.backends.onnxrt",
                      uses_onnx=True, own_process_on_gpu=True, calibrates=True,
                      libraries=("onnx", "onnxruntime", "modelopt"), provider_libraries=(("tensorrt", ("tensorrt",)),)),
    "tensorrt": Backend("tensorrt", "TRT", PRECISIONS, PRECISIONS, True, "utils.backends.tensorrt", uses_onnx=True,
                        built_for_run_batches=True, calibrates=True,
                        libraries=("onnx", "onnxruntime", "modelopt", "tensorrt", "tensorrt_rtx")),
    "torchao": Backend("torchao", "torchao", ("int8", "fp8"), ("fp8",), False, "utils.backends.ao",
                       libraries=("torchao",)),
}

# The runner every other is measured against (speed-ups, top-1 drops, top-1 agreement): PyTorch fp32.
REFERENCE_RUNNER: Tuple[str, str] = ("torch", "fp32")

# The backend the tables' question is about ("is TensorRT worth it?"): a page without its rows says so once.
QUESTION_BACKEND = "tensorrt"

# The rows the "is TensorRT worth it?" table expects (it says which of them were not measured).
SIDE_BY_SIDE_ROWS = [("torch", "fp32"), ("torch", "fp16"), ("compile", "fp16"), ("onnxrt", "fp16"),
                     ("tensorrt", "fp16"), ("tensorrt", "int8")]


def add_precision_args(g: Any, several: bool = True) -> None:
    """--precision P, its flags (--fp16, --bf16, --int8, --fp8, as trtexec and Polygraphy spell them), and
    with several=True --precisions P [P ...]."""
    g.add_argument("--precision", choices=PRECISIONS, default=None, help="the precision (default fp32)")
    if several:
        g.add_argument("--precisions", nargs="+", choices=PRECISIONS, help="several precisions in one run")
    for p in PRECISIONS[1:]:
        g.add_argument(f"--{p}", action="store_true", help=f"same as --precision {p}")


def precisions_asked(args: argparse.Namespace) -> List[str]:
    """The precisions the arguments ask for; two ways of asking at once is one sentence."""
    flags = [p for p in PRECISIONS[1:] if getattr(args, p, False)]
    forms = [f for f, given in (("--precision", args.precision), ("--precisions", getattr(args, "precisions", None)),
                                ("--" + "/--".join(flags), flags)) if given]
    if len(forms) > 1 or len(flags) > 1:
        raise ArtTRTError(f"{' and '.join(forms) if len(forms) > 1 else forms[0]} given: ask for the precision once "
                          "(--precision P, one of --fp16/--bf16/--int8/--fp8, or --precisions P [P ...])")
    return list(getattr(args, "precisions", None) or ([args.precision] if args.precision else flags) or ["fp32"])


def register(backend: Backend) -> None:
    """Adds a row (a backend outside this package, or a test's)."""
    BACKENDS[backend.name] = backend


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ArtTRTError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def add_args(parser: argparse.ArgumentParser) -> None:
    """One argument group per backend, each added by the backend itself."""
    for b in BACKENDS.values():
        b.impl().add_args(parser.add_argument_group(f"{b.label} backend ({b.name})"))


def options_from_args(name: str, args: argparse.Namespace) -> Any:
    """The backend's own Options read from the namespace."""
    return from_args(get(name).impl().Options, args)


def variants(spec: RunSpec) -> List[Any]:
    """The options of each run this spec stands for (most backends: one)."""
    impl = get(spec.backend).impl()
    options = spec.options if spec.options is not None else impl.Options()
    return list(impl.variants(options)) if hasattr(impl, "variants") else [options]


def needs_gpu(name: str) -> bool:
    return get(name).needs_gpu


def calibrated(spec: RunSpec) -> bool:
    """Whether this spec's model is calibrated on images (an int8/fp8 row of a backend that calibrates)."""
    return calibrates(spec.backend, spec.precision)


def calibrates(backend: str, precision: str) -> bool:
    """calibrated() from a record's names: False for a backend this registry does not hold."""
    return precision in CALIB_METHODS and backend in BACKENDS and BACKENDS[backend].calibrates


def check_combination(backend: str, precision: str, device: str) -> None:
    """Refuses, in one sentence, a backend/precision/device combination that cannot run."""
    b = get(backend)
    if precision not in b.precisions:
        others = [n for n, o in BACKENDS.items() if precision in o.precisions]
        raise ArtTRTError(f"the {backend} backend has no {precision}: it runs {', '.join(b.precisions)}"
                          + (f"; {precision} runs on {' or '.join(others)}" if others else ""))
    on_gpu = device.startswith("cuda")
    if (b.needs_gpu or precision in b.gpu_only_precisions) and not on_gpu:
        raise ArtTRTError(f"{b.label} {precision} needs a CUDA GPU: add --device cuda"
                          + (" on a machine with one" if b.needs_gpu else ""))



def check(spec: RunSpec) -> None:
    """Everything that can be refused before any decoding, export or build."""
    check_combination(spec.backend, spec.precision, spec.device)
    impl = get(spec.backend).impl()
    if hasattr(impl, "check"):
        impl.check(spec)
    if spec.device.startswith("cuda") and not get(spec.backend).needs_gpu:
        base.resolve_device(spec.device)  # the GPU asked for is there (a GPU-only backend's own check says so)


def make_runner(spec: RunSpec, net: Network, data: DataOptions = DataOptions(),
                batch_size: int = 1) -> Tuple[Runner, Dict[str, Any]]:
    """Builds (and caches) what the spec needs, then returns its runner and preparation facts.

    Args:
        batch_size: the batch the runner is first fed (the job's): a static TensorRT engine is built for it;
            Runner.serves says whether it can be fed another.
    """
    check(spec)
    runner, facts = get(spec.backend).impl().make(spec, net, data, batch_size)
    runner.label = spec_label(spec)
    return runner, facts


def options_label(spec: RunSpec) -> str:
    """What the backend's options add to the row label (recorded as the record's "options")."""
    impl = get(spec.backend).impl()
    return str(impl.label(spec)) if hasattr(impl, "label") else ""


def runner_label(backend: str, precision: str, extras: Sequence[str] = ()) -> str:
    """'Vanilla', 'Vanilla fp16', 'TRT int8', 'ONNX Runtime fp32 (cpu)': a backend's label, its precision, and the
    options that change figures (the tables read a record's from its fields)."""
    b = BACKENDS.get(backend)
    label = b.label if b else str(backend)
    text = label if (label == "Vanilla" and precision == "fp32") else f"{label} {precision}"
    return text + (f" ({', '.join(extras)})" if extras else "")


def spec_label(spec: RunSpec) -> str:
    """A spec's row label, as every table, comparison title and log line names the runner."""
    options = options_label(spec)
    extras = [options] * bool(options) + ["TF32"] * (spec.tf32 and spec.device.startswith("cuda")) + [
        "CUDA graph"] * bool(spec.cuda_graph)
    return runner_label(spec.backend, spec.precision, extras)


def _tensorrt_step_engines(precision: str, crop: int) -> Tuple[Any, str]:
    """--mixed_precision's engine probe (utils.models.mixed_precision.EngineProbe): TensorRT's code, imported only
    when a search runs; where TensorRT is not installed it says so and nothing is built."""

    return step_engine_probe(precision, crop)


mixed_precision.set_engine_probe(_tensorrt_step_engines)  # the models layer cannot import the backends: offered here
