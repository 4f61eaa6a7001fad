"""Which records a table shows, read from the records alone: the newest of each setup, the timing rows and the
serving ones, the PyTorch fp32 reference row and each row's top-1 drop below it, the --max_top1_drop gate, the
identity columns that keep different datasets and weights apart, unstable timings, and a record's row label.
Nothing here renders: the sections (utils/report/sections/) do.

Usage:
    rows = latest_per_config(timing_rows(records)); over = over_top1_drop(records, 1.0)
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from utils.backends.registry import BACKENDS, PRECISIONS, REFERENCE_RUNNER, runner_label
from utils.core.top1_budget import INCONCLUSIVE, OVER, WITHIN, budget_points
from utils.core.top1_budget import non_inferiority as judge
from utils.report.schema import Record, ServeSettings
from utils.report.schema_types import ENV_IDENTITY, ENV_MACHINE


def row_label(rec: Record) -> str:
    """A record's runner as every table names it: 'Vanilla', 'TRT int8', 'ONNX Runtime fp32 (cpu)', with the
    options that change figures (the registry's runner_label, from the record's fields)."""
    if rec.has("options"):
        extras = [rec.options] if rec.options else []
    else:  # records written before the backends said their own options
        extras = [v for v in (rec.provider, rec.compile_mode) if v]
        if rec.engine_shapes == "static":
            extras.append("static")
    if rec.tf32:
        extras.append("TF32")
    if rec.cuda_graph:
        extras.append("CUDA graph")
    if rec.calib_method:  # the images the calibration really used (weak typing: whole batches only)
        extras.append(f"{rec.calib_method}, {rec.calib_images_used or rec.calib_images} img")
    mixed = rec.preparation.mixed_precision if rec.preparation is not None else None
    if mixed is not None:  # a --mixed_precision file: another file than the plain int8/fp8 one
        extras.append(f"mixed, {mixed.final_k} layers fp32")
    if rec.mode == "sync" and str(rec.device or "").startswith("cuda"):
        extras.append("sync")  # on the CPU every run is synchronous: say it only where it differs
    return runner_label(str(rec.backend or ""), str(rec.precision or "fp32"), extras)


RANDOM_WEIGHTS = "random weights"


def random_weights(r: Record) -> bool:
    return str(r.weights or "").startswith("random")


def not_numbers(r: Record) -> int:
    """How many images of a record gave outputs that are not numbers (NaN/Inf) or do not rank (all equal)."""
    return int(r.nonfinite_outputs or 0) + int(r.unrankable_outputs or 0)


def dataset_of(r: Record) -> str:
    """Which images a record measured: the folder's name and image count (its content key tells folders apart)."""
    name = str(r.dataset or "?").rstrip("/").rsplit("/", 1)[-1]
    return f"{name} ({r.images} img)" if r.images is not None else name


def _distinct(records: Sequence[Record], identity: Callable[[Record], Any],
              shown: Callable[[Record], str], key: Callable[[Record], Any]
              ) -> Callable[[Record], str]:
    """A column's text per record: `shown`, with a short key added where two different identities would read
    the same (two folders named imagenet with 50,000 images each are two rows, never one)."""
    names: Dict[str, set] = defaultdict(set)
    for r in records:
        names[shown(r)].add(identity(r))

    def text(r: Record) -> str:
        name = shown(r)
        if len(names[name]) < 2:
            return name
        return f"{name} [{hashlib.sha256(str(key(r)).encode()).hexdigest()[:6]}]"

    return text


def env_identity(r: Record) -> Tuple[Tuple[str, Any], ...]:
    """The environment a record was measured in, as far as it changes the record's figures: the kind of machine and
    PyTorch (schema_types.ENV_MACHINE) for every row, and the libraries its backend runs (registry: ONNX Runtime's
    version for an ONNX Runtime row, never for a PyTorch one), LoadGen's for a serving row; never the host name.
    (field, value) pairs, in schema_types.ENV_IDENTITY's order."""
    return tuple((k, getattr(r.env, k, None)) for k in env_fields(str(r.backend), is_scenario(r), r.provider))


