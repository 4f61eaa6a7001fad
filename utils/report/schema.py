"""The record, defined once (a pydantic model with a version field) and checked on every read and every write.

A record is trusted only after it fits: every field the tables, the report, the gate and the study's resume read
is typed here, numbers are finite and within bounds (no NaN taken for a figure, no integer of 400 digits), texts
are bounded, nested blocks (--inspect, --profile, a comparison's example) have their own shapes. Fields this
version does not know pass through untyped and are never read. A record that does not fit is skipped by
utils.report.records.read_record with one warning naming the file and the field.

Above the schema layer (records.py, this file) a record is a `Record`: read by attribute, typed, never a dict looked
up by name (tests/test_architecture.py checks). Fields kept in memory only (`_path`: the file it came from) are
extras, read through `Record.path` and `Record.elsewhere`.

Usage:
    rec = check_record(json_object)        # the record as a Record, or raises RecordError naming the field
    rec.top1, rec.env.gpu, rec.path        # typed fields, None where the record has none
    recs = typed_all(dicts_or_records)     # hand-made records (tests, a record just written) made typed
"""
from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import Field, ValidationError

RECORD_VERSION = 2          # 2: records checked against this schema (1: the same fields, written before it)
READABLE_VERSIONS = (1, 2)

from utils.report.schema_types import (BatchSize, ColdStart, Count, Env, Example, Finite, Inspect, LongText,
                                       NonNegative, Percent, Preparation, Profile, RunFigures, SpeedCI, Text, TimeSplit,
                                       _Strict)

LatencyMs = Dict[Annotated[str, Field(max_length=16)], NonNegative]  # "p50" ... "p99.9", "min", "mean", "max"
Reasons = List[Text]


class ServeSettings(_Strict):
    """A serving scenario's settings (utils.measure.serving.ServeOptions): the fields the tables read."""

    scenario: Optional[Text] = None
    max_batch: Optional[BatchSize] = None
    max_queue_delay_us: Optional[Count] = None
    target_qps: Optional[NonNegative] = None
    latency_bound_ms: Optional[NonNegative] = None
    percentile: Optional[Percent] = None
    find_peak: Optional[bool] = None
    duration_s: Optional[NonNegative] = None
    samples_per_query: Optional[Count] = None
    seed: Optional[Annotated[int, Field(ge=-2**63, le=2**64)]] = None


class LoadGenRun(_Strict):
    """What one LoadGen performance run's summary gives (utils.measure.serving.summarize): a record's final run and
    each step of a --find_peak search."""

    target_qps: Optional[NonNegative] = None
    loadgen_valid: Optional[bool] = None
    loadgen_invalid_reasons: Optional[Reasons] = Field(default=None, max_length=64)
    samples_per_s: Optional[NonNegative] = None
    scheduled_samples_per_s: Optional[NonNegative] = None
    latency_ms: Optional[LatencyMs] = Field(default=None, max_length=32)
    early_stopping: Optional[Text] = None
    loadgen_verdict: Optional[Literal["valid", "over the latency bound", "too few queries", "invalid"]] = None
    queries_needed: Optional[Count] = None
    overlatency_queries: Optional[Count] = None
    queries: Optional[Count] = None
    # the SUT's own account of the run (Harness.batch_fields)
    batches: Optional[Count] = None
    mean_batch: Optional[NonNegative] = None
    padded_samples: Optional[Count] = None
    batch_service_ms: Optional[LatencyMs] = Field(default=None, max_length=32)
    batch_respond_ms: Optional[LatencyMs] = Field(default=None, max_length=32)
    sut_busy: Optional[Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]] = None


class ClassLoss(_Strict):  # a class among those that lose most against PyTorch fp32 (net images lost)
    class_: Count = Field(alias="class")
    lost: Count
    name: Optional[Text] = None


