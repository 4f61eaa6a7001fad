"""What a record measured, in one place for every kind of record (a timing or accuracy job, a serving scenario, a
comparison): the network and its weights (by content), the runner (backend, precision, options, device), the batch,
and the images (by content key). A table tells rows apart and a rerun finds a job done by these fields alone.
And the environment a study job is measured in, as far as it changes the job's figures (its key holds it).

Usage:
    fields = record_identity(net, spec, dataset, runner.device, batch_size)
    env = environment_identity("cuda:0", "onnxrt")  # the machine, PyTorch, ONNX, ONNX Runtime and ModelOpt
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from utils.backends.base import RunSpec
from utils.backends.registry import options_label
from utils.data.cache import CachedDataset
from utils.models.networks import Network
from utils.models.paths import weights_id
from utils.report.records import environment
from utils.report.schema import Record
from utils.report.select import env_fields, env_identity
from utils.study.plan import SCENARIO, Job, Setup

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


def record_identity(net: Network, spec: RunSpec, dataset: CachedDataset, device: Any, batch_size: int
                    ) -> Dict[str, Any]:
    """The identity fields of a record of `spec` on `net` over `dataset`, run on `device` at `batch_size`."""
    return {"network": net.name, "weights": net.weights, "weights_id": weights_id(net), "backend": spec.backend,
            "precision": spec.precision, "options": options_label(spec), "device": str(device),
            "batch_size": batch_size, "dataset": dataset.meta.get("root", "synthetic"),
            "dataset_key": dataset.meta.get("key") or dataset.meta.get("root"), "dataset_images": len(dataset)}


def environment_identity(device: str, backend: str, scenario: bool = False) -> Dict[str, Any]:
    """The environment a job of `backend` on `device` is measured in, as far as it changes its figures
    (select.env_fields: the kind of machine and PyTorch, the libraries the backend runs, LoadGen's for a serving
    job; never the host name, so like nodes share their records, nor a library the job does not run, so a study
    resumed after one was installed finds its other jobs done)."""
    dev = torch.device(device)
    env = environment(dev.index if dev.type == "cuda" else None)
    return {k: env.get(k) for k in env_fields(backend, scenario)}


def job_facts(setup: Setup, job: Job, facts: Dict[str, Any]) -> Dict[str, Any]:
    """The facts as job's key holds them: a serving job's environment names LoadGen's version too."""
    if job.role != SCENARIO or "environment" not in facts:
        return facts
    return {**facts, "environment": environment_identity(setup.spec.device, setup.spec.backend, scenario=True)}


def done_here(done: Dict[str, Record], key: str, facts: Dict[str, Any]) -> Optional[Record]:
    """The record of job `key` measured in this environment, if any: a record under the same key that names
    another environment (copied from elsewhere, or edited) is not taken as measured here."""
    old, env = done.get(key), facts.get("environment")
    if old is not None and env is not None and env_identity(old) != env_identity(old.with_fields(env=env)):
        return None
    return old
