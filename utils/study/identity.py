"""What a record measured, in one place for every kind of record (a timing or accuracy job, a serving scenario, a
comparison): the network and its weights (by content), the runner (backend, precision, options, device), the batch,
and the images (by content key). A table tells rows apart and a rerun finds a job done by these fields alone.
And the environment a study job is measured in, as far as it changes the job's figures (its key holds it).

Usage:
    fields = record_identity(net, spec, dataset, runner.device, batch_size)
    env = environment_identity(RunSpec("onnxrt", device="cuda:0"))  # machine, PyTorch, ONNX, ONNX Runtime, ModelOpt
    ident, key, facts = job_key(setup, job, facts, rules)  # a study job's identity, its key, the facts it holds
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from utils.backends.base import RunSpec
from utils.backends.registry import options_label
from utils.data.cache import CachedDataset
from utils.models.networks import Network
from utils.models.paths import weights_id
from utils.report.records import environment
from utils.report.schema import Record
from utils.report.select import env_fields, env_identity
from utils.study.plan import SCENARIO, Job, Setup, digest, job_identity

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


def environment_identity(spec: RunSpec, scenario: bool = False) -> Dict[str, Any]:
    """The environment a job of `spec` is measured in, as far as it changes its figures (select.env_fields: the
    kind of machine and PyTorch, the libraries its backend and provider run, LoadGen's for a serving job; never
    the host name, so like nodes share their records, nor a library the job does not run, so a study resumed after
    one was installed finds its other jobs done)."""
    dev = torch.device(spec.device)
    env = environment(dev.index if dev.type == "cuda" else None)
    return _narrowed(env, spec.backend, scenario, getattr(spec.options, "provider", None))


def _narrowed(env: Dict[str, Any], backend: str, scenario: bool, provider: Optional[str]) -> Dict[str, Any]:
    """env's fields that a job of backend (on provider; a serving job if scenario) depends on (select.env_fields)."""
    return {k: env.get(k) for k in env_fields(backend, scenario, provider)}


def job_key(setup: Setup, job: Job, facts: Dict[str, Any], timing: Dict[str, Any]
            ) -> Tuple[Dict[str, Any], str, Dict[str, Any]]:
    """A study job's identity (plan.job_identity), its key, and the facts as the key holds them: a serving job's
    environment names LoadGen's version too."""
    if job.role == SCENARIO and "environment" in facts:
        facts = {**facts, "environment": environment_identity(setup.spec, scenario=True)}
    ident = job_identity(setup, job, facts, timing)
    return ident, digest(ident), facts


def keys_of(rec: Record) -> List[str]:
    """The keys a study job's record answers to: its own, and for a record of before 2026-12-07, whose key held
    every importable library's version, the key the same job has now (so a folder of before is not measured again
    for it; done_here still compares the environment)."""
    keys = [str(rec.job_key)]
    ident = rec.study_job or {}
    env, options = ident.get("environment"), ident.get("options")
    if isinstance(env, dict):
        provider = options.get("provider") if isinstance(options, dict) else None
        now = _narrowed(env, str(rec.backend), rec.role == SCENARIO, provider)
        if now != env:
            keys.append(digest({**ident, "environment": now}))
    return keys


def done_here(done: Dict[str, Record], key: str, facts: Dict[str, Any]) -> Optional[Record]:
    """The record of job `key` measured in this environment, if any: a record under the same key that names
    another environment (copied from elsewhere, or edited) is not taken as measured here."""
    old, env = done.get(key), facts.get("environment")
    if old is not None and env is not None:
        measured = env_identity(old)  # the fields old's figures depend on, compared with this environment's
        if measured != tuple((k, env.get(k)) for k, _ in measured):
            return None
    return old
