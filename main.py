"""ArtTRT: what do I gain, and what do I lose, by running this image classifier with TensorRT?

Validates (-v), compares (--compare) and times every backend and precision of a network, and writes
records, tables and plots under outputs/.

Usage:
    python main.py --demo
    python main.py -v --batch_size=1 --dataset=datasets/imagenet --network=resnet18 -trt
    python main.py -v --network resnet50 --synthetic 2048 --device cuda --backend torch \
        --precisions fp32 fp16 --batch_sizes 1 32 64 128 256 --telemetry
    python main.py --compare --network resnet18 --backend onnxrt --precision int8 -rtol=1e-2
    python main.py --report outputs
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from utils.backends import registry
from utils.core.errors import ArtTRTError, cli_boundary, setup_logging

if TYPE_CHECKING:
    from utils.backends.base import RunSpec
    from utils.study.plan import Plan

log = logging.getLogger("arttrt")
ROOT = Path(__file__).resolve().parent
DEFAULT_DURATION_S = 1.0  # trtexec's --duration is 3 s: 1 s keeps a six-network study in minutes; the CV is printed
DEFAULT_ITERATIONS = 10   # trtexec's --iterations default


def build_parser() -> argparse.ArgumentParser:
    from utils.core.cli import new_parser
    from utils.data import options as data_options
    from utils.models import chain, precision

    p = new_parser("main.py", __doc__, epilog="Examples of every command: README.md.",
                   usage="main.py (-v | --compare | --demo | --report DIR) [options]")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-v", "--validate", action="store_true", help="validate and time (top-1/top-5, latency)")
    mode.add_argument("--compare", action="store_true", help="compare outputs with a reference runner")
    mode.add_argument("--demo", action="store_true", help="the built-in default: EfficientNet-Lite0, 20 photos")
    mode.add_argument("--report", metavar="DIR", help="redraw every table, plot and report from DIR's records")

    net = p.add_argument_group("network")
    net.add_argument("--network", default="resnet18", metavar="NAME",
                     help="torchvision name, efficientnet_lite0, or a YOLOv8-cls .pt/.yaml")
    net.add_argument("--networks", nargs="+", metavar="NAME", help="several networks in one study (with -v)")
    net.add_argument("--weights", metavar="FILE",
                     help="your state_dict (.pth, any class count), or with --network yolo a .pt")
    net.add_argument("--pretrained", action="store_true", help="the framework's published weights (downloads)")
    net.add_argument("--num_classes", type=int, metavar="N", help="class count for random weights (default 1000)")
    net.add_argument("--seed", type=int, default=0, metavar="N",
                     help="seed of random weights, random images, calibration picks")

    data_options.add_args(p.add_argument_group("data"))

    run = p.add_argument_group("backend and precision")
    run.add_argument("--backend", choices=list(registry.BACKENDS), default=None, metavar="B",
                     help=f"one of {', '.join(registry.BACKENDS)} (default torch; onnxrt with --compare)")
    run.add_argument("--backends", nargs="+", choices=list(registry.BACKENDS), metavar="B",
                     help="several backends in one run")
    run.add_argument("-trt", "--trt", dest="trt_backend", action="store_const", const="tensorrt",
                     help="the TensorRT backend (same as --backend tensorrt)")
    registry.add_precision_args(run)
    run.add_argument("--device", default=None, metavar="DEV",
                     help="cpu, cuda or cuda:N (default: cuda for -trt, else cpu)")
    run.add_argument("--cuda_graph", action="store_true", help="replay a CUDA graph per batch shape")
    chain.add_args(run)
    precision.add_args(run)
    registry.add_args(p)

    meas = p.add_argument_group("measurement")
    meas.add_argument("--batch_size", type=int, default=1, metavar="N", help="images per batch")
    meas.add_argument("--batch_sizes", nargs="+", type=int, metavar="N", help="a sweep: one measurement per batch size")
    meas.add_argument("--limit", type=int, metavar="N", help="the first N images only")
    meas.add_argument("--sync", action="store_true", help="synchronise after every batch (default: pipelined)")
    meas.add_argument("--warmup", type=float, default=0.1, metavar="F", help="fraction of the batches run as warm-up")
    meas.add_argument("--min_warmup_s", type=float, default=0.2, metavar="S", help="least warm-up time, seconds")
    meas.add_argument("--duration", type=float, metavar="S",
                      help="bounded timing: at least S seconds of timed batches per batch size (trtexec's rule: "
                           f"with --iterations, whichever is reached last; default {DEFAULT_DURATION_S:g} in a sweep)")
    meas.add_argument("--iterations", type=int, metavar="N",
                      help=f"bounded timing: at least N timed batches (default {DEFAULT_ITERATIONS} in a sweep)")
    meas.add_argument("--full_passes", action="store_true",
                      help="time every batch size over the whole dataset (the original's way; accuracy at each) "
                           "instead of one accuracy pass and bounded timing")
    meas.add_argument("--telemetry", action="store_true", help="sample GPU memory and SM use with NVML")
    meas.add_argument("--telemetry_ms", type=int, default=50, metavar="MS", help="telemetry sampling interval, ms")
    meas.add_argument("--output", default=str(ROOT / "outputs"), metavar="DIR",
                      help="results folder (default: outputs/ beside main.py)")
    talk = meas.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    talk.add_argument("--verbose", action="store_true", help="the libraries' own messages too")

    study = p.add_argument_group("study (with -v)")
    study.add_argument("--gpus", nargs="+", metavar="N",
                       help="GPU indices (or all): one process per GPU, each taking the next setup of the plan")
    study.add_argument("--shard", metavar="K/N", help="only the K-th of N shares of the plan (a Slurm job array "
                       "task, say); --report merges the shares' records")
    study.add_argument("--claims", metavar="DIR", help="a folder of claim files shared by the processes of one "
                       "study (set by --gpus for its workers)")
    study.add_argument("--calib_methods", nargs="+", metavar="M", help="int8/fp8 rows for each calibration method")
    study.add_argument("--calib_sizes", nargs="+", type=int, metavar="N", help="int8/fp8 rows for each calibration "
                       "image count (the same seeded images)")
    study.add_argument("--max_top1_drop", type=float, metavar="POINTS",
                       help="mark the rows whose top-1 is more than POINTS below PyTorch fp32 on the same network "
                            "and dataset, and exit 3 if any is")

    look = p.add_argument_group("look inside (with -v)")
    look.add_argument("--inspect", action="store_true",
                      help="layer tables of the ONNX file and the TensorRT engine, and a quantized file's per-layer "
                           "drift from fp32 (outputs/inspect/)")
    look.add_argument("--profile", action="store_true",
                      help="a few batches under the PyTorch profiler after the timed ones (Chrome trace in "
                           "outputs/profiles/, top operators in the report)")

    cmp_ = p.add_argument_group("compare")
    cmp_.add_argument("--reference", default="torch-fp32", metavar="B-P", help="reference runner, BACKEND-PRECISION")
    cmp_.add_argument("--num_inputs", type=int, default=5000, metavar="N",
                      help="random inputs to compare; with --val_dataset the most images compared")
    cmp_.add_argument("-rtol", "--rtol", type=float, default=1e-3, metavar="X",
                      help="relative tolerance of the isclose table")
    cmp_.add_argument("-atol", "--atol", type=float, default=1e-8, metavar="X",
                      help="absolute tolerance of the isclose table")
    cmp_.add_argument("--val_dataset", action="store_true", help="compare on --dataset, not random inputs")
    return p


def _spec(args: argparse.Namespace, backend: str, precision: str, batch_sizes: Sequence[int]) -> "RunSpec":
    """The spec of one backend and precision from the arguments (its variants come from the registry)."""
    from utils.backends.base import RunSpec
    from utils.models.chain import ModelOptions

    return RunSpec(backend, precision, device=args.device, batch_size=batch_sizes[0],
                   max_batch_size=max(batch_sizes), cuda_graph=args.cuda_graph, model=ModelOptions.from_args(args),
                   options=registry.options_from_args(backend, args))


def default_backend(args: argparse.Namespace) -> str:
    """torch to validate; ONNX Runtime to compare (against the torch-fp32 reference)."""
    return "onnxrt" if args.compare else "torch"


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Every argument checked at the door, before any work: one sentence for the first thing that is wrong."""
    import torch

    def at_least(name: str, value: Optional[int], least: int = 1) -> None:
        if value is not None and value < least:
            raise ArtTRTError(f"--{name} must be at least {least}, not {value}")

    for name in ("batch_size", "limit", "synthetic", "num_inputs", "calib_size", "workers", "telemetry_ms",
                 "min_batch", "opt_batch", "max_batch"):
        at_least(name, getattr(args, name, None))
    at_least("gpu_lanes", args.gpu_lanes, 0)
    for bs in args.batch_sizes or []:
        at_least("batch_sizes", bs)
    if not 0 <= args.warmup < 1:
        raise ArtTRTError(f"--warmup is the fraction of batches used as warm-up, in [0, 1), not {args.warmup}")
    if args.min_warmup_s < 0:
        raise ArtTRTError(f"--min_warmup_s must not be negative, not {args.min_warmup_s}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ArtTRTError(f"--device {args.device!r} is not a device: use cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ArtTRTError(f"--device {args.device!r}: ArtTRT runs on cpu or cuda[:N]")
    given = {k for k, v in vars(args).items() if v is not None and v != parser.get_default(k)}
    for one, many in (("backend", "backends"), ("batch_size", "batch_sizes"), ("network", "networks")):
        if one in given and many in given:
            raise ArtTRTError(f"--{one} and --{many} both given: pass only --{many}")
    study_only = [n for n in ("networks", "duration", "iterations", "full_passes", "gpus", "shard", "claims",
                              "calib_methods", "calib_sizes", "max_top1_drop") if n in given]
    if study_only and not args.validate:
        raise ArtTRTError(f"--{study_only[0]} is an option of a study: add -v")
    at_least("iterations", args.iterations)
    if args.duration is not None and args.duration < 0:
        raise ArtTRTError(f"--duration must not be negative, not {args.duration}")
    if args.input_shape and args.input_shape[0] != -1:
        fed = sorted(set(args.batch_sizes or [args.batch_size]) - {args.input_shape[0]})
        if fed:
            raise ArtTRTError(f"--input_shape {' '.join(map(str, args.input_shape))} is a static batch of "
                              f"{args.input_shape[0]}, but batches of {fed[0]} would be fed: pass --batch_size "
                              f"{args.input_shape[0]}, or -1 as the batch for a dynamic one")
    if args.full_passes and (args.duration is not None or args.iterations is not None):
        raise ArtTRTError("--full_passes times every whole pass: drop --duration/--iterations, or --full_passes")
    for n in args.calib_sizes or []:
        at_least("calib_sizes", n)
    if args.max_top1_drop is not None and args.max_top1_drop < 0:
        raise ArtTRTError(f"--max_top1_drop is a number of points, at least 0, not {args.max_top1_drop}")
    if args.networks and len(args.networks) > 1 and args.weights:
        raise ArtTRTError("--weights is one network's file: with --networks use --pretrained, or one --network")
    if args.shard:
        from utils.study.plan import parse_shard

        parse_shard(args.shard)
    if args.gpus and args.shard:
        raise ArtTRTError("--gpus and --shard both given: a share runs on one machine's GPUs; pass one")
    backends = args.backends or [args.backend or default_backend(args)]
    precisions = args.precisions
    ref_backend, ref_precision = registry.REFERENCE_RUNNER
    if args.max_top1_drop is not None and not (ref_backend in backends and ref_precision in precisions):
        raise ArtTRTError(f"--max_top1_drop measures each row against {ref_backend} {ref_precision}: add "
                          f"{ref_backend} to --backends and {ref_precision} to --precisions")
    if args.validate and args.synthetic is not None and args.dataset and not {"int8", "fp8"} & set(precisions):
        raise ArtTRTError("--synthetic and --dataset both given: a run measures one of them (--dataset gives "
                          "calibration images only for int8/fp8); drop one")
    used = set(backends) | ({args.reference.split("-", 1)[0]} if args.compare else set())
    for name, b in registry.BACKENDS.items():
        if name in used:
            continue
        for f in dataclasses.fields(b.impl().Options):
            if f.name in given and f.name != "force":  # --force is the study's too: measure again
                raise ArtTRTError(f"--{f.name} is an option of the {name} backend, which this run does not use")
    if ("onnx" in given or "input_shape" in given) and not any(registry.get(b).uses_onnx for b in used
                                                               if b in registry.BACKENDS):
        flag = "--onnx" if "onnx" in given else "--input_shape"
        raise ArtTRTError(f"{flag} is for the backends that run an ONNX file ("
                          + ", ".join(n for n, b in registry.BACKENDS.items() if b.uses_onnx)
                          + f"), not {', '.join(backends)}")


def _network(args: argparse.Namespace, name: Optional[str] = None):  # type: ignore[no-untyped-def]
    from utils.models.networks import load_network

    return load_network(name or args.network, args.weights, args.pretrained, args.num_classes, args.seed)


def check_folders(args: argparse.Namespace, backends: Sequence[str]) -> None:
    """The folders this run will write to take files, before anything is measured."""
    from utils.core.fileio import ensure_writable
    from utils.data.cache import default_cache_dir
    from utils.models.paths import weights_dir

    ensure_writable(args.output, "--output")
    if args.dataset and args.synthetic is None or getattr(args, "val_dataset", False):
        ensure_writable(args.cache_dir or default_cache_dir(), "--cache_dir")
    if any(registry.get(b).uses_onnx for b in backends):
        ensure_writable(weights_dir(), "the weights folder (ARTTRT_WEIGHTS_DIR)")


def use_device(args: argparse.Namespace) -> None:
    """The device is there; a cuda:N becomes the current GPU (checks, engine keys and records speak of it)."""
    from utils.backends.base import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is not None:
        import torch

        torch.cuda.set_device(device)


def make_plan(args: argparse.Namespace) -> "Plan":
    """The study the arguments ask for, every combination checked (utils/study/plan.py)."""
    from utils.study.plan import make_plan as plan_of
    from utils.study.study import SETUP_PROCESS

    batch_sizes = args.batch_sizes or [args.batch_size]
    bounded = args.duration is not None or args.iterations is not None or (
        len(set(batch_sizes)) > 1 and not args.full_passes)
    networks = list(dict.fromkeys(args.networks or [args.network]))
    unloadable = {}
    for name in networks:  # every network loads (weights found, downloaded) before any work
        if os.environ.get(SETUP_PROCESS):  # a child running one setup: its parent did, and it needs one network
            break
        try:
            args.loaded[name] = args.loaded.get(name) or _network(args, name)
        except ArtTRTError as err:
            unloadable[name] = str(err)
    plan = plan_of(networks, args.backends or [args.backend or default_backend(args)],
                   args.precisions, batch_sizes, lambda b, p: _spec(args, b, p, batch_sizes), bounded=bounded,
                   calib_methods=args.calib_methods, calib_sizes=args.calib_sizes, unloadable=unloadable)
    if all(s.skipped for s in plan.setups):  # nothing could run: the first reason, before any work
        raise ArtTRTError(plan.setups[0].skipped or "nothing to run")
    return plan


def run_validate(args: argparse.Namespace, command: str) -> int:
    import time

    from utils.data.options import DataOptions
    from utils.measure.timing import MeasureOptions
    from utils.report.records import Recorder
    from utils.study.plan import parse_shard
    from utils.study.study import (ERROR, MEASURED, REUSED, SETUP_PROCESS, SKIPPED, StudyContext, fill_agreement,
                                   finish_study, run_setups)

    started = time.perf_counter()
    plan = make_plan(args)
    if not args.gpus and ":" in args.device:  # cuda:N becomes the current GPU (the plan checked it is there)
        use_device(args)
    setups = plan.setups if not args.shard else plan.shard(*parse_shard(args.shard))
    check_folders(args, [s.spec.backend for s in setups])
    output = Path(args.output)
    if args.claims:
        from utils.core.fileio import ensure_writable

        ensure_writable(args.claims, "--claims")  # a shared folder (one per study) may be new
    if not setups:
        print(f"--shard {args.shard}: this share holds none of the plan's {len(plan.setups)} setups: nothing to do")
        return 0
    if args.gpus and args.claims is None:
        from utils.study.gpus import gpu_indices, run_on_gpus

        gpus = gpu_indices(args.gpus)
        if len(gpus) > 1:
            return run_on_gpus(args, sys.argv[1:] if args.argv is None else args.argv, gpus, plan, started)
        args.device = f"cuda:{gpus[0]}"  # one GPU: this process is its worker
        use_device(args)
        setups = make_plan(args).setups
    measure = MeasureOptions(warmup_fraction=args.warmup, min_warmup_s=args.min_warmup_s, sync=args.sync,
                             limit=args.limit, progress=not args.quiet,
                             duration_s=(DEFAULT_DURATION_S if args.duration is None else args.duration)
                             if plan.bounded else None,
                             iterations=(args.iterations or DEFAULT_ITERATIONS) if plan.bounded else None)
    many = plan.jobs > 1
    own_argv = sys.argv[1:] if args.argv is None else args.argv
    ctx = StudyContext(output, Recorder(output, command), DataOptions.from_args(args), measure,
                       lambda name: args.loaded.get(name) or _network(args, name), force=args.force,
                       progress=not args.quiet and many, profile=args.profile, inspect=args.inspect,
                       claims=Path(args.claims) if args.claims else None, rows_for_errors=many,
                       argv=None if os.environ.get(SETUP_PROCESS) else own_argv, setups_in_plan=len(plan.setups))
    if not many:  # one job: its own progress bar, as before
        ctx.measure = dataclasses.replace(measure, progress=not args.quiet)
    if args.telemetry:
        from utils.measure.telemetry import Telemetry

        ctx.telemetry = Telemetry(interval_ms=args.telemetry_ms).start()
    try:
        outcomes = run_setups(setups, ctx)
    finally:
        if ctx.telemetry is not None:
            ctx.telemetry.stop()
            csv_path = ctx.telemetry.save(output / "telemetry", "-".join(args.networks or [args.network]))
            log.info("GPU telemetry: %s", csv_path)
    if args.claims:  # a worker of --gpus: the parent draws the tables
        return 1 if any(o.status == ERROR for o in outcomes) else 0
    fill_agreement(output)
    return finish_study(args.max_top1_drop, output, [o.record for o in outcomes if o.record], started,
                        {k: sum(o.status == k for o in outcomes) for k in (MEASURED, REUSED, SKIPPED, ERROR)})


def where_results_are(output: Path) -> str:
    from utils.report.report import where_results_are as where

    return where(output)


def run_compare(args: argparse.Namespace, command: str) -> int:
    """--compare: the reference runner (default torch-fp32) against each --backend(s) and --precision(s) asked;
    with several, the original's table with one column per runner."""
    from utils.data.options import DataOptions
    from utils.report.records import Recorder
    from utils.report.tables import compare_columns_markdown
    from utils.study.compare import compare_one

    if args.rtol < 0 or args.atol < 0:
        raise ArtTRTError(f"-rtol and -atol must not be negative (got rtol={args.rtol}, atol={args.atol})")
    if args.val_dataset and not args.dataset:
        raise ArtTRTError("--val_dataset compares on a validation set: pass --dataset DIR too")
    try:
        ref_backend, ref_precision = args.reference.split("-", 1)
    except ValueError as err:
        raise ArtTRTError(f"--reference takes BACKEND-PRECISION, e.g. torch-fp32, not {args.reference!r}") from err
    others = [_spec(args, backend, precision, [args.batch_size])
              for backend in (args.backends or [args.backend or default_backend(args)])
              for precision in args.precisions]
    ref_spec = _spec(args, ref_backend, ref_precision, [args.batch_size])
    for spec in [*others, ref_spec]:  # what is compared first: no advice that sends the user round in a circle
        registry.check(spec)
    check_folders(args, [ref_spec.backend, *[s.backend for s in others]])
    net = _network(args)
    data = DataOptions.from_args(args)
    if args.val_dataset:
        dataset = data.open(net.preprocess, net.num_classes)
        limit, source = args.num_inputs if args.limit is None else args.limit, "dataset"
    else:
        from utils.data.cache import SyntheticDataset

        dataset = SyntheticDataset(args.num_inputs, net.preprocess.crop, seed=args.seed)
        limit, source = args.limit, f"random (seed {args.seed})"
    recorder = Recorder(Path(args.output), command)
    runs = []
    for other in others:
        rec, stats, text = compare_one(ref_spec, other, net, dataset, batch_size=args.batch_size, rtol=args.rtol,
                                       atol=args.atol, data=data, recorder=recorder, limit=limit,
                                       inputs_source=source, progress=not args.quiet)
        runs.append((f"{other.backend}-{other.precision}", stats.summary()))
        if len(others) == 1:
            print(text)
    if len(others) > 1:
        from utils.core.fileio import atomic_write_text

        columns = compare_columns_markdown(runs, f"{ref_spec.backend}-{ref_spec.precision}", net.name)
        atomic_write_text(Path(args.output) / "compare" / f"{net.name}-columns.md", columns)
        print(columns)
    from utils.report.report import make_report

    make_report(Path(args.output))
    print(where_results_are(Path(args.output)))
    return 0


def run_demo(args: argparse.Namespace, command: str) -> int:
    from utils.study.demo import run_demo as demo

    return demo(Path(args.output), quiet=args.quiet, command=command)


def run_report(args: argparse.Namespace, command: str) -> int:
    from utils.report.report import make_report
    from utils.study.study import fill_agreement

    if Path(args.report).is_dir():
        fill_agreement(Path(args.report))  # shares merged: each setup's agreement with PyTorch fp32 across them
    make_report(Path(args.report))
    print(where_results_are(Path(args.report)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.report.records import command_line

    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None  # --gpus starts its workers with the same arguments
    args.loaded = {}  # networks loaded while the plan is checked, by name
    if args.trt_backend:
        if args.backend not in (None, args.trt_backend) or args.backends:
            raise ArtTRTError(f"-trt and --backend{'s' if args.backends else ''} both given: -trt is --backend "
                              f"{args.trt_backend}; pass one")
        args.backend = args.trt_backend
    backends = args.backends or [args.backend or default_backend(args)]
    if args.device is None:
        gpu = args.gpus or any(registry.needs_gpu(b) for b in backends if b in registry.BACKENDS)
        args.device = "cuda" if gpu else "cpu"
    setup_logging(args.quiet, args.verbose)
    args.precisions = registry.precisions_asked(args)
    args.precision = args.precisions[0]
    if (args.inspect or args.profile) and not args.validate:
        raise ArtTRTError("--inspect and --profile look inside a validation run: add -v (build_trt.py --inspect "
                          "inspects an engine as it is built)")
    if args.validate or args.compare:
        check_arguments(args, build_parser())
    if args.compare and ":" in args.device:
        use_device(args)
    command = command_line("main.py", argv)
    for flag, run in (("demo", run_demo), ("compare", run_compare), ("report", run_report),
                      ("validate", run_validate)):
        if getattr(args, flag):
            return run(args, command)
    build_parser().print_usage()
    print("choose one of -v, --compare, --demo or --report", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