class Paired(_Strict):
    """The top-1 against PyTorch fp32's on the same images, paired (utils.core.confidence.paired_change)."""

    paired_images: Optional[Count] = None
    paired_lost: Optional[Count] = None
    paired_gained: Optional[Count] = None
    paired_change_points: Optional[Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]] = None
    paired_low_points: Optional[Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]] = None
    paired_high_points: Optional[Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]] = None
    mcnemar_p: Optional[Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]] = None
    classes_losing: Optional[List[ClassLoss]] = Field(default=None, max_length=64)
    paired_verdict: Optional[Text] = None


class PeakStep(LoadGenRun):
    """One LoadGen Server run of a --find_peak bisection (or the one run at --target_qps)."""

    logs: Optional[Text] = None


class OtherFacts(_Strict):
    options: Optional[Text] = None


class Record(LoadGenRun, Paired):
    """One measurement (kind "validate") or comparison (kind "compare"); the fields anything reads."""

    record_version: Annotated[int, Field(ge=min(READABLE_VERSIONS), le=max(READABLE_VERSIONS))]
    kind: Text
    time: Optional[Text] = None
    command: Optional[LongText] = None
    error: Optional[LongText] = None
    env: Env = Field(default_factory=Env)
    # what was measured
    network: Optional[Text] = None
    backend: Optional[Text] = None
    precision: Optional[Text] = None
    options: Optional[Text] = None
    device: Optional[Text] = None
    batch_size: Optional[BatchSize] = None
    mode: Optional[Text] = None
    role: Optional[Text] = None
    cuda_graph: Optional[bool] = None
    tf32: Optional[bool] = None
    cuda_graph_error: Optional[Text] = None
    provider: Optional[Text] = None
    compile_mode: Optional[Text] = None
    engine_shapes: Optional[Text] = None
    calib_method: Optional[Text] = None
    calib_images: Optional[Count] = None
    calib_images_used: Optional[Count] = None
    # on what
    dataset: Optional[Text] = None
    dataset_key: Optional[Text] = None
    dataset_images: Optional[Count] = None
    images: Optional[Count] = None
    labelled_images: Optional[Count] = None
    weights: Optional[Text] = None
    weights_id: Optional[Text] = None
    # figures
    top1: Optional[Percent] = None
    top5: Optional[Percent] = None
    images_per_s: Optional[NonNegative] = None
    speed_ci: Optional[SpeedCI] = None
    time_split: Optional[TimeSplit] = None
    cold_start: Optional[ColdStart] = None  # the setup's first job only (later ones reuse the runner)
    first_batch_ms: Optional[NonNegative] = None
    bound: Optional[Literal["enqueue-bound", "H2D-bound", "D2H-bound", "compute-bound"]] = None  # trtexec's rules
    gflops_per_image: Optional[NonNegative] = None      # utils.models.flops (2 FLOPs per multiply-add)
    activations_per_image: Optional[Count] = None
    flops_counter: Optional[Text] = None
    achieved_tflops: Optional[NonNegative] = None       # gflops_per_image x images/s
    peak_tflops: Optional[NonNegative] = None           # the GPU's dense peak at the precision that ran (datasheet)
    peak_source: Optional[Text] = None
    percent_of_peak: Optional[NonNegative] = None
    compute_roof_images_per_s: Optional[NonNegative] = None  # the roofline's two roofs (utils.measure.peaks)
    memory_roof_images_per_s: Optional[NonNegative] = None
    repeats: Optional[List[RunFigures]] = Field(default=None, max_length=100)
    size_mib: Optional[NonNegative] = None
    size_note: Optional[Text] = None
    tool: Optional[Text] = None               # what converted the ONNX file (utils.models.precision)
    ort_cpu_note: Optional[Text] = None       # what an fp16/fp8 file means on ONNX Runtime's CPU provider
    # torchao (utils/backends/ao.py): what its quantize_ replaced, and what stayed float
    quantized_layers: Optional[Count] = None
    linear_layers: Optional[Count] = None
    conv_layers: Optional[Count] = None
    quantized_weight_share: Optional[Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]] = None
    kept_for_rows: Optional[Count] = None     # int8 dynamic: Linear layers fed under 17 rows per image, kept float
    float_layers: Optional[Text] = None
    peak_precision: Optional[Text] = None    # the precision whose peak % of peak reads (torchao: see ao.py)
    int8_mode: Optional[Text] = None
    size_mb: Optional[NonNegative] = None
    layers: Optional[Count] = None
    params: Optional[Count] = None
    prepare_s: Optional[NonNegative] = None
    timed_images: Optional[Count] = None
    latency_all_mean: Optional[NonNegative] = None
    latency_all_min: Optional[NonNegative] = None
    latency_all_max: Optional[NonNegative] = None
    latency_all_std: Optional[NonNegative] = None
    latency_all_p50: Optional[NonNegative] = None
    latency_all_p90: Optional[NonNegative] = None
    latency_all_p99: Optional[NonNegative] = None
    latency_all_cv_percent: Optional[NonNegative] = None
    latency_model_mean: Optional[NonNegative] = None
    latency_model_min: Optional[NonNegative] = None
    latency_model_max: Optional[NonNegative] = None
    latency_model_std: Optional[NonNegative] = None
    latency_model_p50: Optional[NonNegative] = None
    latency_model_p90: Optional[NonNegative] = None
    latency_model_p99: Optional[NonNegative] = None
    latency_model_cv_percent: Optional[NonNegative] = None
    latency_all_batches: Optional[Count] = None
    latency_model_batches: Optional[Count] = None
    latency_unstable: Optional[bool] = None
    host_load_1m: Optional[NonNegative] = None  # the 1-minute load average, the higher of before and after timing
    host_cores: Optional[Count] = None
    host_others_cores: Optional[NonNegative] = None  # cores other processes kept busy while it was timed (hostload.py)
    nonfinite_outputs: Optional[Count] = None
    # NVML's energy counter over the timed window (utils/measure/energy.py); energy_note says why there is none
    energy_scope: Optional[Text] = None
    energy_window_s: Optional[NonNegative] = None
    energy_note: Optional[Text] = None
    energy_j: Optional[NonNegative] = None
    joules_per_image: Optional[NonNegative] = None
    power_mean_w: Optional[NonNegative] = None
    images_per_s_per_watt: Optional[NonNegative] = None
    unrankable_outputs: Optional[Count] = None
    # a study's job
    timing: Optional[Text] = None              # "bounded" (timed within --duration) or a whole pass
    accuracy_from: Optional[Dict[Text, Any]] = None  # a timing job: the accuracy pass whose top-1 it carries
    job_key: Optional[Text] = None
    setup_key: Optional[Text] = None
    predictions_file: Optional[Text] = None
    agree_top1_percent: Optional[Percent] = None
    agree_top1_images: Optional[Count] = None
    agree_top1_ref_key: Optional[Text] = None
    labels_file: Optional[Text] = None
    baseline_paired: Optional[Paired] = None  # in memory only: against --baseline's record (study.run)
    study_job: Optional[Dict[Text, Any]] = None
    inspect: Optional[Inspect] = None
    profile: Optional[Profile] = None
    preparation: Optional[Preparation] = None
    # a serving scenario under MLPerf LoadGen (role "scenario"; utils.measure.serving)
    scenario: Optional[Text] = None
    serve_settings: Optional[ServeSettings] = None
    loadgen_version: Optional[Text] = None  # the final run's summary: LoadGenRun's fields
    peak_qps: Optional[NonNegative] = None
    peak_search: Optional[Text] = None
    peak_stopped: Optional[Text] = None
    peak_steps: Optional[List[PeakStep]] = Field(default=None, max_length=64)
    accuracy_qps: Optional[NonNegative] = None  # Server: the rate the AccuracyOnly run issued its samples at
    accuracy_samples: Optional[Count] = None
    accuracy_answered_once: Optional[Count] = None
    accuracy_error: Optional[Text] = None
    loadgen_logs: Optional[Text] = None
    accuracy_logs: Optional[Text] = None
    padded_batch_sizes: Optional[List[BatchSize]] = Field(default=None, max_length=64)
    warmup_samples_per_s: Optional[NonNegative] = None
    duration_note: Optional[Text] = None
    # a comparison
    reference: Optional[Text] = None
    inputs_source: Optional[Text] = None
    inputs: Optional[Count] = None
    rtol: Optional[NonNegative] = None
    atol: Optional[NonNegative] = None
    isclose_percent: Optional[Percent] = None
    rank_mae: Optional[List[Optional[Finite]]] = Field(default=None, max_length=1000)
    rank_logit_mae: Optional[List[Optional[Finite]]] = Field(default=None, max_length=1000)
    rank_class_diff_percent: Optional[List[Percent]] = Field(default=None, max_length=1000)
    top1_agreement_percent: Optional[Percent] = None
    top5_overlap_percent: Optional[Percent] = None
    max_abs_error: Optional[NonNegative] = None
    rel_l2_error: Optional[NonNegative] = None
    flips: Optional[Count] = None
    labelled: Optional[Count] = None
    ref_top1: Optional[Percent] = None
    other_top1: Optional[Percent] = None
    right_to_wrong: Optional[Count] = None
    wrong_to_right: Optional[Count] = None
    ref_nonfinite: Optional[Count] = None
    other_nonfinite: Optional[Count] = None
    example_top10: Optional[List[Example]] = Field(default=None, max_length=1000)
    other_facts: Optional[OtherFacts] = None

    @property
    def path(self) -> Optional[str]:
        """The file the record was read from or written to (in memory only)."""
        got = (self.model_extra or {}).get("_path")
        return str(got) if got else None

    @property
    def elsewhere(self) -> bool:
        """Written to the system's temporary folder because the output folder refused it (in memory only)."""
        return bool((self.model_extra or {}).get("_elsewhere"))

    def with_fields(self, **update: Any) -> "Record":
        """A copy with fields changed or added (agreement, pairing: kept in memory, never written again), checked
        against the schema as a read record is."""
        return type(self).model_validate({**self.as_dict(), **update})

    def as_dict(self) -> Dict[str, Any]:
        """The record as its JSON object (what was read or written, with in-memory fields)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class RecordError(ValueError):
    """A record that does not fit the schema: `field` names where, `reason` what."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# what each kind of record must name for the tables to place it (a row needs its network, runner and batch)
