"""What main.py -v does, as functions: prepare a runner for a spec, validate and time it, record it.

Usage:
    net = load_network("efficientnet_lite0", pretrained=True)
    data = DataOptions(dataset="datasets/demo")
    ds = data.open(net.preprocess, net.num_classes)
    rec, result = validate_one(RunSpec("onnxrt", "fp32"), net, ds, MeasureOptions(batch_size=8), data=data,
                               recorder=Recorder(Path("outputs")))
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import numpy as np

from utils.backends import registry
from utils.backends.base import RunSpec, device_scope
from utils.backends.registry import make_runner, options_label
from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import slug
from utils.data.cache import CachedDataset
from utils.data.options import DataOptions
from utils.measure.hostload import OtherLoad
from utils.measure.measurement import MeasureOptions, MeasureResult, across_runs, pad_batch
from utils.measure.peaks import compute_fields
from utils.measure.profile import profile_runner
from utils.measure.scenarios import buckets
from utils.measure.serving import serve
from utils.measure.sut import DeviceSamples, runner_infer
from utils.measure.timing import measure
from utils.models.flops import counted_cost, image_cost
from utils.models.networks import Network
from utils.report.records import Recorder, gpu_facts, make_record
from utils.report.schema import Record
from utils.report.sections.compare_tables import NONFINITE_ADVICE
from utils.study.identity import record_identity
from utils.study.look_inside import inspect_runner
from utils.study.plan import JOB_KINDS

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)


def count_cost(net: Network) -> None:
    """Counts net's FLOPs and activations per image (utils.models.flops) before any runner touches the model; a
    network the counter cannot run gets a warning (once) and no such figures, never a failed study."""
    if getattr(net, "_cost_tried", False):
        return
    object.__setattr__(net, "_cost_tried", True)
    try:
        image_cost(net)
    except Exception as err:  # a model or operator the counter cannot follow: the figures are left out
        log.warning("%s: FLOPs per image not counted (%s: %s)", net.name, type(err).__name__, first_line(err))


def warn_if_random_weights(net: Network, dataset: CachedDataset) -> bool:
    """One warning when a labelled dataset is validated with random weights (top-1 then measures nothing)."""
    if not net.weights.startswith("random") or dataset.num_classes is None:
        return False
    log.warning("%s has random weights (no --weights or --pretrained): its top-1/top-5 on %s measure nothing; "
                "the timing figures stand. Tables mark these rows \"random weights\".", net.name,
                dataset.meta.get("root"))
    return True


def validate_one(spec: RunSpec, net: Network, dataset: CachedDataset, opts: MeasureOptions, *,
                 data: DataOptions = DataOptions(), recorder: Recorder = Recorder(),
                 telemetry: Any = None, inspect: bool = False, profile: bool = False,
                 extra: Optional[Dict[str, Any]] = None,
                 on_result: Optional[Callable[[MeasureResult], Dict[str, Any]]] = None
                 ) -> Tuple[Record, MeasureResult]:
    """Prepares, validates and times one spec at one batch size; writes and returns its record.

    Args:
        data: the data options, for the calibration images of int8/fp8 (the validation dataset by default).
        recorder: where the record goes (Recorder() writes nothing).
        telemetry: a utils.measure.telemetry.Telemetry whose phase is tagged as the run goes.
        inspect: also write what the model file and engine hold (and a quantized file's per-layer drift)
            under recorder.folder / "inspect", summarised in the record.
        profile: also run a few batches under the PyTorch profiler, after the timed ones; Chrome trace under
            recorder.folder / "profiles", top operators in the record.
        extra: fields written into the record over the measured ones (a study's job key, role, accuracy).
        on_result: called with the measurement before the record is written; its fields go into the record.
    """
    with device_scope(spec.device):  # the spec's GPU, on a stream of its own, for everything below
        return _validate(spec, net, dataset, opts, data, recorder, telemetry, inspect, profile, extra, on_result)


def _first_batch(runner: Any, dataset: CachedDataset, bs: int) -> Any:
    """The dataset's first batch, on the runner's device and normalised, padded to bs if the dataset is smaller."""

    images, _, _ = next(iter(dataset.batches(bs, limit=min(bs, len(dataset)), pin=False, copy=True)))
    x = runner.normalizer(images.to(runner.device))
    return pad_batch(x, bs) if x.shape[0] < bs else x


def _beside(extra: Dict[str, Any], key: str, write: Callable[[], Any]) -> None:
    """extra[key] = write(), or, where the disk refuses (full, read-only), extra[key + "_error"] = why, logged."""

    try:
        extra[key] = write()
    except (OSError, ArtTRTError) as err:
        extra[f"{key}_error"] = first_line(err)
        log.warning("%s was not written (%s): the record is kept without it", key, first_line(err))


def warn_if_not_numbers(rec: Record, name: str) -> None:
    """One line when outputs were not numbers (NaN/Inf) or did not rank (all equal): those images count as wrong,
    the tables mark the row and the --max_top1_drop gate fails it."""

    bad, flat = rec.nonfinite_outputs or 0, rec.unrankable_outputs or 0
    if rec.accuracy_from:  # a timing job carries its accuracy pass's counts: said once, there
        return
    if bad or flat:
        what = " and ".join(w for w in (f"{bad} gave NaN or Inf outputs" if bad else "",
                                        f"{flat} gave outputs that are all equal" if flat else "") if w)
        precision = rec.precision
        calibrated = registry.calibrates(str(rec.backend), str(precision))
        zero_head = "a torchvision ViT or Swin with random weights has an all-zero head"
        lost = (f"{precision} quantization lost the outputs: check the calibration images (--calib_dataset, "
                "--calib_size), try another --calib_method, or keep the worst layers in float (--mixed_precision)"
                if calibrated else f"{precision} quantization lost the outputs: keep the worst layers in float"
                if precision in ("int8", "fp8") else None)
        if flat and not bad:  # all equal is no overflow: fp32's weights or model, or this precision's rounding
            advice = (f"every class scored alike: the weights or the model itself give them in fp32 ({zero_head})"
                      if precision == "fp32" else
                      f"every class scored alike: where the fp32 row is flat too, the weights give it ({zero_head}); "
                      "else " + (lost or f"{precision} rounded the scores' differences away: try bf16 or fp32"))
        else:
            advice = (NONFINITE_ADVICE if precision in ("fp16", "bf16") else lost or
                      "outputs that are not numbers in fp32: the weights or the model itself give them (check "
                      "--weights; a lower precision cannot be the cause)")
        log.warning("%s %s bs%d: of %s images, %s (counted wrong; tables mark the row): %s", rec.network,
                    name, rec.batch_size or 0, rec.images, what, advice)


def _load_average() -> float:
    """The host's 1-minute load average (-1 where the system has none): a loaded host makes timing unstable."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return -1.0


class OpenRunner:
    """A spec's runner, made (built, cached) and activated once, then measured at one or more batch sizes (a study
    keeps it for every job of a setup: one export/compile/session per setup, not per batch size)."""

    def __init__(self, spec: RunSpec, net: Network, data: DataOptions, batch_size: int, telemetry: Any = None):
        self.spec = spec
        cuda = spec.device.startswith("cuda") and torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else None
        self.index = self.device.index if self.device is not None else None
        if self.device is not None:
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        if telemetry is not None:
            telemetry.phase = "build"
        self.runner, self.facts = make_runner(spec, net, data, batch_size)
        if telemetry is not None:
            telemetry.phase = "load"
        self.clock_start = gpu_facts(self.index).get("sm_clock_mhz")
        self.runner.__enter__()
        try:
            self.runner.check_batch(batch_size)  # a static engine of another batch: one sentence, nothing fed
        except BaseException:
            self.runner.__exit__(None, None, None)
            raise
        self.load_s = time.perf_counter() - t0
        self.jobs = 0  # jobs measured so far: the later ones did not pay for the build and the load

    def serves(self, batch_size: int) -> bool:
        """True where this runner can be fed batches of batch_size (a static engine: its own size only)."""
        return self.runner.serves(batch_size)

    def close(self) -> None:
        self.runner.__exit__(None, None, None)


def _validate(spec: RunSpec, net: Network, dataset: CachedDataset, opts: MeasureOptions, data: DataOptions,
              recorder: Recorder, telemetry: Any, inspect: bool = False, profile: bool = False,
              extra_fields: Optional[Dict[str, Any]] = None,
              on_result: Optional[Callable[[MeasureResult], Dict[str, Any]]] = None
              ) -> Tuple[Record, MeasureResult]:
    opened = OpenRunner(spec, net, data, opts.batch_size, telemetry)
    try:
        return measure_with(opened, spec, net, dataset, opts, recorder, telemetry, inspect, profile, extra_fields,
                            on_result)
    finally:
        opened.close()


def cold_start(facts: Dict[str, Any], load_s: float, runner_prepare_s: float, first_batch_ms: Optional[float]
               ) -> Dict[str, Any]:
    """What a user waits for before a runner's first answer, seconds: the ONNX export, the precision conversion and
    the engine build (each 0 where its cache was hit: `caches` says which), the load (session, engine deserialization,
    model to the device), the runner's own preparation (torch.compile, CUDA graph capture) and the first batch."""
    made = float(facts.get("prepare_s") or 0.0)  # export + conversion + engine build, in make_runner
    export = float(facts.get("export_s") or 0.0)
    caches = {name: "hit" if facts[key] else "missed" for name, key in
              (("export", "export_cached"), ("conversion", "convert_cached"), ("engine", "engine_cached"))
              if isinstance(facts.get(key), bool)}
    parts = {"export_s": round(export, 3), "convert_build_s": round(max(made - export, 0.0), 3),
             "load_s": round(max(load_s - made, 0.0), 3), "runner_prepare_s": round(runner_prepare_s, 3),
             "first_batch_s": None if first_batch_ms is None else round(first_batch_ms / 1e3, 4)}
    parts["total_s"] = round(sum(v for v in parts.values() if v is not None), 3)
    return {**parts, "caches": caches}


def peak_gpu_mb(max_allocated: Callable[[Any], int], device: Any, runner: Any) -> Optional[float]:
    """The GPU memory a runner's preparation peaked at, MiB: PyTorch's allocator's peak plus what the runner's library
    holds outside it (TensorRT's engine weights); None off the GPU."""
    if device is None:
        return None
    return round((max_allocated(device) + runner.device_bytes_outside_torch()) / 2**20, 1)


def measure_with(opened: OpenRunner, spec: RunSpec, net: Network, dataset: CachedDataset, opts: MeasureOptions,
                 recorder: Recorder = Recorder(), telemetry: Any = None, inspect: bool = False, profile: bool = False,
                 extra_fields: Optional[Dict[str, Any]] = None,
                 on_result: Optional[Callable[[MeasureResult], Dict[str, Any]]] = None
                 ) -> Tuple[Record, MeasureResult]:
    """Prepares the open runner for opts.batch_size, validates and times it, writes and returns the record."""

    runner, device, index = opened.runner, opened.device, opened.index
    first = opened.jobs == 0
    facts = opened.facts if first else {**opened.facts, "prepare_s": 0.0}  # built once, counted once
    clock_start = opened.clock_start if first else gpu_facts(index).get("sm_clock_mhz")
    if device is not None and not first:
        torch.cuda.reset_peak_memory_stats(device)
    opened.jobs += 1
    load_s = opened.load_s if first else 0.0
    crop = int(dataset.images.shape[-1])  # the images fed: the network's crop, or the given dataset's size
    t1 = time.perf_counter()
    runner.prepare((opts.batch_size, 3, crop, crop))
    runner_prepare_s = time.perf_counter() - t1
    peak = peak_gpu_mb(torch.cuda.max_memory_allocated, device, runner)
    load_before = _load_average()
    with OtherLoad() as others:
        result = measure(runner, dataset, opts, num_outputs=dataset.num_classes, telemetry=telemetry)
        # --repeats: the same timing run again on the same runner, each with its own warm-up; accuracy, predictions
        # and energy are the first run's, the speed figures the mean over the runs with their interval across runs
        summaries = [result.summary()]
        for _ in range(1, opts.repeats):
            summaries.append(measure(runner, dataset, opts, num_outputs=dataset.num_classes,
                                     telemetry=telemetry).summary())
    load = max(load_before, _load_average())
    info = runner.info()
    extra: Dict[str, Any] = {}
    folder = recorder.folder or Path("outputs")
    stem = "-".join(p for p in (net.name, spec.backend, spec.precision, options_label(spec).replace(" ", "_"),
                                "cudagraph" if spec.cuda_graph else "", "sync" if opts.sync else "",
                                f"bs{opts.batch_size}") if p)  # one trace per record, never overwritten
    # What follows writes files beside the record (a trace, layer tables, predictions): a full disk there must
    # not take the measurement with it. Each is tried; where one fails, the record says why and is written all
    # the same (Recorder.write falls back to the system's temporary folder when the output folder takes nothing).
    if profile:
        _beside(extra, "profile", lambda: profile_runner(runner, _first_batch(runner, dataset, opts.batch_size),
                                                         folder / "profiles" / f"{slug(stem, 160)}.trace.json"))
    if inspect:
        _beside(extra, "inspect", lambda: inspect_runner(runner, spec.precision, facts, info, folder / "inspect",
                                                         (opts.batch_size, 3, crop, crop)))
    preparation = {k: v for k, v in facts.items() if k != "prepare_s"}
    preparation["runner_prepare_s"] = round(runner_prepare_s, 3)
    fields: Dict[str, Any] = record_identity(net, spec, dataset, runner.device, opts.batch_size)
    fields.update(summaries[0])
    fields.update(across_runs(summaries))
    fields.update(info)
    cost = counted_cost(net)  # FLOPs per image, what share of the GPU's peak they were done at, and the roofs (the
    fields.update(cost)       # memory roof reads the runner's size, in info)
    fields.update(compute_fields(cost.get("gflops_per_image"), fields.get("images_per_s"),
                                 torch.cuda.get_device_name(device) if device is not None else None,
                                 str(info.get("peak_precision") or spec.precision),
                                 bool(spec.tf32), fields.get("size_mib"), cost.get("activations_per_image"),
                                 opts.batch_size))
    fields.update({"cuda_graph": runner.cuda_graph or None,  # what ran, not what was asked
                   "cuda_graph_error": runner.graphs.error if runner.graphs is not None else None,
                   "prepare_s": round(float(facts.get("prepare_s") or 0.0) + runner_prepare_s, 3),
                   "load_s": round(load_s, 3), "preparation": preparation, "runner_reused": not first,
                   "prepare_peak_gpu_mb": peak,
                   "host_load_1m": round(load, 2) if load >= 0 else None, "host_cores": os.cpu_count(),
                   "host_others_cores": others.cores,
                   "sm_clock_start_mhz": clock_start, "sm_clock_end_mhz": gpu_facts(index).get("sm_clock_mhz"),
                   **extra})
    if first:
        fields["cold_start"] = cold_start(facts, load_s, runner_prepare_s, fields.get("first_batch_ms"))
    if on_result is not None:
        saved: Dict[str, Any] = {}
        _beside(saved, "predictions", lambda: on_result(result))  # the fields it adds, or predictions_error
        fields.update(saved.pop("predictions", None) or {})
        fields.update(saved)
    fields.update(extra_fields or {})
    rec = recorder.write(make_record("validate", recorder.command, device_index=index, **fields))
    warn_if_not_numbers(rec, runner.name)
    warn_if_unstable(rec, runner.name)
    return rec, result


def warn_if_unstable(rec: Record, name: str) -> None:
    """One line when the timed run's latency varied: which network, runner, batch and pass. An accuracy pass's
    latency is not what the tables show (its timing job of the same batch size says its own), so it says nothing."""
    kind = JOB_KINDS.get(str(rec.role))
    if rec.latency_unstable and not (kind is not None and kind.gives_accuracy):
        log.warning("%s %s bs%d, %s: latency varies by more than 2.5%% (CV model %.1f%%, all %.1f%%): "
                    "treat the mean with care", rec.network, name, rec.batch_size or 0,
                    "timed run" if rec.timing == "bounded" else "whole pass",
                    rec.latency_model_cv_percent or 0, rec.latency_all_cv_percent or 0)


def serve_with(opened: OpenRunner, spec: RunSpec, net: Network, dataset: CachedDataset, scenario: Any,
               limit: Optional[int], recorder: Recorder = Recorder(),
               extra_fields: Optional[Dict[str, Any]] = None) -> Record:
    """One serving scenario of the open runner under MLPerf LoadGen (utils.measure.serving): writes and returns its
    record; LoadGen's logs stay beside it under loadgen/<job key>-<run>/ (a new folder per run: nothing is
    overwritten, and an interrupted run keeps what LoadGen wrote)."""


    runner = opened.runner
    opened.jobs += 1
    crop = int(dataset.images.shape[-1])
    count = len(dataset) if limit is None else min(limit, len(dataset))
    sizes = buckets(scenario.max_batch, runner.serves)
    t0 = time.perf_counter()
    for i, b in enumerate(sizes):  # compilation and capture of every padded shape, before LoadGen's clock
        log.info("%s %s: preparing padded batch %d (%d of %d)", net.name, runner.name, b, i + 1, len(sizes))
        runner.prepare((b, 3, crop, crop))
    prepare_s = time.perf_counter() - t0
    load_before = _load_average()
    key = str((extra_fields or {}).get("job_key") or "run")
    base = (recorder.folder or Path("outputs")) / "loadgen"
    folder = base / f"{slug(key, 40)}-{secrets.token_hex(3)}"
    samples = DeviceSamples(dataset, count, runner.device)
    stream = torch.cuda.current_stream(runner.device) if runner.device.type == "cuda" else None
    with OtherLoad() as others:
        fields = serve(runner_infer(runner, samples, sizes), samples, np.asarray(dataset.labels), count, scenario,
                       folder, sizes, stream)
    def where(logs: str) -> str:  # relative to the output folder; whole where the disk sent them elsewhere
        path = folder / logs
        return str(path.relative_to(base.parent)) if path.is_relative_to(base.parent) else str(path)

    for name in ("loadgen_logs", "accuracy_logs"):
        fields[name] = where(fields[name])
    for step in fields.get("peak_steps") or []:
        step["logs"] = where(step["logs"])
    fields.update({
        **record_identity(net, spec, dataset, runner.device, scenario.max_batch), "cuda_graph": runner.cuda_graph or None, "runner_prepare_s": round(prepare_s, 3),
        "host_cores": os.cpu_count(), **runner.info()})
    load = max(load_before, _load_average())  # a loaded host marks the row unstable, as a timing row's
    fields["host_load_1m"] = round(load, 2) if load >= 0 else None
    fields["host_others_cores"] = others.cores
    fields.update(extra_fields or {})
    rec = recorder.write(make_record("validate", recorder.command, device_index=opened.index, **fields))
    if rec.accuracy_error:
        log.warning("%s %s: %s", net.name, runner.name, rec.accuracy_error)
    warn_if_not_numbers(rec, f"{runner.name} {scenario.scenario}")
    return rec
