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
import time
from pathlib import Path
from typing import Any, Dict, Tuple

from utils.backends.base import RunSpec, device_scope
from utils.backends.registry import make_runner, options_label
from utils.data.cache import CachedDataset
from utils.data.options import DataOptions
from utils.measure.timing import MeasureOptions, MeasureResult, measure
from utils.models.networks import Network
from utils.models.paths import weights_id
from utils.report.records import Recorder, gpu_facts, make_record

log = logging.getLogger(__name__)


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
                 telemetry: Any = None, inspect: bool = False, profile: bool = False) -> Tuple[Dict[str, Any],
                                                                                              MeasureResult]:
    """Prepares, validates and times one spec at one batch size; writes and returns its record.

    Args:
        data: the data options, for the calibration images of int8/fp8 (the validation dataset by default).
        recorder: where the record goes (Recorder() writes nothing).
        telemetry: a utils.measure.telemetry.Telemetry whose phase is tagged as the run goes.
        inspect: also write what the model file and engine hold (and a quantized file's per-layer drift)
            under recorder.folder / "inspect", summarised in the record.
        profile: also run a few batches under the PyTorch profiler, after the timed ones; Chrome trace under
            recorder.folder / "profiles", top operators in the record.
    """
    with device_scope(spec.device):  # the spec's GPU, on a stream of its own, for everything below
        return _validate(spec, net, dataset, opts, data, recorder, telemetry, inspect, profile)


def _first_batch(runner: Any, dataset: CachedDataset, bs: int) -> Any:
    """The dataset's first batch, on the runner's device and normalised, padded to bs if the dataset is smaller."""
    from utils.measure.timing import pad_batch

    images, _, _ = next(iter(dataset.batches(bs, limit=min(bs, len(dataset)), pin=False, copy=True)))
    x = runner.normalizer(images.to(runner.device))
    return pad_batch(x, bs) if x.shape[0] < bs else x


def _validate(spec: RunSpec, net: Network, dataset: CachedDataset, opts: MeasureOptions, data: DataOptions,
              recorder: Recorder, telemetry: Any, inspect: bool = False,
              profile: bool = False) -> Tuple[Dict[str, Any], MeasureResult]:
    import torch

    cuda = spec.device.startswith("cuda") and torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else None
    if device is not None:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    if telemetry is not None:
        telemetry.phase = "build"
    runner, facts = make_runner(spec, net, data)
    if telemetry is not None:
        telemetry.phase = "load"
    index = device.index if device is not None else None
    clock_start = gpu_facts(index).get("sm_clock_mhz")
    with runner:
        load_s = time.perf_counter() - t0
        crop = net.preprocess.crop
        t1 = time.perf_counter()
        runner.prepare((opts.batch_size, 3, crop, crop))
        runner_prepare_s = time.perf_counter() - t1
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device is not None else None
        result = measure(runner, dataset, opts, num_outputs=dataset.num_classes, telemetry=telemetry)
        info = runner.info()
        extra: Dict[str, Any] = {}
        folder = recorder.folder or Path("outputs")
        stem = "-".join(p for p in (net.name, spec.backend, spec.precision, options_label(spec).replace(" ", "_"),
                                    "cudagraph" if spec.cuda_graph else "", "sync" if opts.sync else "",
                                    f"bs{opts.batch_size}") if p)  # one trace per record, never overwritten
        if profile:
            from utils.measure.profile import profile_runner

            extra["profile"] = profile_runner(runner, _first_batch(runner, dataset, opts.batch_size),
                                              folder / "profiles" / f"{stem}.trace.json")
        if inspect:
            from utils.study.inspect import inspect_runner

            extra["inspect"] = inspect_runner(runner, spec.precision, facts, info, folder / "inspect",
                                              (opts.batch_size, 3, crop, crop))
    preparation = {k: v for k, v in facts.items() if k != "prepare_s"}
    preparation["runner_prepare_s"] = round(runner_prepare_s, 3)
    fields: Dict[str, Any] = {
        "network": net.name, "weights": net.weights, "weights_id": weights_id(net), "backend": spec.backend,
        "precision": spec.precision, "options": options_label(spec), "device": str(runner.device),
        "batch_size": opts.batch_size, "dataset": dataset.meta.get("root", "synthetic"),
        "dataset_key": dataset.meta.get("key") or dataset.meta.get("root"), "dataset_images": len(dataset)}
    fields.update(result.summary())
    fields.update(info)
    fields.update({"cuda_graph": runner.cuda_graph or None,  # what ran, not what was asked
                   "cuda_graph_error": runner.graphs.error if runner.graphs is not None else None,
                   "prepare_s": round(float(facts.get("prepare_s") or 0.0) + runner_prepare_s, 3),
                   "load_s": round(load_s, 3), "preparation": preparation,
                   "prepare_peak_gpu_mb": round(peak, 1) if peak is not None else None,
                   "sm_clock_start_mhz": clock_start, "sm_clock_end_mhz": gpu_facts(index).get("sm_clock_mhz"),
                   **extra})
    rec = recorder.write(make_record("validate", recorder.command, device_index=index, **fields))
    if rec.get("latency_unstable"):
        log.warning("%s bs%d: latency varies by more than 2.5%% (CV model %.1f%%, all %.1f%%): "
                    "treat the mean with care", runner.name, opts.batch_size,
                    rec.get("latency_model_cv_percent") or 0, rec.get("latency_all_cv_percent") or 0)
    return rec, result