def env_fields(backend: str, scenario: bool = False, provider: Optional[str] = None) -> Tuple[str, ...]:
    """The environment fields a row of `backend` (on `provider`) depends on (a serving row's: LoadGen's too), in
    ENV_IDENTITY's order: what a record's environment is compared by, and what a study job's key holds."""
    runs = BACKENDS.get(backend)
    libraries = runs.libraries_of(provider) if runs is not None else None
    fields = set(ENV_MACHINE) | set(ENV_IDENTITY if libraries is None else libraries)
    if scenario:
        fields.add("loadgen")
    return tuple(k for k in ENV_IDENTITY if k in fields)


def env_differs(records: Sequence[Record]) -> List[str]:
    """The environment fields in which records that depend on them differ (a PyTorch row and an ONNX Runtime row
    never differ in ONNX Runtime's version: the first does not run it)."""
    seen: Dict[str, set] = defaultdict(set)
    for r in records:
        for k, v in env_identity(r):
            seen[k].add(v)
    return [k for k in ENV_IDENTITY if len(seen[k]) > 1]


ENV_NAMES = {"cpu": "CPU", "gpu": "GPU", "compute_capability": "cc", "driver": "driver", "cuda": "CUDA",
             "torch": "torch", "torchvision": "torchvision", "onnx": "onnx", "onnxruntime": "ONNX Runtime",
             "tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX", "modelopt": "ModelOpt", "loadgen": "LoadGen",
             "torchao": "torchao"}


def env_text(records: Sequence[Record]) -> Callable[[Record], str]:
    """A record's environment in the words that tell the records' environments apart ("torch 2.11.0, ONNX Runtime
    1.30.0"): only what differs among them, and of that only what the record's figures depend on."""
    differ = env_differs(records)

    def text(r: Record) -> str:
        mine = dict(env_identity(r))
        return ", ".join(f"{ENV_NAMES[k]} {mine[k] if mine[k] is not None else '-'}" for k in differ if k in mine)

    return text


def identity_columns(records: Sequence[Record]) -> List[Tuple[str, Callable[[Record], str]]]:
    """The columns a table needs so that it never puts different datasets, weights or environments side by side
    unlabelled: "dataset" where the records measured different images, "weights" where they ran different weights,
    "measured with" where they were measured on another kind of machine or other library versions; each column's
    text tells apart identities that read the same (rows are grouped by these texts)."""
    cols: List[Tuple[str, Callable[[Record], str]]] = []

    def data_id(r: Record) -> Any:
        return (r.dataset_key or r.dataset, r.images)

    def weights_key(r: Record) -> Any:
        return r.weights_id or r.weights

    if len({data_id(r) for r in records}) > 1:
        cols.append(("dataset", _distinct(records, data_id, dataset_of, data_id)))
    if len({weights_key(r) for r in records}) > 1:
        cols.append(("weights", _distinct(records, weights_key, lambda r: str(r.weights), weights_key)))
    if env_differs(records):
        cols.append(("measured with", env_text(records)))
    return cols


# A row's timing is marked unstable (its images/s and every speed-up computed from it) when the host was loaded
# while it was timed (1-minute load average above the core count), or when its latency CV is far above its
# peers' (more than UNSTABLE_PEER_FACTOR x their median and above UNSTABLE_CV_FLOOR %), or above
# UNSTABLE_CV_ALWAYS % whatever the peers. trtexec only warns above 2.5 %; these rows are the ones not to trust.
UNSTABLE_CV_FLOOR = 10.0


UNSTABLE_PEER_FACTOR = 3.0


UNSTABLE_CV_ALWAYS = 50.0


UNSTABLE = " (unstable)"


