"""--profile: a few batches of a runner under the PyTorch profiler (CPU and, on a GPU, CUDA activity), after
the timed batches so no figure carries the profiler's cost. Writes a Chrome trace (chrome://tracing, Perfetto)
and returns the record's summary: per batch, the host's wall time, the host time inside operators and CUDA
calls, the host's wait for the GPU, the GPU's kernel time (kernel events only: an operator's self GPU time
is its kernels' again), and what takes the most (GPU kernels on a GPU, operators on the CPU).

Where wall time per batch is well above the GPU's kernel time, the host sets the pace (launch overhead of
eager PyTorch at small batches): a CUDA graph, torch.compile's reduce-overhead or TensorRT remove it.

Usage:
    summary = profile_runner(runner, x, Path("outputs/profiles/run.json"), batches=5)
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from utils.backends.base import Runner
from utils.core.errors import native_stderr_quiet
from utils.core.fileio import atomic_path
from utils.core.phases import PREFIX, phase

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


TOP_OPS = 10


def profile_runner(runner: Runner, x: torch.Tensor, trace: Path, batches: int = 5) -> Dict[str, Any]:
    """Profiles `batches` runs of runner.infer on x (already on the runner's device, normalised). A runner that
    runs outside PyTorch on the CPU gets a note instead (nothing there for the profiler to see); on a GPU the
    profiler sees every backend's CUDA kernels (TensorRT's and ONNX Runtime's included)."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler library's own complaints on a GPU-less machine
    ProfilerActivity, profile, record_function = (torch.profiler.ProfilerActivity, torch.profiler.profile,
                                                  torch.profiler.record_function)

    cuda = runner.device.type == "cuda"
    if not (runner.torch_ops or cuda):
        return {"note": f"{runner.name} runs outside PyTorch on the CPU: the PyTorch profiler sees one opaque call "
                        "(ONNX Runtime has its own: SessionOptions.enable_profiling)"}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for _ in range(2):  # whatever the first calls of a shape do (allocations, autotuning) stays out
        runner.infer(x)
    runner.synchronize()
    walls: List[float] = []
    with native_stderr_quiet(), profile(activities=activities) as prof, phase("profile"):
        for _ in range(batches):
            t0 = time.perf_counter()
            with record_function(f"{runner.name} batch {x.shape[0]}"):
                runner.infer(x)
                runner.synchronize()
            walls.append((time.perf_counter() - t0) * 1e3)
    with atomic_path(trace) as tmp:
        prof.export_chrome_trace(str(tmp))
    labels = (f"{runner.name} batch", PREFIX)
    events = [e for e in prof.key_averages() if not e.key.startswith(labels)]
    # Host side: operators and CUDA runtime calls (waits apart). GPU side: the kernels and copies themselves
    # only; an operator's own "self GPU time" is its kernels' again, and summing both would count them twice.
    host = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    waits = [e for e in host if "Synchronize" in e.key]  # the host waiting for the GPU, not working
    work = [e for e in host if "Synchronize" not in e.key]
    gpu = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
    top = sorted(gpu, key=lambda e: e.self_device_time_total, reverse=True)[:TOP_OPS] if cuda else \
        sorted(work, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPS]
    per = 1e3 * batches  # microseconds in total -> milliseconds per batch
    return {"trace": str(trace), "batches": batches, "batch_size": int(x.shape[0]),
            "note": "profiled batches: synchronised, and slowed by the profiler itself (host time most): read "
                    "the shares; the record's latencies are the timed figures",
            "wall_ms_per_batch": round(sum(walls) / batches, 4),
            "host_ops_ms_per_batch": round(sum(e.self_cpu_time_total for e in work) / per, 4),
            "host_wait_ms_per_batch": round(sum(e.self_cpu_time_total for e in waits) / per, 4),
            "gpu_kernels_ms_per_batch": round(sum(e.self_device_time_total for e in gpu) / per, 4) if cuda else None,
            "top_ops": [{"op": short(e.key), "calls_per_batch": round(e.count / batches, 2),
                         "self_cpu_ms_per_batch": round(e.self_cpu_time_total / per, 4),
                         "self_gpu_ms_per_batch": round(e.self_device_time_total / per, 4) if cuda else None}
                        for e in top]}


def short(name: str, width: int = 90) -> str:
    """A kernel's name without its template arguments' spelled-out types, at most `width` characters."""
    name = re.sub(r"\(.*\)$", "", name) if len(name) > width else name
    return name if len(name) <= width else name[:width - 1] + "…"
