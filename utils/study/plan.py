"""The plan of a study, checked before any work: every (network, backend, precision, calibration, variant)
asked is a setup; each setup has one accuracy pass over the whole dataset (at the largest batch size) and a
bounded timing job per batch size, or (--full_passes, or one batch size without --duration/--iterations) one
whole pass per batch size, the original's way. A setup that cannot run is a skipped row with its reason, as
Ultralytics' benchmark and trtexec show a failing row, and the study goes on.

A job's key names everything that changes its figures (network and weights, dataset and limit, backend,
precision and options, device, batch size, mode, timing rules): a rerun of the same command finds the
records of the jobs already measured and measures only the rest.

Usage:
    plan = make_plan(["resnet18", "resnet50"], ["torch", "onnxrt"], ["fp32", "int8"], [1, 32], spec_for,
                     bounded=True)
    for setup in plan.shard(1, 2): ...
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from utils.backends import registry
from utils.backends.base import RunSpec
from utils.core.content import content_of
from utils.core.errors import ArtTRTError
from utils.models.precision import CALIB_METHODS

ACCURACY, TIMING, WHOLE, SCENARIO = "accuracy", "timing", "whole pass", "scenario"


@dataclass(frozen=True)
class Job:
    role: str        # ACCURACY, TIMING, WHOLE or SCENARIO
    batch_size: int  # a scenario's: the dynamic batcher's largest batch
    serve: Any = None  # SCENARIO: its utils.measure.scenarios.ServeOptions

    @property
    def kind(self) -> "JobKind":
        return JOB_KINDS[self.role]


@dataclass(frozen=True)
class JobKind:
    """What a kind of job is: how it measures and what it hands on. The plan, the job runner (utils/study/study.py)
    and the job keys read this table; a new kind of job is a row here."""

    role: str
    whole_pass: bool          # one pass over every image (its accuracy), not bounded timing
    keeps_predictions: bool   # each image's top-1 class is saved beside the record (agreement is computed from it)
    gives_accuracy: bool      # the setup's timing jobs take their accuracy from it
    takes_accuracy: bool      # its record carries the setup's accuracy pass's figures
    serves: bool              # a LoadGen scenario (utils/measure/serving.py), not the timing loop
    looked_inside: bool       # --inspect and --profile may look inside it
    # which measurement rules change its figures (the rest of the key is the setup's)
    rules: Callable[["Job", Dict[str, Any]], Dict[str, Any]]


def _limit_only(job: "Job", rules: Dict[str, Any]) -> Dict[str, Any]:
    return {"timing": {"limit": rules.get("limit")}}


JOB_KINDS: Dict[str, JobKind] = {k.role: k for k in (
    JobKind(ACCURACY, True, True, True, False, False, False, _limit_only),
    JobKind(TIMING, False, False, False, True, False, True, lambda job, rules: {"timing": dict(rules)}),
    JobKind(WHOLE, True, True, False, False, False, True, lambda job, rules: {"timing": dict(rules)}),
    # a scenario: LoadGen's settings, and which images its query sample library holds
    JobKind(SCENARIO, False, False, False, False, True, False,
            lambda job, rules: {**_limit_only(job, rules), "serve": _plain(job.serve)}),
)}


@dataclass
class Setup:
    """One network through one backend, precision and set of options: the unit a shard or a GPU takes whole
    (its timing records take their accuracy from its accuracy pass)."""

    index: int
    network: str
    spec: RunSpec
    jobs: List[Job]
    skipped: Optional[str] = None       # why it cannot run (checked before any work)

    @property
    def calibrated(self) -> bool:
        return registry.calibrated(self.spec)

    @property
    def label(self) -> str:
        opts = registry.options_label(self.spec) if self.skipped is None else ""
        calib = (f" {self.spec.model.calib.calib_method} x{self.spec.model.calib.calib_size}"
                 if self.calibrated else "")
        return f"{self.network} {self.spec.backend} {self.spec.precision}{calib}" + (f" ({opts})" if opts else "")


@dataclass
class StudyPlan:
    setups: List[Setup] = field(default_factory=list)
    batch_sizes: Tuple[int, ...] = ()
    bounded: bool = True

    def shard(self, k: int, n: int) -> List[Setup]:
        """The k-th (1-based) of n shares: setups k-1, k-1+n, ... (a setup is never split)."""
        return [s for s in self.setups if s.index % n == k - 1]

    @property
    def jobs(self) -> int:
        return sum(len(s.jobs) for s in self.setups)

    def on_device(self, device: str) -> "StudyPlan":
        """The same plan with every setup on `device` (--gpus with one GPU: cuda becomes cuda:N)."""
        return dataclasses.replace(self, setups=[dataclasses.replace(s, spec=dataclasses.replace(s.spec, device=device))
                                                 for s in self.setups])


def parse_shard(text: str) -> Tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N; anything else is one sentence."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ArtTRTError(f"--shard takes K/N (the K-th of N shares, e.g. 1/4), not {text!r}") from None
    if not 1 <= k <= n:
        raise ArtTRTError(f"--shard {text}: K must be between 1 and N")
    return k, n


def jobs_for(batch_sizes: Sequence[int], bounded: bool, scenarios: Sequence[Any] = ()) -> List[Job]:
    """Bounded: one accuracy pass at the largest batch size, then bounded timing at each; else whole passes; then one
    job per serving scenario (each with its own accuracy run under LoadGen). No batch sizes: the scenarios only."""
    sizes = sorted(set(batch_sizes))
    serving = [Job(SCENARIO, s.max_batch, s) for s in scenarios]
    if not sizes:
        return serving
    if bounded:
        return [Job(ACCURACY, sizes[-1])] + [Job(TIMING, bs) for bs in sizes] + serving
    return [Job(WHOLE, bs) for bs in sizes] + serving


def calib_grid(spec: RunSpec, methods: Optional[Sequence[str]], sizes: Optional[Sequence[int]]
               ) -> List[Tuple[RunSpec, Optional[str]]]:
    """An int8/fp8 spec once per calibration method and size asked (the same seeded images), each with the
    reason it cannot run, if any; other precisions pass through once."""
    if not registry.calibrated(spec) or not (methods or sizes):
        return [(spec, None)]
    out = []
    calib = spec.model.calib
    for m in methods or [calib.calib_method]:
        for n in sizes or [calib.calib_size]:
            new = dataclasses.replace(spec, model=dataclasses.replace(
                spec.model, calib=dataclasses.replace(calib, calib_method=m, calib_size=n)))
            why = None if m in CALIB_METHODS[spec.precision] else (
                f"{spec.precision} calibrates with {' or '.join(CALIB_METHODS[spec.precision])} only, not {m}")
            out.append((new, why))
    return out


def make_plan(networks: Sequence[str], backends: Sequence[str], precisions: Sequence[str],
              batch_sizes: Sequence[int], spec_for: Callable[[str, str], RunSpec], *, bounded: bool,
              calib_methods: Optional[Sequence[str]] = None, calib_sizes: Optional[Sequence[int]] = None,
              unloadable: Optional[Dict[str, str]] = None, scenarios: Sequence[Any] = ()) -> StudyPlan:
    """Every combination asked, in order network > backend > precision > calibration > variant; each is checked
    (registry.check) and either planned or skipped with the check's sentence (unloadable: network -> why it
    could not be loaded; its setups are skipped with that sentence)."""
    plan = StudyPlan(batch_sizes=tuple(sorted(set(batch_sizes))), bounded=bounded)
    jobs = jobs_for(batch_sizes, bounded, scenarios)
    for network in networks:
        for backend in backends:
            for precision in precisions:
                for spec, calib_why in calib_grid(spec_for(backend, precision), calib_methods, calib_sizes):
                    why = (unloadable or {}).get(network)
                    if why is None:  # first what the backend refuses, then what the calibration does
                        try:
                            registry.check(spec)
                        except ArtTRTError as err:
                            why = str(err)
                    why = why or calib_why
                    variants = [spec] if why else [dataclasses.replace(spec, options=v)
                                                   for v in registry.variants(spec)]
                    for v in variants:
                        plan.setups.append(Setup(len(plan.setups), network, v, list(jobs), why))
    return plan


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _by_content(path: Optional[str]) -> Any:
    """A file or folder the user named, by its content (utils.core.content); where it cannot be read, its path
    (the job then fails with the reader's own sentence)."""
    if not path:
        return path
    try:
        return content_of(Path(path))
    except (ArtTRTError, OSError):
        return {"unreadable": str(path)}


def _model_identity(spec: RunSpec) -> Dict[str, Any]:
    """The model options of a spec with the user's files taken by content: a replaced --onnx file or calibration
    folder is another job, not one "found done before"."""
    model = _plain(spec.model)
    model["onnx"] = _by_content(model.get("onnx"))
    if isinstance(model.get("calib"), dict):
        model["calib"]["calib_dataset"] = _by_content(model["calib"].get("calib_dataset"))
        for name in ("exclude", "mixed_precision_budget"):  # left out at their defaults: earlier jobs' keys stand
            if model["calib"].get(name) in ((), None):
                model["calib"].pop(name, None)
        budget = spec.model.calib.mixed_precision_budget if spec.model.calib is not None else None
        if getattr(budget, "relative", False):  # "1%" of fp32's top-1 is another search than 1 point
            model["calib"]["mixed_precision_budget"] = str(budget)
    return dict(model)


def job_identity(setup: Setup, job: Job, facts: Dict[str, Any], timing: Dict[str, Any]) -> Dict[str, Any]:
    """Everything that changes a job's figures: facts holds the network's content key (weights_id), the dataset's
    key and image count and the device (read once the network and dataset are open); timing the measurement rules;
    the user's --onnx file and calibration folder are taken by content."""
    spec = setup.spec
    options = _plain(spec.options)
    if isinstance(options, dict):  # how it is rebuilt or retried does not change the figures
        options = {k: v for k, v in options.items() if k != "force"}
    ident = {"network": setup.network, "backend": spec.backend, "precision": spec.precision,
             "options": options, "model": _model_identity(spec), "cuda_graph": spec.cuda_graph,
             # on a GPU, whether fp32 may use TF32 (strict fp32 unless --tf32: records of before, when PyTorch's
             # cuDNN default let convolutions use it, are measured again)
             **({"tf32": spec.tf32} if spec.device.startswith("cuda") else {}),
             **({"run_batch_sizes": list(spec.batch_sizes)} if registry.get(spec.backend).built_for_run_batches
                else {}),
             "role": job.role, "batch_size": job.batch_size, **facts}
    ident.update(job.kind.rules(job, timing))
    if not registry.calibrated(spec):
        ident["model"] = {k: v for k, v in ident["model"].items() if k != "calib"}
    return ident


def setup_key(setup: Setup, facts: Dict[str, Any]) -> str:
    """The key of a setup (its jobs without role and batch size): timing records name their accuracy pass by it."""
    ident = job_identity(setup, Job(ACCURACY, 0), facts, {})
    for k in ("role", "batch_size", "timing"):
        ident.pop(k)
    return digest(ident)


def digest(ident: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]