OTHERS_SHARE = 0.25  # other processes busy on more than a quarter of the cores (at least half a core) while timed

UNSTABLE_NOTE = ("(unstable): the row's timing is not to be trusted: other processes kept the host busy while it was "
                 f"timed (more than {OTHERS_SHARE:.0%} of its cores; older records: a load average above the core "
                 "count), or its latency varied far more than its peers' (CV above "
                 f"{UNSTABLE_PEER_FACTOR:g}x their median and {UNSTABLE_CV_FLOOR:g} %, or above "
                 f"{UNSTABLE_CV_ALWAYS:g} %); speed-ups computed from it are marked too.")


def unstable_reason(r: Record, peers: Sequence[Record]) -> Optional[str]:
    """Why the row's timing is not to be trusted, or None (see UNSTABLE_NOTE)."""
    load, cores, others = r.host_load_1m, r.host_cores, r.host_others_cores
    if isinstance(others, (int, float)) and isinstance(cores, int) and cores > 0:  # the timed window's own
        if others > max(0.5, OTHERS_SHARE * cores):
            return f"host busy: other processes kept {others:.1f} of {cores} cores busy while it was timed"
    elif isinstance(load, (int, float)) and isinstance(cores, int) and cores > 0 and load > cores:
        return f"host loaded (load average {load:.1f} on {cores} cores)"  # records before host_others_cores
    cv = r.latency_all_cv_percent
    if not isinstance(cv, (int, float)) or not math.isfinite(cv):
        return None
    if cv > UNSTABLE_CV_ALWAYS:
        return f"latency CV {cv:.1f} %"
    others = sorted(float(p.latency_all_cv_percent) for p in peers if p is not r
                    and isinstance(p.latency_all_cv_percent, (int, float)))
    if others:
        mid = len(others) // 2
        median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
        if cv > max(UNSTABLE_CV_FLOOR, UNSTABLE_PEER_FACTOR * median):
            return f"latency CV {cv:.1f} % against its peers' median {median:.1f} %"
    return None


def unstable_reasons(records: Sequence[Record]) -> List[str]:
    """Each marked row's own reason ("resnet18 Vanilla bs1: host busy ..."; peers: the records of its network and
    batch size), in order, each once."""
    why, peers = [], defaultdict(list)
    for r in records:
        peers[(r.network, r.batch_size)].append(r)
    for r in records:
        reason = unstable_reason(r, peers[(r.network, r.batch_size)])
        if reason:
            why.append(f"{r.network} {row_label(r)} bs{r.batch_size}: {reason}")
    return list(dict.fromkeys(why))


def latest_per_config(records: Sequence[Record]) -> List[Record]:
    """The newest record of each (network, backend, precision, batch, mode, options, dataset, weights, environment,
    and a serving record's scenario and settings); a study's accuracy pass stands for its batch size only where no timing or
    whole-pass record of the setup does."""
    latest: Dict[Any, Record] = {}
    for r in sorted(records, key=lambda r: r.role != "accuracy"):  # stable: then oldest first
        if r.error:
            continue
        key = (r.network, row_label(r), r.batch_size, r.mode,
               r.dataset_key or r.dataset, r.weights_id or r.weights, serving_key(r),
               env_identity(r))  # another machine's or library's row is kept beside, labelled (identity_columns)
        latest[key] = r
    return list(latest.values())


def is_scenario(r: Record) -> bool:
    """A serving scenario's record (MLPerf LoadGen, role "scenario"): samples/s and latency under LoadGen's load, no
    timing row (it has no latency-model figures); only the served table and the serving curve draw it."""
    return r.role == "scenario" or r.scenario is not None


def timing_rows(records: Sequence[Record]) -> List[Record]:
    """The validation records the timing tables and plots draw: every one but the serving scenarios'."""
    return [r for r in records if r.kind == "validate" and not is_scenario(r)]


