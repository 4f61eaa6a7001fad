"""What main.py runs once it has a request (utils/study/request.py): the study (-v), a comparison (--compare), the
demo (--demo) and the report (--report). Each is one hop from main.py; nothing here reads the argument namespace
or calls back into main.py.

Usage:
    return run(request_from_args(args, parser, argv))
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from utils.backends import base, registry
from utils.core.confidence import paired_change
from utils.core.errors import ArtTRTError, first_line, setup_logging
from utils.core.fileio import atomic_write_text, ensure_writable, slug
from utils.data.cache import SyntheticDataset, default_cache_dir
from utils.measure.telemetry import Telemetry
from utils.models import networks
from utils.models.chain import check_input_size
from utils.models.networks import Network
from utils.models.paths import weights_dir
from utils.report.records import Recorder, load_records, record_folders
from utils.report.report import make_report, where_results_are
from utils.report.schema import Record
from utils.report.sections.baseline_tables import baseline_markdown, setup_identity
from utils.report.sections.compare_tables import compare_columns_markdown
from utils.report.terminal import fit_terminal, terminal_width
from utils.study import gpus as multi_gpu
from utils.study.agreement import KEEPS_PREDICTIONS, load_predictions, with_agreement
from utils.study.comparison import compare_one
from utils.study.demo import run_demo
from utils.study.finish import finish_study, top1_gate
from utils.study.gpus import run_on_gpus
from utils.study.plan import StudyPlan, calib_grid, make_plan
from utils.study.request import Request
from utils.study.study import ERROR, MEASURED, REUSED, SKIPPED, StudyContext, merged, run_setups
from utils.study.workers import claims_elsewhere, held_now

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger("arttrt")


def run(request: Request) -> int:
    """Runs the request's command; its exit status."""
    setup_logging(request.quiet, request.verbose)
    return {"demo": demo_command, "compare": compare_command, "report": report_command,
            "validate": validate_command}[request.mode](request)


def load(request: Request, name: str) -> Network:
    return networks.load_network(name, request.weights, request.pretrained, request.num_classes, request.seed)


def check_folders(request: Request, backends: Sequence[str]) -> None:
    """The folders this run will write to take files, before anything is measured."""

    ensure_writable(request.output, "--output")
    if request.data.dataset and request.data.synthetic is None or request.val_dataset:
        ensure_writable(request.data.cache_dir or default_cache_dir(), "--cache_dir")
    if any(registry.get(b).uses_onnx for b in backends):
        ensure_writable(weights_dir(), "the weights folder (ARTTRT_WEIGHTS_DIR)")
    if request.claims is not None:
        ensure_writable(request.claims, "--claims")  # a shared folder (one per study) may be new


def use_device(device: str) -> None:
    """The device is there; a cuda:N becomes the current GPU (checks, engine keys and records speak of it)."""

    dev = base.resolve_device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)


def check_implied_device(request: Request) -> None:
    """A GPU the user did not name (--gpus or a GPU-only backend implied it) that is not here: one sentence that
    says what implied it, after the GPU-only backends' own refusals ("TensorRT is not installed" says more)."""
    if not request.device.startswith("cuda") or request.device_reason.startswith("--device"):
        return

    if torch.cuda.is_available():
        return
    gpu_only = [b for b in request.backends if registry.needs_gpu(b)]
    for backend in gpu_only:
        for precision in request.precisions:
            registry.check(request.spec_for(backend, precision))
    # a GPU-only backend with its own check vouches for the GPU it runs on (TensorRT's says "no GPU" itself)
    unvouched = [b for b in gpu_only if not hasattr(registry.get(b).impl(), "check")]
    if gpu_only and not unvouched and not request.device_reason.startswith("--gpus"):
        return
    raise ArtTRTError(f"this run is on cuda because {request.device_reason}, but PyTorch sees no CUDA GPU here: "
                      + (f"drop {' '.join(unvouched)} from the backends (the rest run on --device cpu)" if unvouched
                         else "drop --gpus") + ", or run on a machine with an NVIDIA GPU")


def first_refusal(request: Request) -> Optional[str]:
    """Why nothing the request asks could run (each backend's check, then the calibration grid's, in the plan's
    order: the first setup's reason), or None where something can: said before any network loads."""
    reasons = []
    for backend in request.backends:
        for precision in request.precisions:
            for spec, calib_why in calib_grid(request.spec_for(backend, precision), request.calib_methods,
                                              request.calib_sizes):
                try:
                    registry.check(spec)
                except ArtTRTError as err:
                    reasons.append(str(err))
                    continue
                if calib_why is None:
                    return None
                reasons.append(calib_why)
    return reasons[0] if reasons else "nothing to run"