REQUIRED = {"validate": ("network", "backend", "precision", "batch_size"),
            "compare": ("network", "backend", "precision", "reference")}


def check_record(obj: Any) -> Record:
    """obj as a Record if it fits the schema (unknown fields kept as they are); RecordError otherwise."""
    if not isinstance(obj, dict):
        raise RecordError("(record)", f"a JSON {type(obj).__name__}, not an object")
    version = obj.get("record_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_VERSIONS):
        raise RecordError("record_version", f"{version}: written by a newer ArtTRT")
    try:
        rec = Record.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(record)"
        raise RecordError(where, str(first.get("msg", "does not fit")).lower()) from None
    for name in REQUIRED.get(str(obj.get("kind")), ()):
        if obj.get(name) is None or obj.get(name) == "":
            raise RecordError(name, f"missing: a {obj['kind']} record names its {name}")
    if obj.get("kind") == "validate" and obj["batch_size"] < 1:
        raise RecordError("batch_size", "must be at least 1")
    return rec


def typed(rec: Any) -> Record:
    """rec as a Record: itself if it is one; a dict (a record just made, a test's) checked against the schema."""
    return rec if isinstance(rec, Record) else check_record(rec)


def typed_all(recs: Any) -> List[Record]:
    return [typed(r) for r in recs]
