"""--gpus: one worker process per GPU over the same plan; each takes the next setup by claiming it (a claim file
created exclusively), so no setup runs twice and no GPU times two jobs at once. The parent shows one progress
bar over every worker's jobs, then draws the tables and the report from their records.

Usage:
    python main.py -v --networks resnet18 resnet50 --backends torch compile --precisions fp16 \
        --batch_sizes 1 32 256 --dataset DIR --gpus all
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Any, Dict, List, Sequence

from utils.core.errors import ArtTRTError
from utils.core.progress import progress_bar
from utils.report.records import load_records
from utils.study.agreement import with_agreement
from utils.study.finish import finish_study
from utils.study.handover import for_worker, write_handover
from utils.study.study import device_identity
from utils.study.workers import jobs_done, launch, outcomes_of, wait_all

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)


def gpu_indices(values: Sequence[str]) -> List[int]:
    """--gpus 0 1 ... or --gpus all -> the GPU indices, each checked against the GPUs this machine has."""

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ArtTRTError("--gpus needs CUDA GPUs, and none is visible here")
    if list(values) == ["all"]:
        return list(range(count))
    try:
        idx = [int(v) for v in values]
    except ValueError:
        raise ArtTRTError(f"--gpus takes GPU indices or all, not {' '.join(values)}") from None
    bad = [i for i in idx if not 0 <= i < count]
    if bad:
        raise ArtTRTError(f"--gpus {bad[0]}: this machine has {count} GPU{'s' if count > 1 else ''} (0..{count - 1})")
    if len(set(idx)) < len(idx):
        raise ArtTRTError("--gpus names a GPU twice: two timing jobs would share it")
    return idx


def device_of(gpu: int) -> str:
    return f"cuda:{gpu}"


def model_of(gpu: int) -> str:
    return device_identity(device_of(gpu))  # the kind of GPU a job's key and a claim name


def plan_passes(gpus: Sequence[int]) -> int:
    """How many times the plan is measured: once per GPU model among gpus (a claim names the model, so the
    workers of each model measure the whole plan: one model's figures never stand for another's), said once."""
    models: Dict[str, List[int]] = {}
    for g in gpus:
        models.setdefault(model_of(g), []).append(g)
    if len(models) > 1:
        log.warning("--gpus: GPUs of %d models (%s): each model's workers measure the whole plan, once per model",
                    len(models), "; ".join(f"{m}: {', '.join(map(str, gs))}" for m, gs in models.items()))
    return len(models)


def run_on_gpus(request: Any, gpus: Sequence[int], plan: Any, started: float) -> int:
    """Starts one worker per GPU, follows them with one progress bar, then draws the tables of all their jobs."""
    output = request.output
    total = plan.jobs * plan_passes(gpus)
    claims = output / f".claims-{os.getpid()}-{secrets.token_hex(3)}"
    claims.mkdir(parents=True)
    # each worker's plan on its own GPU: a setup it hands to a process of its own runs there too, not on cuda:0
    procs = {g: launch(write_handover(claims, f"worker-gpu-{g}", for_worker(request, device_of(g), claims),
                                      plan.on_device(device_of(g))))
             for g in gpus}
    log.info("study on GPUs %s: %d jobs in %d setups", ", ".join(map(str, gpus)), total, len(plan.setups))
    bar = progress_bar(total=total, desc=f"study on {len(gpus)} GPUs", enabled=not request.quiet)

    def tick() -> None:
        bar.n = min(total, jobs_done(claims))
        bar.refresh()

    try:
        wait_all(list(procs.values()), tick)
    finally:
        bar.close()
    outcomes = outcomes_of(claims)
    shutil.rmtree(claims, ignore_errors=True)
    crashed = {g: p.returncode for g, p in procs.items() if p.returncode not in (0, 1)}
    for g, rc in crashed.items():
        log.error("the worker on GPU %d stopped with status %d: its unfinished setups run on the next rerun", g, rc)

    everything = load_records(output)  # the workers' records and the folder's others, read once
    everything = with_agreement(output, everything)  # in memory: no record is written twice
    by_path = {r.path: r for r in everything}
    records = [by_path[str(o["path"])] for o in outcomes if o.get("path") and str(o["path"]) in by_path]
    counts: Dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    rc = finish_study(request.max_top1_drop, output, records, started, counts, everything)
    return rc if not crashed else max(rc, 1)
