"""What one command line asks for, as one typed request: made once from the parsed arguments (main.py parses,
nothing else), every argument that concerns several layers checked here, each single value checked by the layer
that owns it (MeasureOptions, DataOptions, CalibOptions, the backends' Options, the plan); nothing writes back into
the argparse namespace, and the study never calls back into main.py.

Usage:
    parser = main.build_parser(); args = parser.parse_args(argv)
    request = request_from_args(args, parser, argv)
    spec = request.spec_for("onnxrt", "int8")
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from utils.backends import registry
from utils.backends.base import RunSpec, parse_device
from utils.core.cli import command_line
from utils.core.errors import ArtTRTError, at_least
from utils.core.namespace import from_args
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.measure.scenarios import SCENARIOS, ServeOptions, buckets, scenario_only_settings, settings_of
from utils.measure.telemetry import check_interval
from utils.models.chain import ModelOptions
from utils.models.names import check_network_name
from utils.study.plan import parse_shard

DEFAULT_DURATION_S = 1.0  # trtexec's --duration is 3 s: 1 s keeps a six-network study in minutes; the CV is printed
DEFAULT_ITERATIONS = 10   # trtexec's --iterations default
DEFAULT_SERVE_DURATION_S = 10.0  # each LoadGen run of a scenario (MLPerf's submissions: 600 s)
DEFAULT_SERVE_MAX_BATCH = 32    # --max_batch's default for the dynamic batcher (it is TensorRT's profile maximum too)
SERVE_ONLY = ("max_queue_delay_us",) + scenario_only_settings()  # a serving scenario's settings
STUDY_ONLY = ("networks", "duration", "iterations", "repeats", "full_passes", "gpus", "shard", "claims",
              "calib_methods", "calib_sizes", "max_top1_drop", "mixed_precision", "scenario") + SERVE_ONLY


@dataclass(frozen=True)
class Request:
    """One run of main.py: which command, on which networks, backends, precisions, batch sizes and data, and how."""

    mode: str                                   # validate, compare, demo, report
    command: str                                # the command line, for the records
    output: Path
    networks: Tuple[str, ...] = ("resnet18",)
    weights: Optional[str] = None
    pretrained: bool = False
    num_classes: Optional[int] = None
    seed: int = 0
    backends: Tuple[str, ...] = ("torch",)
    precisions: Tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    device_reason: str = "the default"         # what made the device what it is (for messages)
    cuda_graph: bool = False
    tf32: bool = False
    model: ModelOptions = field(default_factory=ModelOptions)
    backend_options: Dict[str, Any] = field(default_factory=dict)
    batch_sizes: Tuple[int, ...] = (1,)
    scenarios: Tuple[Any, ...] = ()             # utils.measure.serving.ServeOptions, one per --scenario
    timing_jobs: bool = True                    # False: --scenario without --batch_size(s): the scenarios only
    bounded: bool = False
    measure: MeasureOptions = field(default_factory=MeasureOptions)  # the rules; the batch size is each job's
    data: DataOptions = field(default_factory=DataOptions)
    telemetry: bool = False
    telemetry_ms: int = 50
    quiet: bool = False
    verbose: bool = False
    force: bool = False
    inspect: bool = False
    profile: bool = False
    gpus: Optional[Tuple[str, ...]] = None
    shard: Optional[Tuple[int, int]] = None
    claims: Optional[Path] = None
    setups: Optional[Tuple[int, ...]] = None    # a worker handed its setups (a setup's own process: handover.py)
    calib_methods: Optional[Tuple[str, ...]] = None
    calib_sizes: Optional[Tuple[int, ...]] = None
    max_top1_drop: Optional[float] = None
    baseline: Optional[Path] = None         # --report --baseline OLD
    max_regression: Optional[float] = None
    reference: Tuple[str, str] = registry.REFERENCE_RUNNER
    num_inputs: int = 5000
    rtol: float = 1e-3
    atol: float = 1e-8
    val_dataset: bool = False
    report_dir: Optional[Path] = None

    def spec_for(self, backend: str, precision: str) -> RunSpec:
        """The spec of one backend and precision (its variants come from the registry); built for the largest batch
        of the run (the batch each job feeds is its own, given to the runner when it is made; a static engine is
        made per batch size by the runner's own check, Runner.serves)."""
        largest = max([*self.batch_sizes, *(s.max_batch for s in self.scenarios)])
        return RunSpec(backend, precision, device=self.device,
                       max_batch_size=largest, cuda_graph=self.cuda_graph, model=self.model,
                       options=self.backend_options.get(backend), tf32=self.tf32,
                       batch_sizes=self.run_batch_sizes())

    def run_batch_sizes(self) -> Tuple[int, ...]:
        """Every batch size the run feeds: the timing jobs' and each scenario's padded sizes."""
        sizes = set(self.batch_sizes if self.timing_jobs or not self.scenarios else ())
        for s in self.scenarios:
            sizes.update(buckets(s.max_batch, lambda b: True))
        return tuple(sorted(sizes))

    def with_device(self, device: str, reason: str) -> "Request":
        return dataclasses.replace(self, device=device, device_reason=reason)


def _given(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> set:
    """The options the command line names, whatever their values: `--batch_size 1` is given although 1 is the
    default (the command line parsed again with no defaults at all)."""
    explicit = copy.deepcopy(parser)
    for action in explicit._actions:  # (set_defaults would put its SUPPRESS into the namespace)
        action.default = argparse.SUPPRESS
    return set(vars(explicit.parse_args(argv)))


def flag(dest: str) -> str:
    """The option's spelling on the command line."""
    return {"trt_backend": "-trt", "validate": "-v"}.get(dest, "--" + dest)


# what --report and --demo take: --report redraws the records as they are (its gate is --max_top1_drop), --demo is
# one fixed run; any other option given to them would be ignored, so it is refused
ONLY_TAKES = {"report": ("report", "max_top1_drop", "baseline", "max_regression", "quiet", "verbose"),
              "demo": ("demo", "output", "quiet", "verbose")}
# what only a run with timing jobs uses (a scenario-only run times nothing outside LoadGen)
TIMING_ONLY = ("iterations", "repeats", "sync", "warmup", "min_warmup_s", "full_passes", "profile", "inspect")
COMPARE_ONLY = ("reference", "num_inputs", "rtol", "atol", "val_dataset")
CALIBRATION_ONLY = ("calib_methods", "calib_sizes", "calib_method", "calib_size", "calib_dataset", "quantizer")
DATASET_ONLY = ("class_map", "strict", "cache_dir", "gpu_lanes", "gpu_decoder", "gpu_decode", "workers")
MAX_DURATION_S = 86400


def _backends(args: argparse.Namespace) -> Tuple[str, ...]:
    if args.trt_backend and (args.backend not in (None, args.trt_backend) or args.backends):
        raise ArtTRTError(f"-trt and --backend{'s' if args.backends else ''} both given: -trt is --backend "
                          f"{args.trt_backend}; pass one")
    one = args.trt_backend or args.backend or ("onnxrt" if args.compare else "torch")
    return tuple(args.backends or [one])


def _device(args: argparse.Namespace, backends: Sequence[str]) -> Tuple[str, str]:
    """The device asked, or implied: cuda for --gpus or a GPU-only backend (say which), else cpu."""
    if args.device is not None:
        return args.device, f"--device {args.device}"
    if args.gpus:
        return "cuda", "--gpus was given"
    gpu_only = [b for b in backends if b in registry.BACKENDS and registry.needs_gpu(b)]
    if gpu_only:
        return "cuda", f"the {gpu_only[0]} backend runs on a GPU only"
    return "cpu", "the default"


def request_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None) -> Request:
    """The typed request of the parsed arguments, every cross-argument rule checked: one sentence for the first
    thing that is wrong (ArtTRTError), before any work."""

    mode = next((m for m in ("demo", "compare", "report", "validate") if getattr(args, m)), "")
    if not mode:
        raise ArtTRTError("choose one of -v, --compare, --demo or --report")
    backends = _backends(args)
    device, why = _device(args, backends)
    parse_device(device)  # its spelling; whether it is here is the plan's question (a skipped row, or a sentence)
    precisions = tuple(registry.precisions_asked(args))
    given = _given(args, parser, argv)
    if (args.inspect or args.profile) and not args.validate:
        raise ArtTRTError("--inspect and --profile look inside a validation run: add -v (build_trt.py --inspect "
                          "inspects an engine as it is built)")
    common = dict(mode=mode, command=command_line("main.py", argv),
                  output=Path(args.output), quiet=args.quiet, verbose=args.verbose)
    if mode in ("demo", "report"):
        unused = sorted(given - set(ONLY_TAKES[mode]))
        if unused:
            takes = ", ".join(flag(d) for d in ONLY_TAKES[mode][1:])
            raise ArtTRTError(f"{flag(unused[0])} is not used by --{mode}, which "
                              + ("redraws the records of DIR as they were measured" if mode == "report"
                                 else "is one fixed run") + f": drop it (--{mode} takes {takes})")
        if args.max_top1_drop is not None:
            args.max_top1_drop.check()
        if args.max_regression is not None and args.baseline is None:
            raise ArtTRTError("--max_regression judges rows against a baseline: add --baseline DIR")
        if args.max_regression is not None and not 0 <= args.max_regression < 100:
            raise ArtTRTError(f"--max_regression is a percentage of the baseline's speed, 0 to 100, not "
                              f"{args.max_regression}")
        if args.baseline is not None and not Path(args.baseline).is_dir():
            raise ArtTRTError(f"--baseline {args.baseline} is not a folder of results")
        return Request(**common, report_dir=Path(args.report) if args.report else None,  # type: ignore[arg-type]
                       max_top1_drop=args.max_top1_drop, baseline=Path(args.baseline) if args.baseline else None,
                       max_regression=args.max_regression)
    report_only = [n for n in ("baseline", "max_regression") if n in given]
    if report_only:
        raise ArtTRTError(f"--{report_only[0]} compares result folders: use it with --report NEW --baseline OLD")
    _check_combinations(args, given, backends, precisions)
    if args.cuda_graph and not device.startswith("cuda"):
        raise ArtTRTError(f"--cuda_graph replays a CUDA graph on a GPU, and this run is on {device}: add --device "
                          "cuda, or drop --cuda_graph")
    if args.tf32 and not device.startswith("cuda"):
        raise ArtTRTError("--tf32 lets fp32 on an NVIDIA GPU round to TF32, and this run is on the CPU, where nothing "
                          "uses it: drop --tf32 or add --device cuda")
    batch_sizes = tuple(args.batch_sizes or [args.batch_size])
    bounded = args.duration is not None or args.iterations is not None or (
        len(set(batch_sizes)) > 1 and not args.full_passes)
    at_least("num_inputs", args.num_inputs)
    check_interval(args.telemetry_ms)
    measure = MeasureOptions(batch_size=batch_sizes[0], warmup_fraction=args.warmup, min_warmup_s=args.min_warmup_s,
                             sync=args.sync, limit=args.limit, progress=not args.quiet, repeats=args.repeats,
                             duration_s=(DEFAULT_DURATION_S if args.duration is None else args.duration)
                             if bounded else None,
                             iterations=(DEFAULT_ITERATIONS if args.iterations is None else args.iterations)
                             if bounded else None)
    for bs in batch_sizes[1:]:  # each batch size is a measurement's, checked by MeasureOptions as the first was
        dataclasses.replace(measure, batch_size=bs)
    scenarios = _scenarios(args, given)
    timing_jobs = not scenarios or bool({"batch_size", "batch_sizes"} & given)
    untimed = [n for n in TIMING_ONLY if n in given] if not timing_jobs else []
    if untimed:
        raise ArtTRTError(f"{flag(untimed[0])} is a rule of the timing jobs, and a run with --scenario alone has none "
                          "(LoadGen times it): drop it, or add --batch_sizes for timing jobs beside the scenarios")
    reference = _reference(args.reference) if mode == "compare" else registry.REFERENCE_RUNNER
    used = set(backends) | ({reference[0]} if mode == "compare" else set())

    return Request(**common, networks=tuple(dict.fromkeys(args.networks or [args.network])),  # type: ignore[arg-type]
                   weights=args.weights, pretrained=args.pretrained, num_classes=args.num_classes, seed=args.seed,
                   backends=backends, precisions=precisions, device=device, device_reason=why,
                   cuda_graph=args.cuda_graph, tf32=args.tf32, model=ModelOptions.from_args(args),
                   backend_options={b: registry.options_from_args(b, args) for b in used if b in registry.BACKENDS},
                   batch_sizes=batch_sizes, bounded=bounded, measure=measure, scenarios=scenarios,
                   timing_jobs=timing_jobs,
                   data=from_args(DataOptions, args, progress=not args.quiet), telemetry=args.telemetry,
                   telemetry_ms=args.telemetry_ms, force=bool(getattr(args, "force", False)), inspect=args.inspect,
                   profile=args.profile, gpus=tuple(args.gpus) if args.gpus else None,
                   shard=_shard(args.shard), claims=Path(args.claims) if args.claims else None,
                   calib_methods=tuple(args.calib_methods) if args.calib_methods else None,
                   calib_sizes=tuple(args.calib_sizes) if args.calib_sizes else None,
                   max_top1_drop=args.max_top1_drop, reference=reference, num_inputs=args.num_inputs,
                   rtol=args.rtol, atol=args.atol, val_dataset=args.val_dataset)


def _scenarios(args: argparse.Namespace, given: set) -> Tuple[Any, ...]:
    """One ServeOptions per --scenario (each checked: one sentence for what cannot run); the serving options without
    --scenario are refused, as is a scenario-only setting that no scenario asked takes (utils/measure/scenarios.py)."""
    if not args.scenario:
        stray = [n for n in SERVE_ONLY if n in given]
        if stray:
            raise ArtTRTError(f"--{stray[0]} is a setting of a serving scenario: add --scenario "
                              f"({', '.join(list(SCENARIOS)[:-1])} or {list(SCENARIOS)[-1]})")
        return ()
    duration = DEFAULT_SERVE_DURATION_S if args.duration is None else args.duration
    max_batch = DEFAULT_SERVE_MAX_BATCH if args.max_batch is None else args.max_batch
    names = list(dict.fromkeys(args.scenario))
    out = []
    for name in names:
        own = {k: getattr(args, k) for k in SCENARIOS[name].settings}  # the settings this scenario takes
        own["find_peak"] = bool(own.get("find_peak"))
        out.append(ServeOptions(name, max_batch=max_batch, max_queue_delay_us=args.max_queue_delay_us,
                                **{**{"latency_bound_ms": args.latency_bound_ms, "percentile": args.percentile},
                                   **own}, duration_s=duration, seed=args.seed))
    unused = [n for n in scenario_only_settings() if n in given and n not in settings_of(names)]
    if unused:  # said, not dropped: the user asked for a figure no run would make
        owner = next(s for s in SCENARIOS.values() if unused[0] in s.settings)
        raise ArtTRTError(f"--{unused[0]} is a setting of the {owner.title} scenario: add {owner.name} to --scenario")
    return tuple(out)


def _shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if not text:
        return None

    return parse_shard(text)


def _reference(text: str) -> Tuple[str, str]:
    backend, _, precision = text.partition("-")
    if not backend or not precision:
        raise ArtTRTError(f"--reference takes BACKEND-PRECISION, e.g. torch-fp32, not {text!r}")
    return backend, precision


def _check_combinations(args: argparse.Namespace, given: set, backends: Sequence[str],
                        precisions: Sequence[str]) -> None:
    """The rules that tie several arguments together (each single value is checked by its owner)."""
    for one, many in (("backend", "backends"), ("batch_size", "batch_sizes"), ("network", "networks")):
        if one in given and many in given:
            raise ArtTRTError(f"--{one} and --{many} both given: pass only --{many}")
    study_only = [n for n in STUDY_ONLY if n in given]
    if study_only and not args.validate:
        raise ArtTRTError(f"--{study_only[0]} is an option of a study: add -v")
    compare_only = [n for n in COMPARE_ONLY if n in given]
    if compare_only and not args.compare:
        raise ArtTRTError(f"{flag(compare_only[0])} is an option of --compare, which this run is not: drop it")
    calib = [n for n in CALIBRATION_ONLY if n in given]
    if calib and not {"int8", "fp8"} & set(precisions):
        raise ArtTRTError(f"{flag(calib[0])} is for int8/fp8 rows, and this run asks {', '.join(precisions)}: add "
                          "--precisions int8 (or fp8), or drop it")
    if "fp16_io" in given and not {"fp16", "bf16"} & set(precisions):
        raise ArtTRTError(f"--fp16_io makes an fp16/bf16 file's inputs and outputs fp16, and this run asks "
                          f"{', '.join(precisions)}: add --precisions fp16, or drop it")
    if args.synthetic is not None and not args.dataset:
        unread = [n for n in DATASET_ONLY if n in given]
        if unread:
            raise ArtTRTError(f"{flag(unread[0])} is about reading a dataset, and --synthetic makes random images: "
                              "drop it, or give --dataset")
    for name in ("output", "claims"):
        if name in given and not str(getattr(args, name) or "").strip():
            raise ArtTRTError(f"--{name} is empty: give a folder")
    if "telemetry_ms" in given and not args.telemetry:
        raise ArtTRTError("--telemetry_ms is the interval of --telemetry, which is not given: add --telemetry")
    if args.full_passes and (args.duration is not None or args.iterations is not None):
        raise ArtTRTError("--full_passes times every whole pass: drop --duration/--iterations, or --full_passes")
    if args.max_top1_drop is not None:
        args.max_top1_drop.check()
    for name in ("duration", "warmup", "min_warmup_s", "rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise ArtTRTError(f"{flag(name)} {value}: give a finite number")
    if args.duration is not None and args.duration > MAX_DURATION_S:
        raise ArtTRTError(f"--duration {args.duration:g} s is more than a day of timing per batch size: give at "
                          f"most {MAX_DURATION_S}")
    if not 0 <= args.seed < 2 ** 32:
        raise ArtTRTError(f"--seed {args.seed}: give 0 to {2 ** 32 - 1} (NumPy's and PyTorch's seeds)")
    if args.num_classes is not None and not 1 <= args.num_classes <= 1_000_000:
        raise ArtTRTError(f"--num_classes {args.num_classes}: give a class count from 1 to 1000000")
    for name in args.networks or ([args.network] if args.network else []):
        check_network_name(name)  # a mistyped name is refused now, with the closest names, before PyTorch loads
    if args.networks and len(args.networks) > 1 and args.weights:
        raise ArtTRTError("--weights is one network's file: with --networks use --pretrained, or one --network")
    if args.gpus and args.shard:
        raise ArtTRTError("--gpus and --shard both given: a share runs on one machine's GPUs; pass one")
    if args.mixed_precision:
        _check_mixed_precision(args, backends, precisions)
    ref_backend, ref_precision = registry.REFERENCE_RUNNER
    if args.max_top1_drop is not None and not args.mixed_precision and not (ref_backend in backends
                                                                          and ref_precision in precisions):
        raise ArtTRTError(f"--max_top1_drop measures each row against {ref_backend} {ref_precision}: add "
                          f"{ref_backend} to --backends and {ref_precision} to --precisions")
    if args.synthetic is not None and not args.dataset and args.max_top1_drop is not None:
        raise ArtTRTError("--max_top1_drop judges top-1 on labelled images, and --synthetic images have no "
                          "labels: give --dataset DIR")
    if args.validate and args.synthetic is not None and args.dataset and not {"int8", "fp8"} & set(precisions):
        raise ArtTRTError("--synthetic and --dataset both given: a run measures one of them (--dataset gives "
                          "calibration images only for int8/fp8); drop one")
    if args.input_shape and args.input_shape[0] != -1:
        fed = sorted(set(args.batch_sizes or [args.batch_size]) - {args.input_shape[0]})
        if fed:
            raise ArtTRTError(f"--input_shape {' '.join(map(str, args.input_shape))} is a static batch of "
                              f"{args.input_shape[0]}, but batches of {fed[0]} would be fed: pass --batch_size "
                              f"{args.input_shape[0]}, or -1 as the batch for a dynamic one")
    if args.compare and (args.rtol < 0 or args.atol < 0):
        raise ArtTRTError(f"-rtol and -atol must not be negative (got rtol={args.rtol}, atol={args.atol})")
    if args.compare and args.val_dataset and not args.dataset:
        raise ArtTRTError("--val_dataset compares on a validation set: pass --dataset DIR too")
    used = set(backends) | ({args.reference.split("-", 1)[0]} if args.compare else set())
    for name, b in registry.BACKENDS.items():
        if name in used:
            continue
        for f in dataclasses.fields(b.impl().Options):
            if f.name in given and f.name != "force" and not (f.name == "max_batch" and args.scenario):
                # --force is the study's too (measure again), --max_batch a scenario's (the batcher's largest)
                raise ArtTRTError(f"--{f.name} is an option of the {name} backend, which this run does not use")
    if ("onnx" in given or "input_shape" in given) and not any(registry.get(b).uses_onnx for b in used
                                                               if b in registry.BACKENDS):
        given_flag = "--onnx" if "onnx" in given else "--input_shape"
        raise ArtTRTError(f"{given_flag} is for the backends that run an ONNX file ("
                          + ", ".join(n for n, b in registry.BACKENDS.items() if b.uses_onnx)
                          + f"), not {', '.join(backends)}")


def _check_mixed_precision(args: argparse.Namespace, backends: Sequence[str], precisions: Sequence[str]) -> None:
    """--mixed_precision searches an int8/fp8 ONNX file within --max_top1_drop of fp32 on held-out images of
    --dataset (utils.models.mixed_precision): each thing it needs, one sentence before any work."""
    if args.max_top1_drop is None:
        raise ArtTRTError("--mixed_precision keeps layers out of int8/fp8 until top-1 is within a budget: give it "
                          "with --max_top1_drop POINTS")
    quantized = [p for p in precisions if p in ("int8", "fp8")]
    if not quantized:
        raise ArtTRTError(f"--mixed_precision keeps layers of an int8/fp8 file in higher precision, but this run asks "
                          f"{', '.join(precisions)}: add --precision int8 (or fp8)")
    onnx_backends = [n for n, b in registry.BACKENDS.items() if b.uses_onnx]
    if not any(b in onnx_backends for b in backends):
        raise ArtTRTError(f"--mixed_precision makes an ONNX file, which {', '.join(backends)} does not run: use "
                          f"--backend {' or '.join(onnx_backends)}")
    if not args.dataset:
        raise ArtTRTError("--mixed_precision measures top-1 on held-out labelled images: pass --dataset DIR")
