"""The record's building blocks (utils/report/schema.py assembles the record from them): bounded number and text
types, the environment and its identity, and the nested blocks of --inspect, --profile, a comparison's example and
the preparation of a runner's files (the mixed-precision search)."""
from __future__ import annotations

from typing import Annotated, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e300)]
Percent = Annotated[float, Field(allow_inf_nan=False, ge=0, le=100)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Points = Annotated[float, Field(allow_inf_nan=False, ge=-100, le=100)]  # a difference of two percentages
BatchSize = Annotated[int, Field(ge=0, le=2**31)]
Text = Annotated[str, Field(max_length=4096)]
LongText = Annotated[str, Field(max_length=65536)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    def has(self, name: str) -> bool:
        """Whether the block names the field at all (None included): records older than a field lack it."""
        return name in self.model_fields_set or name in (self.model_extra or {})


class Env(_Strict):
    gpu: Optional[Text] = None
    cpu: Optional[Text] = None
    torch: Optional[Text] = None
    onnxruntime: Optional[Text] = None
    tensorrt: Optional[Text] = None
    tensorrt_rtx: Optional[Text] = None
    compute_capability: Optional[Text] = None
    driver: Optional[Text] = None
    cuda: Optional[Text] = None
    torchvision: Optional[Text] = None
    onnx: Optional[Text] = None
    modelopt: Optional[Text] = None
    loadgen: Optional[Text] = None
    torchao: Optional[Text] = None
    integrated_gpu: Optional[bool] = None  # a Jetson: the GPU shares the host's memory (records.gpu_facts)


# What makes two environments measure differently (utils.report.select.env_identity): the kind of machine (CPU and
# GPU model, compute capability; not the host name, so like nodes of a cluster share their records) and the
# software (driver, CUDA, every library that computes or times a row). A record is "done before" only in the same.
ENV_IDENTITY = ("cpu", "gpu", "compute_capability", "driver", "cuda", "torch", "torchvision", "onnx", "onnxruntime",
                "tensorrt", "tensorrt_rtx", "modelopt", "loadgen", "torchao")
# What every row's figures depend on, whatever its backend (the reference row's too: rows are divided by a reference
# measured in the same ENV_MACHINE); a backend adds the libraries it runs (utils.backends.registry.Backend.libraries)
ENV_MACHINE = ENV_IDENTITY[:7]


class LayerCounts(_Strict):
    layers: Optional[Count] = None
    precisions: Optional[Dict[Text, Count]] = None
    qdq_layers: Optional[Count] = None
    table: Optional[Text] = None


class DriftLayer(_Strict):
    name: Text
    op: Text
    weight: Optional[Text] = None
    relative_error: Finite
    added_error: Finite


class Drift(_Strict):
    images: Count
    output_relative_error: Optional[Finite] = None
    top_added: List[DriftLayer] = Field(default_factory=list, max_length=1000)


class Inspect(_Strict):
    onnx: Optional[LayerCounts] = None
    engine: Optional[LayerCounts] = None
    drift: Optional[Drift] = None
    note: Optional[Text] = None


class ProfileOp(_Strict):
    op: Text
    calls_per_batch: NonNegative
    self_cpu_ms_per_batch: Finite
    self_gpu_ms_per_batch: Optional[Finite] = None


class Profile(_Strict):
    note: Optional[LongText] = None
    trace: Optional[Text] = None
    batch_size: Optional[BatchSize] = None
    wall_ms_per_batch: Optional[NonNegative] = None
    host_ops_ms_per_batch: Optional[NonNegative] = None
    gpu_kernels_ms_per_batch: Optional[NonNegative] = None
    host_wait_ms_per_batch: Optional[NonNegative] = None
    top_ops: List[ProfileOp] = Field(default_factory=list, max_length=1000)


class Example(_Strict):
    rank: Count
    ref_score: Finite
    ref_class: Count
    other_score: Finite
    other_class: Count
    ref_label: Optional[Text] = None
    other_label: Optional[Text] = None


class MixedPrecisionEngine(_Strict):
    """A step's TensorRT engine, where TensorRT's builder is installed: built or not, and the precisions its layers
    run in, read back by the engine inspector (None where this runtime could not load it: `why` says)."""

    built: bool
    build_s: Optional[NonNegative] = None
    layer_precisions: Optional[Dict[Annotated[str, Field(max_length=64)], Count]] = Field(default=None, max_length=64)
    why: Optional[Text] = None


class MixedPrecisionStep(_Strict):
    """One step of a --mixed_precision search: k layers kept out of quantization, and what that measured."""

    k: Count
    kept: List[Text] = Field(default_factory=list, max_length=100000)
    added: List[Text] = Field(default_factory=list, max_length=100000)
    top1: Percent
    drop: Points
    size_mib: Optional[NonNegative] = None
    file: Optional[Text] = None
    within: bool
    outcome: Optional[Text] = None  # ok / OVER / inconclusive, as the --max_top1_drop gate judges (searches since v2)
    drop_interval: Optional[Annotated[List[Points], Field(min_length=2, max_length=2)]] = None  # paired 95 %, points
    engine: Optional[MixedPrecisionEngine] = None


class MixedPrecision(_Strict):
    """A --mixed_precision search (utils.models.mixed_precision): its budget, the images that judged it, its steps
    in the order measured, and what it chose."""

    budget: NonNegative
    budget_rule: Optional[Text] = None  # "1" (points) or "1%" (of fp32's top-1)
    precision: Optional[Text] = None
    fp32_top1: Percent
    heldout_images: Count
    heldout_dataset: Optional[Text] = None
    heldout_rule: Optional[Text] = None
    heldout_files: List[Text] = Field(default_factory=list, max_length=100000)
    calib_images: Count
    ranked_layers: Count
    steps: List[MixedPrecisionStep] = Field(max_length=1000)
    final_k: Count
    kept: List[Text] = Field(default_factory=list, max_length=100000)
    met: bool
    final_onnx: Optional[Text] = None
    search_file: Optional[Text] = None
    search_s: Optional[NonNegative] = None
    cached: Optional[bool] = None
    engine_measured: Optional[Text] = None  # what of each step's TensorRT engine was measured, speed included


class TimeSplit(_Strict):
    """Where a timed batch's time goes, mean ms per batch (utils.measure.measurement.time_split)."""

    h2d_ms: Optional[NonNegative] = None
    normalize_ms: Optional[NonNegative] = None
    compute_ms: Optional[NonNegative] = None
    d2h_ms: Optional[NonNegative] = None
    enqueue_ms: Optional[NonNegative] = None


class ColdStart(_Strict):
    """What a user waits for before a runner's first answer, seconds (utils.study.validate.cold_start)."""

    export_s: Optional[NonNegative] = None
    convert_build_s: Optional[NonNegative] = None
    load_s: Optional[NonNegative] = None
    runner_prepare_s: Optional[NonNegative] = None
    first_batch_s: Optional[NonNegative] = None
    total_s: Optional[NonNegative] = None
    caches: Dict[Annotated[str, Field(max_length=16)], Literal["hit", "missed"]] = Field(default_factory=dict,
                                                                                        max_length=8)


class RunFigures(_Strict):
    """One of a --repeats row's whole timed runs (utils.measure.measurement.across_runs)."""

    images_per_s: Optional[NonNegative] = None
    latency_model_p50: Optional[NonNegative] = None
    latency_model_p99: Optional[NonNegative] = None
    latency_all_mean: Optional[NonNegative] = None


class Preparation(_Strict):
    """How the runner's files were made (the facts of the build steps); the fields anything reads."""

    mixed_precision: Optional[MixedPrecision] = None


Pair = Annotated[List[NonNegative], Field(min_length=2, max_length=2)]


class SpeedCI(_Strict):
    """95 % intervals of a timing row's figures: from its own timed batches (utils.measure.measurement.speed_interval)
    or, with --repeats, across its whole timed runs (measurement.across_runs: `runs` set)."""

    method: Optional[Text] = None
    runs: Optional[Count] = None
    spread_percent: Optional[NonNegative] = None  # --repeats: how far the fastest run's images/s is above the slowest's
    batches: Optional[Count] = None
    block: Optional[Count] = None
    resamples: Optional[Count] = None
    latency_all_mean: Optional[Pair] = None
    latency_model_p50: Optional[Pair] = None
    latency_model_p99: Optional[Pair] = None
    images_per_s: Optional[Pair] = None
