"""What a study hands a worker process: its Request and its plan, written as JSON by the parent and read back by the
worker (python -m utils.study.worker FILE), so a worker neither re-parses a command line nor makes the plan again.
Only ArtTRT's own option classes are rebuilt (an allow-list by name): a file can never name another class, and
nothing in it runs code.

Usage:
    path = write_handover(folder, request, plan)      # the parent
    request, plan = read_handover(path)                # the worker
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Type

from utils.backends import registry
from utils.backends.base import RunSpec
from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text, read_json
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.measure.scenarios import ServeOptions
from utils.models.chain import ModelOptions
from utils.models.precision import CalibOptions
from utils.study.plan import Job, Setup, StudyPlan
from utils.study.request import Request

FORMAT = "arttrt-handover-1"


def _classes() -> Dict[str, Type[Any]]:
    """The dataclasses a handover may hold, by "module:name" (each backend's own Options included)."""
    known = [Request, RunSpec, ModelOptions, CalibOptions, MeasureOptions, DataOptions, ServeOptions, Job, Setup,
             StudyPlan, *(b.impl().Options for b in registry.BACKENDS.values())]
    return {f"{c.__module__}:{c.__qualname__}": c for c in known}


def encode(value: Any) -> Any:
    """value as plain JSON: dataclasses by class name and fields, paths and tuples tagged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = f"{type(value).__module__}:{type(value).__qualname__}"
        return {"__class__": name, **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)
                                      if f.init}}
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not k.startswith("__") for k in value):
            raise ArtTRTError(f"cannot hand a worker a dict keyed by {sorted(map(repr, value))[:3]}")
        return {k: encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ArtTRTError(f"cannot hand a worker a {type(value).__name__}")


def decode(value: Any, classes: Dict[str, Type[Any]]) -> Any:
    """What encode wrote, each dataclass rebuilt only where its name is one of `classes`."""
    if isinstance(value, list):
        return [decode(v, classes) for v in value]
    if not isinstance(value, dict):
        return value
    if "__path__" in value:
        return Path(value["__path__"])
    if "__tuple__" in value:
        return tuple(decode(v, classes) for v in value["__tuple__"])
    if "__class__" in value:
        cls = classes.get(str(value["__class__"]))
        if cls is None:
            raise ArtTRTError(f"a worker's handover names {value['__class__']!r}, which is not one of ArtTRT's "
                              "option classes")
        return cls(**{k: decode(v, classes) for k, v in value.items() if k != "__class__"})
    return {k: decode(v, classes) for k, v in value.items()}


def for_worker(request: Request, device: str, claims: Path, setups: Optional[Sequence[int]] = None,
               force: bool = False) -> Request:
    """The request a worker runs: the study's own, on `device`, claiming from `claims` (given `setups`, exactly
    those), quiet unless --verbose; its records name the command a user would type to measure the same."""
    return dataclasses.replace(
        request, device=device, device_reason=f"--device {device}", gpus=None, claims=claims,
        setups=tuple(setups) if setups is not None else None, force=request.force or force,
        quiet=request.quiet or not request.verbose, command=f"{request.command} --device {device} --claims {claims}")


def write_handover(folder: Path, name: str, request: Request, plan: StudyPlan) -> Path:
    """The worker's file, written atomically in the study's claims folder."""
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps({"format": FORMAT, "request": encode(request), "plan": encode(plan)}))
    return path


def read_handover(path: Path) -> Tuple[Request, StudyPlan]:
    """The request and plan of a worker's file; one sentence for a file that is not one, or names another class."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtTRTError(f"{path} is not a study's handover to a worker ({FORMAT})")
    classes = _classes()
    request, plan = decode(data["request"], classes), decode(data["plan"], classes)
    if not isinstance(request, Request) or not isinstance(plan, StudyPlan):
        raise ArtTRTError(f"{path} does not hold a request and a plan")
    return request, plan