def serving_key(r: Record) -> Any:
    """What tells two serving records of one setup apart (the scenario and its settings); None for a timing row."""
    if not is_scenario(r):
        return None
    return (r.scenario, json.dumps(r.serve_settings.model_dump() if r.serve_settings else None, sort_keys=True,
                                   default=str))


def study_order(records: Sequence[Record]) -> List[Record]:
    """Network, then backend and precision in the registry's order, then batch size."""
    return sorted(records, key=lambda r: (str(r.network), row_sort_key(r), row_label(r),
                                          int(r.batch_size or 0)))


def row_sort_key(r: Record) -> Any:
    b = list(BACKENDS).index(r.backend) if r.backend in BACKENDS else 99
    p = PRECISIONS.index(r.precision) if r.precision in PRECISIONS else 99
    return (b, p, str(r.options or ""))


def latest_compares(records: Sequence[Record]) -> List[Record]:
    """The newest comparison record of each (network, weights, reference, runner, inputs): a report never shows
    a comparison that a later run of the same setup replaced."""
    latest: Dict[Any, Record] = {}
    for r in records:
        key = (r.network, r.weights, r.reference, r.backend, r.precision,
               str((r.other_facts.options if r.other_facts is not None else None) or ""), r.inputs_source, r.dataset,
               r.inputs, r.batch_size, r.rtol, r.atol)  # another tolerance: another question
        latest[key] = r
    return list(latest.values())


def images_key(r: Record) -> Any:
    """Which network, weights and images a record measured, and in which environment: records with the same key are
    compared row by row (a speed-up or a drop is never taken against another machine's or library's reference)."""
    return (r.network, r.weights_id or r.weights, r.dataset_key or r.dataset,
            r.images, tuple(getattr(r.env, k, None) for k in ENV_MACHINE))


def is_reference(r: Record) -> bool:
    """The PyTorch fp32 row every other is measured against, found by its runner key (backend and precision, no
    options, no CUDA graph, no calibration, not a synchronised GPU run), never by its display label."""
    return ((r.backend, r.precision) == REFERENCE_RUNNER and not r.options
            and not r.cuda_graph and not r.calib_method
            and not (r.mode == "sync" and str(r.device or "").startswith("cuda")))


def top1_drops(records: Sequence[Record]) -> List[Tuple[Record, Optional[float]]]:
    """Each validation record (timing, accuracy and serving rows) with its top-1 drop in points below PyTorch fp32 on
    the same network, weights and images (None where that reference or a top-1 is missing)."""
    recs = [r for r in records if r.kind == "validate" and not r.error]
    # a serving row (LoadGen's accuracy run) is measured against the timing rows' reference, or a served one's
    refs = {images_key(r): r for r in sorted(recs, key=lambda r: not is_scenario(r))  # timing refs win
            if is_reference(r) and r.top1 is not None}
    out = []
    for r in recs:
        ref = refs.get(images_key(r))
        drop = None if ref is None or r.top1 is None else float(ref.top1) - float(r.top1)
        out.append((r, drop))
    return out


def judge_drop(drop: float, max_drop: float, paired: Optional[Record] = None,
               ref_top1: Optional[float] = None) -> str:
    """--max_top1_drop (points, or a share of the reference's top-1 ref_top1: utils.core.confidence.Top1Budget) as a
    non-inferiority judgement (confidence.judge_drop): on the paired interval of the change where the record has one
    (paired_low/high_points), else the point drop."""
    pts = budget_points(max_drop, ref_top1)
    if paired is not None and paired.paired_low_points is not None and paired.paired_high_points is not None:
        return judge(drop, pts, float(paired.paired_low_points), float(paired.paired_high_points))
    return judge(drop, pts)