def plan_of_request(request: Request, loaded: Dict[str, Network]) -> StudyPlan:
    """The study the request asks for, made once, every combination checked (utils/study/plan.py): what nothing could
    run is said first; then every network loads (weights found, downloaded) into `loaded`, so nothing fails later
    for a missing file, and a network that cannot load is a skipped row with its reason."""
    check_implied_device(request)
    refusal = first_refusal(request)
    if refusal is not None:  # nothing could run (TensorRT missing, no GPU): said before any load
        raise ArtTRTError(refusal)
    unloadable = {}
    for name in request.networks:
        try:
            loaded[name] = loaded.get(name) or load(request, name)
        except ArtTRTError as err:
            unloadable[name] = str(err)
            continue
        if request.model.input_shape is not None:
            check_input_size(loaded[name], request.model)
    sizes = list(request.batch_sizes) if request.timing_jobs else []
    plan = make_plan(list(request.networks), list(request.backends), list(request.precisions),
                     sizes, request.spec_for, bounded=request.bounded, calib_methods=request.calib_methods,
                     calib_sizes=request.calib_sizes, unloadable=unloadable, scenarios=request.scenarios)
    if all(s.skipped for s in plan.setups):  # nothing could run: the first reason, before any work
        raise ArtTRTError(plan.setups[0].skipped or "nothing to run")
    return plan


def validate_command(request: Request, plan: Optional[StudyPlan] = None, worker: bool = False) -> int:
    """-v: the plan, its setups (this share, or those given, or those claimed), one record per job, the tables. A
    worker is handed its study's plan (utils/study/worker.py): the parent made it once, and loaded every network."""
    started = time.perf_counter()
    loaded: Dict[str, Network] = {}
    plan = plan or plan_of_request(request, loaded)
    if not request.gpus and ":" in request.device:  # cuda:N becomes the current GPU (the plan checked it is there)
        use_device(request.device)
    setups = plan.shard(*request.shard) if request.shard else plan.setups
    if request.setups is not None:
        setups = [s for s in setups if s.index in request.setups]
    check_folders(request, [s.spec.backend for s in setups])
    if not setups:
        print(f"--shard {request.shard[0]}/{request.shard[1]}: this share holds none of the plan's "
              f"{len(plan.setups)} setups: nothing to do" if request.shard else "no setup to run: nothing to do")
        return 0
    if request.gpus and request.claims is None:
        gpus = multi_gpu.gpu_indices(request.gpus)
        if len(gpus) > 1:
            return run_on_gpus(request, gpus, plan, started)
        request = request.with_device(f"cuda:{gpus[0]}", "--gpus")  # one GPU: this process is its worker
        use_device(request.device)
        plan = plan.on_device(request.device)
        setups = plan.setups
    many = plan.jobs > 1
    known = load_records(request.output) if request.output.is_dir() else []  # the folder's records, read once
    ctx = StudyContext(request.output, Recorder(request.output, request.command), request.data,
                       dataclasses.replace(request.measure, progress=not request.quiet and not many),
                       lambda name: loaded.get(name) or load(request, name), force=request.force,
                       progress=not request.quiet and many, profile=request.profile, inspect=request.inspect,
                       claims=request.claims, rows_for_errors=many,
                       hand_over=None if request.setups is not None else (request, plan),
                       records=known)
    if request.telemetry:
        ctx.telemetry = Telemetry(interval_ms=request.telemetry_ms).start()
    try:
        outcomes = run_setups(setups, ctx)
    finally:
        if ctx.telemetry is not None:
            ctx.telemetry.stop()
            csv_path = ctx.telemetry.save(request.output / "telemetry", "-".join(request.networks))
            log.info("GPU telemetry: %s", csv_path)
    if worker:  # a worker (of --gpus, or a setup's own process): the parent draws the tables
        return 1 if any(o.status == ERROR for o in outcomes) else 0
    mine = [o.record for o in outcomes if o.record]
    if ctx.held_elsewhere and request.claims is not None:  # --claims shared with other processes (a Slurm array)
        held = held_now(request.claims, ctx.held_elsewhere)
        print(claims_elsewhere(held))
        if any(h.get("state") != "done" for h in held):
            print(f"the tables and report of {request.output} are drawn by the last of the study's processes to "
                  f"finish (or: python main.py --report {request.output})")
            return 1 if any(o.status == ERROR for o in outcomes) else 0
        # the last process: the other processes' rows too
        known = load_records(request.output)  # read again: they wrote since this process started
        mine += [r for r in known if r.kind == "validate" and written_since(r, held)
                 and r.path not in {m.path for m in mine}]
    everything = merged(known, [o.record for o in outcomes])
    everything = with_agreement(request.output, everything)  # in memory: no record is written twice
    return finish_study(request.max_top1_drop, request.output, mine, started,
                        {k: sum(o.status == k for o in outcomes) for k in (MEASURED, REUSED, SKIPPED, ERROR)},
                        everything)


REGRESSED = 4  # exit status of --report --baseline with a row slower beyond --max_regression


