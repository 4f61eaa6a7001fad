"""Runs a study's plan (utils/study/plan.py): each setup's accuracy pass, then its bounded timing per batch size,
one record per job; jobs whose records are already there are not measured again (--force redoes them); a job
that fails is an error row and the study goes on; a setup that cannot run is a skipped row.

Several processes share one plan through claims: a process takes a setup by creating its claim file
exclusively (--gpus runs one such process per GPU, each taking the next setup), so two processes never
measure the same setup and a GPU never times two jobs at once.

Usage:
    ctx = StudyContext(Path("outputs"), Recorder(Path("outputs"), command), DataOptions(dataset="..."),
                       MeasureOptions(duration_s=1.0, iterations=10), load_network)
    outcomes = run_setups(plan.setups, ctx)
"""
from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.backends.base import device_scope
from utils.backends.registry import get, options_label
from utils.core.errors import ArtTRTError, first_line
from utils.core.progress import progress_bar
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.models.networks import Network
from utils.models.paths import weights_id
from utils.report.records import Recorder, load_records, make_record
from utils.report.schema import Record
from utils.report.schema_types import Env
from utils.report.select import images_key
from utils.study import validate
from utils.study.agreement import Reference, is_reference_run, predictions_saver, reference_predictions
from utils.study.handover import for_worker, write_handover
from utils.study.identity import done_here, environment_identity, job_key, keys_of
from utils.study.plan import SCENARIO, WHOLE, Job, Setup, setup_key
from utils.study.validate import OpenRunner, count_cost, serve_with, warn_if_random_weights
from utils.study.workers import claim, claim_key, launch, note_outcome, outcomes_of, records_of, release, wait_all

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)

MEASURED, REUSED, SKIPPED, ERROR = "measured", "done before", "skipped", "error"


@dataclass
class StudyContext:
    output: Path
    recorder: Recorder
    data: DataOptions
    measure: MeasureOptions                 # the rules; batch size, duration and iterations set per job
    load_network: Callable[[str], Network]
    force: bool = False
    progress: bool = True
    telemetry: Any = None
    profile: bool = False
    inspect: bool = False
    claims: Optional[Path] = None           # a folder of claim files shared by the processes of one study
    held_elsewhere: List[Dict[str, Any]] = field(default_factory=list)  # the claims other processes held
    datasets: Dict[str, Any] = field(default_factory=dict)  # open datasets by preprocessing: one per study
    records: Optional[List[Record]] = None  # the output folder's, read once at the start (None: read here)
    hand_over: Optional[Tuple[Any, Any]] = None  # the study's Request and plan: setups of own_process_on_gpu
                                            # backends run in a worker handed them (None: this is such a worker)
    rows_for_errors: bool = True            # a failing job is an error row (a study); False: it is raised (one run)
    written: List[Record] = field(default_factory=list)  # this process's records so far (agreement's refs)


@dataclass
class Outcome:
    setup: Setup
    job: Job
    status: str
    record: Optional[Record] = None
    message: Optional[str] = None


@dataclass
class _Open:
    """The network and dataset of the setups being run (one network open at a time)."""
    name: Optional[str] = None
    net: Any = None
    dataset: Any = None
    facts: Dict[str, Any] = field(default_factory=dict)


def device_identity(device: str) -> str:
    """The kind of device a job ran on (GPUs of one model are interchangeable for a rerun; the record keeps the
    index)."""

    if device.startswith("cuda") and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return "cpu"


def finished(records: Sequence[Record]) -> Dict[str, Record]:
    """Every job record among records (the output folder's, loaded once per run), by job key (the newest of each)."""
    out: Dict[str, Record] = {}
    for rec in sorted(records, key=lambda r: str(r.time or "")):
        if rec.kind == "validate" and rec.job_key:
            out.update(dict.fromkeys(keys_of(rec), rec))
    return out


def merged(before: Sequence[Record], new: Sequence[Optional[Record]]) -> List[Record]:
    """The records of the folder after a run: those read at its start and those it wrote (by file, the newer copy)."""
    by_path = {r.path: r for r in before}
    by_path.update({r.path: r for r in new if r})
    return sorted(by_path.values(), key=lambda r: str(r.time or ""))