def paired_of(records: Sequence[Record]) -> Callable[[Record], Optional[Record]]:
    """The record holding a row's paired comparison: its own, or its setup's accuracy pass's (timing rows carry the
    top-1 of their accuracy pass, not its paired figures)."""
    by_setup = {r.setup_key: r for r in records if r.setup_key and r.paired_low_points is not None}

    def find(r: Record) -> Optional[Record]:
        return r if r.paired_low_points is not None else by_setup.get(r.setup_key)

    return find


def over_top1_drop(records: Sequence[Record], max_drop: float
                   ) -> List[Tuple[Record, Optional[float]]]:
    """The rows whose top-1 falls more than max_drop points below their PyTorch fp32 row (judged on the paired
    interval where there is one: judge_drop), and the rows whose outputs were not numbers on some image (drop None:
    they fail whatever their top-1); one per setup."""
    return [(r, drop) for r, drop, outcome in gate_outcomes(records, max_drop) if outcome != INCONCLUSIVE]


def gate_outcomes(records: Sequence[Record], max_drop: float
              ) -> List[Tuple[Record, Optional[float], str]]:
    """Every row the gate does not pass, one per setup: (record, drop, OVER or INCONCLUSIVE); drop None for outputs
    that are not numbers (OVER whatever the top-1)."""
    seen, out = set(), []
    paired = paired_of(records)
    for r, drop in top1_drops(latest_per_config(records)):
        key = (r.setup_key or row_label(r), images_key(r))
        if key in seen:
            continue
        if not_numbers(r):
            seen.add(key)
            out.append((r, None, OVER))
        elif drop is not None:
            outcome = judge_drop(drop, max_drop, paired(r), float(r.top1) + drop)
            if outcome != WITHIN:
                seen.add(key)
                out.append((r, drop, outcome))
    return out


def finite_number(v: Any) -> Optional[float]:
    """v as a finite float, or None: a missing, NaN or infinite figure is a blank, never "nan"."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def serve_settings(r: Optional[Record]) -> ServeSettings:
    return (r.serve_settings if r is not None else None) or ServeSettings()


def serve_question(r: Record) -> Tuple[float, float]:
    """(percentile, latency bound in ms) a serving run was held to; LoadGen's defaults here (99, 15) where unsaid."""
    s = serve_settings(r)
    return (finite_number(s.percentile) or 99.0, finite_number(s.latency_bound_ms) or 15.0)


def served_records(records: Sequence[Record]) -> List[Record]:
    """The newest serving record of each setup, scenario and settings, failed ones left out; where its accuracy run
    gave no `images`, a copy whose `images` is the count LoadGen's library held (the same images, one dataset)."""
    return [r if r.images is not None else r.with_fields(images=r.accuracy_samples)
            for r in latest_per_config([r for r in records if r.kind == "validate" and is_scenario(r)])]


def records_read(everything: Sequence[Record], shown_validations: int, shown_compares: int) -> str:
    """What the report drew from: every record read, and in one clause each why any is not a row of its own."""
    def why_left_out(kind: str, shown: int, replaced_by: str) -> str:
        recs = [r for r in everything if r.kind == kind]
        skipped = sum(1 for r in recs if str(r.error or "").startswith("skipped:"))
        failed = sum(1 for r in recs if r.error) - skipped
        parts = [f"{n} {what}" for n, what in ((len(recs) - failed - skipped - shown, replaced_by),
                                               (failed, "failed"), (skipped, "skipped")) if n > 0]
        return f"{len(recs)} {{}} ({shown} shown" + ("; left out: " + ", ".join(parts) if parts else "") + ")"
    same = "replaced by a newer record of the same setup"
    line = (why_left_out("validate", shown_validations, same + " (or an accuracy pass folded into its timed row)")
            .format("validation") + " and " + why_left_out("compare", shown_compares, same).format("comparison")
            + " records")
    validations = [r for r in everything if r.kind == "validate"]
    if any(r.error for r in validations):
        line += "; a failed or skipped job that no later record measured is listed under Not measured"
    return line
