"""The TensorRT backend: options, checks and the runner factory. TensorRT itself is imported in one
module only (`api`); building lives in `build` (strongly typed) and `weak` (TensorRT 10's builder flags
and calibrators), the engine step of the artefact chain in `engine`, the runner in `runner`.

Importing this package imports no TensorRT: argparse and the registry read its options cheaply.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from utils.backends.base import Runner, RunSpec
from utils.backends.tensorrt import weak
from utils.backends.tensorrt.engine import (check_precision_supported, check_sidecar, engine_for_network,
                                            require_tensorrt_and_gpu)
from utils.backends.tensorrt.runner import TensorRTRunner
from utils.core.errors import ArtTRTError
from utils.data.options import DataOptions

if TYPE_CHECKING:
    from utils.models.networks import Network

SHAPES = ("dynamic", "static")


@dataclass(frozen=True)
class Options:
    """How the engine is built, or which engine file is run (argparse dests of add_args)."""

    engine: Optional[str] = None               # an existing engine file instead of building one
    trt_shapes: Tuple[str, ...] = ("dynamic",)  # dynamic-batch profile, static per batch size, or both
    min_batch: Optional[int] = None
    opt_batch: Optional[int] = None
    max_batch: Optional[int] = None            # default: the largest batch size of the run
    workspace: Optional[float] = None          # GiB
    timing_cache: Optional[str] = None
    force: bool = False
    weak_typing: bool = False

    def __post_init__(self) -> None:
        """The profile's batch sizes are checked here, the one place that owns them."""
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ArtTRTError(f"--{name} must be at least 1, not {value}")


def add_args(g: Any, max_default: str = "the largest batch size asked", run: bool = True) -> None:
    """The TensorRT build arguments; with run=True also --engine and --trt_shapes (main.py)."""
    if run:
        g.add_argument("--engine", metavar="FILE", help="an existing TensorRT engine file (its sidecar is checked)")
        g.add_argument("--trt_shapes", nargs="+", choices=SHAPES, default=["dynamic"],
                       help="TensorRT engines with a dynamic-batch profile, static per batch size, or both "
                            "(default: dynamic)")
    g.add_argument("--min_batch", type=int, metavar="N", help="TensorRT profile minimum batch (default 1)")
    g.add_argument("--opt_batch", type=int, metavar="N", help="TensorRT profile optimum batch (default: --max_batch)")
    g.add_argument("--max_batch", type=int, metavar="N",
                   help=f"TensorRT profile maximum batch (default: {max_default})" + (
                       "; with --scenario also the dynamic batcher's largest batch (default 32)" if run else ""))
    g.add_argument("--workspace", type=float, metavar="GIB", help="TensorRT workspace memory pool limit, GiB")
    g.add_argument("--timing_cache", metavar="FILE",
                   help="timing cache file, reused across builds (default under weights/engines)")
    g.add_argument("--force", action="store_true",
                   help="rebuild even if a cached engine matches (main.py -v: also measure again every job whose "
                        "record is already in --output)")
    g.add_argument("--weak_typing", action="store_true",
                   help="TensorRT 10 builder flags (+ a calibrator for int8) on the fp32 ONNX file, "
                        "where the installed TensorRT still has them")


def variants(options: Options) -> List[Options]:
    """One run per engine shape asked (--trt_shapes dynamic static); a given --engine file is one run."""
    if options.engine:
        return [dataclasses.replace(options, trt_shapes=("dynamic",))]
    return [dataclasses.replace(options, trt_shapes=(s,)) for s in dict.fromkeys(options.trt_shapes)]


def label(spec: RunSpec) -> str:
    """What sets this engine apart in a table: a given file, static shapes, TensorRT 10's weak typing."""
    opts: Options = spec.options or Options()
    if opts.engine:
        return "given engine"
    words = ["static"] if "static" in opts.trt_shapes else []
    if opts.weak_typing and spec.precision != "fp32":
        words.append("weak typing")
    return ", ".join(words)


def check(spec: RunSpec) -> None:
    """Before any decoding or export: TensorRT and a GPU are here, and the GPU has the precision."""

    opts: Options = spec.options or Options()
    if opts.weak_typing and spec.precision != "fp32":
        weak.check_route(spec.precision)
    check_profile(opts, spec.batch_sizes)
    check_precision_supported(spec.precision, require_tensorrt_and_gpu())
    if opts.weak_typing and spec.precision != "fp32" and not opts.engine:
        weak.require(spec.precision)  # TensorRT 11 has no builder flags: said now, not after decoding


def check_profile(opts: Options, batch_sizes: Tuple[int, ...]) -> None:
    """An explicit --min_batch/--max_batch that leaves out a batch the run feeds: one sentence before any build (the
    engine's profile would refuse that batch after the others were measured)."""
    if opts.engine or "dynamic" not in opts.trt_shapes:
        return
    outside = [b for b in batch_sizes if (opts.min_batch is not None and b < opts.min_batch)
               or (opts.max_batch is not None and b > opts.max_batch)]
    if outside:
        raise ArtTRTError(f"the TensorRT profile --min_batch {opts.min_batch or 1} .. --max_batch "
                          f"{opts.max_batch if opts.max_batch is not None else 'the largest batch'} does not take "
                          f"batch {outside[0]}, which this run feeds: widen the profile or drop those options")


def make(spec: RunSpec, net: Network, data: DataOptions, batch_size: int) -> Tuple[Runner, Dict[str, Any]]:
    """The user's engine (its sidecar checked), or the cached build of the spec's network and precision."""

    opts: Options = spec.options or Options()
    if opts.engine:
        path = Path(opts.engine)
        if not path.is_file():
            raise ArtTRTError(f"engine file {path} does not exist")
        facts: Dict[str, Any] = {**check_sidecar(path, require_tensorrt_and_gpu()), "prepare_s": 0.0}
    else:
        path, facts = engine_for_network(net, spec.precision, spec.model, opts, data, batch_size,
                                         spec.largest_batch(batch_size), spec.batch_sizes or (batch_size,),
                                         tf32=spec.tf32)
    # an engine keeps no list of its weights: the count is the network's, as the original printed for TensorRT
    facts = {**facts, "params": net.params, "params_note": "the network's parameters"}
    return TensorRTRunner(path, net.preprocess, spec.precision, facts, cuda_graph=spec.cuda_graph,
                          device=spec.device), facts