def with_baseline_pairs(folder: Path, records: List[Record], base: Path, old: Sequence[Record]) -> List[Record]:
    """records, each accuracy pass that has the baseline's accuracy pass of the same setup and images (both with
    predictions and labels kept) as a copy with `baseline_paired`: its top-1 change paired on those images."""
    theirs = {setup_identity(r): r for r in old if r.role in KEEPS_PREDICTIONS and r.predictions_file
              and not r.error}
    out = []
    for r in records:
        b = theirs.get(setup_identity(r))
        if r.role not in KEEPS_PREDICTIONS or b is None or not r.predictions_file or not r.labels_file:
            out.append(r)
            continue
        try:
            paired = paired_change(load_predictions(folder, r.predictions_file),
                                   load_predictions(base, str(b.predictions_file)),
                                   load_predictions(folder, r.labels_file))
        except (OSError, ValueError, ArtTRTError) as err:
            log.warning("no paired top-1 against the baseline for %s: %s", r.path, first_line(err))
            paired = None
        out.append(r.with_fields(baseline_paired=paired) if paired else r)
    return out


def written_since(rec: Record, held: Sequence[Dict[str, Any]]) -> bool:
    """Whether a record was written by this study's other processes: at or after the first claim they held."""
    try:
        first = min(float(h.get("time") or 0) for h in held)
        return dt.datetime.fromisoformat(str(rec.time)).timestamp() >= first - 1.0
    except (TypeError, ValueError):
        return False


def compare_command(request: Request) -> int:
    """--compare: the reference runner (default torch-fp32) against each backend and precision asked; with several,
    the original's table with one column per runner."""

    if ":" in request.device:
        use_device(request.device)
    others = [request.spec_for(b, p) for b in request.backends for p in request.precisions]
    ref_spec = request.spec_for(*request.reference)
    for spec in [*others, ref_spec]:  # what is compared first: no advice that sends the user round in a circle
        registry.check(spec)
    check_folders(request, [ref_spec.backend, *[s.backend for s in others]])
    net = load(request, request.networks[0])
    if request.model.input_shape is not None:
        check_input_size(net, request.model)
    if request.val_dataset:
        dataset = request.data.open(net.preprocess, net.num_classes)
        limit = request.num_inputs if request.measure.limit is None else request.measure.limit
        source = "dataset"
    else:
        dataset = SyntheticDataset(request.num_inputs, net.preprocess.crop, seed=request.seed)
        limit, source = request.measure.limit, f"random (seed {request.seed})"
    recorder = Recorder(request.output, request.command)
    runs: List = []
    for other in others:
        rec, stats, text = compare_one(ref_spec, other, net, dataset, batch_size=request.batch_sizes[0],
                                       rtol=request.rtol, atol=request.atol, data=request.data, recorder=recorder,
                                       limit=limit, inputs_source=source, progress=not request.quiet)
        runs.append((registry.spec_label(other), stats.summary()))
        if len(others) == 1:
            print(text)
    if len(others) > 1:
        columns = compare_columns_markdown(runs, registry.spec_label(ref_spec), net.name)
        atomic_write_text(request.output / "compare" / f"{slug(net.name)}-columns.md", columns)
        print(columns)
    make_report(request.output)
    print(where_results_are(request.output))
    return 0


def demo_command(request: Request) -> int:
    return run_demo(request.output, quiet=request.quiet, command=request.command)


def report_command(request: Request) -> int:

    assert request.report_dir is not None
    records = None
    if request.report_dir.is_dir():
        # every records/ folder under DIR (shares of a study copied side by side), read once; each setup's
        # agreement with PyTorch fp32 filled in memory where its record lacks it (a report never writes a record)
        records = with_agreement(request.report_dir, load_records(request.report_dir, nested=True))
        folders = record_folders(records)
        if len(folders) > 1:
            print("records read from " + ", ".join(f"{f} ({n})" for f, n in sorted(folders.items())))
    old: List[Record] = []
    if request.baseline is not None:
        old = load_records(request.baseline, nested=True)
        records = with_baseline_pairs(request.report_dir, records or [], request.baseline, old)
    try:
        make_report(request.report_dir, max_top1_drop=request.max_top1_drop, records=records, baseline=old,
                    max_regression=request.max_regression)
    except OSError as err:  # a read-only or full disk, a folder in the way: one sentence
        raise ArtTRTError(f"--report could not write its tables, plots and report into {request.report_dir} "
                          f"({err.strerror or first_line(err)}{': ' + str(err.filename) if err.filename else ''}): "
                          "the records are untouched; copy the folder somewhere writable and run --report there") from err
    print(where_results_are(request.report_dir))
    rc = top1_gate(records or [], request.max_top1_drop) if request.max_top1_drop is not None else 0
    if request.baseline is not None:  # first on the console as in the report
        doc, regressed = baseline_markdown(records or [], old, request.max_regression)
        print(fit_terminal(doc, terminal_width()))
        for row in regressed:
            print(f"regression: {row} is more than {request.max_regression:g} % slower than in {request.baseline}",
                  file=sys.stderr)
        if regressed and not rc:
            return REGRESSED
    return rc  # merged shards are gated as one study is