def run_setups(setups: Sequence[Setup], ctx: StudyContext, bar: Any = None) -> List[Outcome]:
    """Runs every job of setups (those this process claims), network by network; returns each job's outcome."""
    if ctx.records is None:
        ctx.records = load_records(ctx.output) if ctx.output.is_dir() else []
    done = {} if ctx.force else finished(ctx.records)
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(total=sum(len(s.jobs) for s in setups), desc="study", enabled=ctx.progress)
    outcomes: List[Outcome] = []
    try:
        for _, group in itertools.groupby(setups, key=lambda s: s.network):
            opened = _Open()
            # PyTorch fp32 first: the others' records are written with their agreement with it (utils/study/agreement.py)
            for setup in sorted(group, key=lambda s: not is_reference_run(s.spec, ctx.measure.sync)):
                key = _claim_key(setup, ctx) if ctx.claims is not None else ""
                if ctx.claims is not None:
                    holder = claim(ctx.claims, key, setup.label)
                    if holder is not None:  # another process runs it, or ran it: counted, said at the end
                        ctx.held_elsewhere.append({**holder, "key": key})
                        continue
                if _own_process(setup, ctx) and not _all_done(setup, ctx, done, opened):
                    new = _run_in_child(setup, ctx, bar)
                else:  # (a setup whose jobs are all done is found here: no child for nothing)
                    new = _run_setup(setup, ctx, done, opened, bar)
                outcomes += new
                ctx.written += [o.record for o in new if o.record]
                if ctx.claims is not None:
                    release(ctx.claims, key)
                if any(o.status not in (REUSED, SKIPPED) for o in new):  # a setup found done built nothing
                    _give_back_gpu_memory(setup)
            opened.net = opened.dataset = None
    finally:
        if own_bar:
            bar.close()
        for dataset in ctx.datasets.values():
            dataset.unpin()
        ctx.datasets.clear()
    return outcomes


def _claim_key(setup: Setup, ctx: StudyContext) -> str:
    """The setup's claim: its content, this run's rules and the environment its jobs run in."""
    serving = any(j.role == SCENARIO for j in setup.jobs)
    return claim_key(setup, ctx.measure.key_rules(), environment_identity(setup.spec, scenario=serving))


def _facts(setup: Setup, ctx: StudyContext, opened: _Open) -> Dict[str, Any]:
    """What the keys of a runnable setup's jobs need besides the setup: its network's weights, its dataset, the
    kind of device and the environment (the network and dataset are opened here if they are not yet): a record of
    another machine or other versions of what the setup runs is not "done before" here; it is measured again and
    kept beside."""
    return {**_open(setup, ctx, opened).facts, "device": device_identity(setup.spec.device),
            "environment": environment_identity(setup.spec)}


def _all_done(setup: Setup, ctx: StudyContext, done: Dict[str, Record], opened: _Open) -> bool:
    """True where every job of setup has a measured record already (its keys need the network and dataset)."""
    facts = _facts(setup, ctx, opened)
    rules = ctx.measure.key_rules()
    for job in setup.jobs:
        _, key, here = job_key(setup, job, facts, rules)
        old = done_here(done, key, here)
        if old is None or old.error:
            return False
    return True


def _own_process(setup: Setup, ctx: StudyContext) -> bool:
    return (ctx.hand_over is not None and setup.skipped is None and setup.spec.device.startswith("cuda")
            and get(setup.spec.backend).own_process_on_gpu)


def _run_in_child(setup: Setup, ctx: StudyContext, bar: Any) -> List[Outcome]:
    """Runs one setup in a worker process of its own (utils.study.workers.launch), told that setup explicitly; its
    records come back through its outcome lines."""

    assert ctx.hand_over is not None
    request, plan = ctx.hand_over
    folder = ctx.output / f".claims-{os.getpid()}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    try:
        mine = for_worker(request, setup.spec.device, folder, setups=[setup.index], force=ctx.force)
        proc = launch(write_handover(folder, f"setup-{setup.index}-process", mine, plan))
        wait_all([proc])
        rc = proc.returncode
        lines = outcomes_of(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    got = []
    for line, rec in zip(lines, records_of(lines)):
        job = Job(str(rec.role if rec else None), int((rec.batch_size if rec else None) or 0))
        got.append(Outcome(setup, job, line["status"], rec, rec.error if rec else None))
    if rc not in (0, 1) or len(got) < len(setup.jobs):
        log.error("%s: its process stopped with status %d after %d of %d jobs", setup.label, rc, len(got),
                  len(setup.jobs))
        got += [Outcome(setup, job, ERROR, None, f"its process stopped with status {rc}")
                for job in setup.jobs[len(got):]]
    out: List[Outcome] = []
    for outcome in got:  # a worker of --gpus passes them on to its parent's claims folder
        _emit(out, ctx, outcome)
    bar.update(len(setup.jobs))
    return out


def _give_back_gpu_memory(setup: Setup) -> None:
    """After a setup, the memory PyTorch cached is returned to the GPU: the next setup's runtime (ONNX Runtime's
    own arena, TensorRT) must not find the GPU full of PyTorch's freed blocks (an H200 study ran ONNX Runtime out
    of memory after torch.compile setups before this)."""

    gc.collect()
    if setup.spec.device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _open(setup: Setup, ctx: StudyContext, opened: _Open) -> _Open:
    if opened.name != setup.network:
        opened.net = opened.dataset = None  # one network's memory at a time
        net = ctx.load_network(setup.network)
        key = json.dumps([net.preprocess.as_dict(), net.num_classes], sort_keys=True)
        if key not in ctx.datasets:  # networks with the same preprocessing share one open (page-locked) dataset
            ctx.datasets[key] = ctx.data.open(net.preprocess, net.num_classes)
        dataset = ctx.datasets[key]
        warn_if_random_weights(net, dataset)
        n = len(dataset) if ctx.measure.limit is None else min(ctx.measure.limit, len(dataset))
        opened.name, opened.net, opened.dataset = setup.network, net, dataset
        opened.facts = {"weights_id": weights_id(net), "images": n,
                        "dataset_key": dataset.meta.get("key") or dataset.meta.get("root")}
    return opened


def _run_setup(setup: Setup, ctx: StudyContext, done: Dict[str, Record], opened: _Open,
               bar: Any) -> List[Outcome]:
    if setup.skipped is not None:
        return _jobs(setup, ctx, done, opened, bar, {})
    facts = _facts(setup, ctx, opened)
    with device_scope(setup.spec.device):  # one GPU and stream for the setup's runner and every job
        return _jobs(setup, ctx, done, opened, bar, facts)


def _jobs(setup: Setup, ctx: StudyContext, done: Dict[str, Record], opened: _Open, bar: Any,
          facts: Dict[str, Any]) -> List[Outcome]:
    out: List[Outcome] = []
    accuracy: Optional[Record] = None
    rules = ctx.measure.key_rules()
    skey = setup_key(setup, facts)
    runner: Optional[OpenRunner] = None
    broken: Optional[str] = None  # the runner could not be made: the setup's other jobs are not tried again
    try:
        for job in setup.jobs:
            bar.set_postfix_str(f"{setup.label} bs{job.batch_size} {job.role}", refresh=False)
            ident, key, here = job_key(setup, job, facts, rules)
            common = {"role": job.role, "job_key": key, "setup_key": skey, "study_job": ident}
            old = done_here(done, key, here)
            if old is not None and not (old.error and not setup.skipped):  # failures are tried again
                _emit(out, ctx, Outcome(setup, job, SKIPPED if setup.skipped else REUSED, old, old.error))
                if job.kind.gives_accuracy:
                    accuracy = old
                bar.update(1)
                continue
            if setup.skipped is not None or broken is not None:
                why = f"skipped: {setup.skipped}" if setup.skipped else f"not run: {broken}"
                rec = ctx.recorder.write(_failure_record(setup, job, ctx, why, common))
                _emit(out, ctx, Outcome(setup, job, SKIPPED if setup.skipped else ERROR, rec, why))
                bar.update(1)
                continue
            spec = setup.spec
            opts = dataclasses.replace(ctx.measure, batch_size=job.batch_size, progress=False)
            if job.kind.whole_pass:  # accuracy over every image (and its own timing; an accuracy pass timed once)
                opts = dataclasses.replace(opts, duration_s=None, iterations=None,
                                           repeats=opts.repeats if job.role == WHOLE else 1)
            extra = dict(common)
            if job.kind.takes_accuracy and accuracy is not None:
                extra.update({k: getattr(accuracy, k) for k in ("top1", "top5", "images", "labelled_images",
                                                                "nonfinite_outputs", "unrankable_outputs")})
                extra["accuracy_from"] = {"batch_size": accuracy.batch_size,
                                          "job_key": accuracy.job_key}
            if ctx.telemetry is not None:
                ctx.telemetry.label = f"{setup.network}-{spec.backend}-{spec.precision}-bs{job.batch_size}-{job.role}"
            try:
                if runner is not None and not runner.serves(job.batch_size):  # a static engine: one per batch size
                    runner.close()
                    runner = None
                if runner is None:
                    count_cost(opened.net)  # once per network, before its first runner may move or convert the model
                    try:
                        runner = OpenRunner(spec, opened.net, ctx.data, job.batch_size, ctx.telemetry)
                    except Exception as err:
                        broken = _message(err)
                        raise
                if job.kind.serves:
                    rec = serve_with(runner, spec, opened.net, opened.dataset, job.serve, ctx.measure.limit,
                                     ctx.recorder, extra)
                    _emit(out, ctx, Outcome(setup, job, MEASURED, rec))
                    bar.update(1)
                    continue
                rec, _ = validate.measure_with(runner, spec, opened.net, opened.dataset, opts, ctx.recorder, ctx.telemetry,
                                      inspect=ctx.inspect and job == next(j for j in setup.jobs
                                                                          if j.kind.looked_inside),
                                      profile=ctx.profile and job.kind.looked_inside, extra_fields=extra,
                                      on_result=predictions_saver(ctx.output, key, _reference(setup, ctx, opened, key),
                                                                  opened.dataset.meta.get("class_names"))
                                      if job.kind.keeps_predictions else None)
            except Exception as err:  # an error row, and the study goes on (Ultralytics' benchmark, trtexec)
                if not ctx.rows_for_errors:
                    raise
                message = _message(err)
                if not isinstance(err, ArtTRTError):  # a bug keeps its traceback in the log
                    log.error("%s bs%d (%s) failed", setup.label, job.batch_size, job.role, exc_info=True)
                else:
                    log.warning("%s bs%d (%s): %s", setup.label, job.batch_size, job.role, message)
                rec = ctx.recorder.write(_failure_record(setup, job, ctx, message, common))
                _emit(out, ctx, Outcome(setup, job, ERROR, rec, message))
                bar.update(1)
                continue
            if job.kind.gives_accuracy:
                accuracy = rec
            _emit(out, ctx, Outcome(setup, job, MEASURED, rec))
            bar.update(1)
    finally:
        if runner is not None:
            runner.close()
    return out


def _reference(setup: Setup, ctx: StudyContext, opened: _Open, key: str) -> Reference:
    """Where a setup's accuracy job finds PyTorch fp32's predictions of its images: its own where it is that
    reference, else the newest of the folder's records and this run's."""
    def find(result: Any) -> Optional[Tuple[np.ndarray, str]]:
        if is_reference_run(setup.spec, ctx.measure.sync):
            return np.asarray(result.predictions, dtype=np.int64), key
        env = environment_identity(setup.spec)
        here = Record.model_construct(network=setup.network, weights_id=opened.facts["weights_id"],
                                      dataset_key=opened.facts["dataset_key"], images=result.images,
                                      env=Env.model_validate(env))
        want = images_key(here)  # the same images in the same environment (select.images_key)
        return reference_predictions(ctx.output, [*(ctx.records or []), *ctx.written], want)

    return find


def _message(err: BaseException) -> str:
    return first_line(err) if isinstance(err, ArtTRTError) else f"{type(err).__name__}: {first_line(err)}"


def _emit(out: List[Outcome], ctx: StudyContext, outcome: Outcome) -> None:
    out.append(outcome)
    if ctx.claims is not None:  # a worker of --gpus: a line for the parent's bar and tables
        note_outcome(ctx.claims, outcome.status, outcome.record)


def _failure_record(setup: Setup, job: Job, ctx: StudyContext, message: str, common: Dict[str, Any]
                    ) -> Dict[str, Any]:
    spec = setup.spec
    return make_record("validate", ctx.recorder.command, error=message, network=setup.network,
                       backend=spec.backend, precision=spec.precision,
                       options=options_label(spec) if not setup.skipped else _calib_words(setup), device=spec.device,
                       batch_size=job.batch_size, mode="sync" if ctx.measure.sync else "pipelined", **common)


def _calib_words(setup: Setup) -> str:
    calib = setup.spec.model.calib
    return f"{calib.calib_method}, {calib.calib_size} img" if setup.calibrated else ""


