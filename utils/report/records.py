"""One flat JSON record per measurement (after timm's write_results), with the environment in it.

Each record is written atomically as soon as it is measured, so an interrupted sweep keeps every
record it finished. Tables and plots are drawn from records only.

Usage:
    recorder = Recorder(Path("outputs"), command_line("main.py", argv))
    rec = recorder.write(make_record("validate", recorder.command, network="resnet18", backend="torch", ...))
    recs = load_records(Path("outputs"))
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import secrets
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_write_json, finite_json, is_regular_file, read_bytes, slug
from utils.report.schema import RECORD_VERSION, Record, RecordError, check_record

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)

_WARNED: set = set()
MAX_RECORD_BYTES = 16 << 20  # a record is a few KB; a larger .json is not one (and is not read whole)


def _version(module: str) -> Optional[str]:
    try:
        return importlib.metadata.version(module)
    except Exception:
        return None


def imported_version(module: str, distributions: tuple) -> Optional[str]:
    """The version of the distribution that `import module` loads, named: "1.31.1 (onnxruntime-gpu)". Where
    several are installed (a CPU build in site-packages, a GPU build earlier on PYTHONPATH), the one beside
    the module found first, not the first the metadata lists (an H200 record said 1.30.0 while 1.31.1 ran)."""

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    where = str(Path(spec.origin).resolve().parent.parent)
    for dist in importlib.metadata.distributions(path=[where]):
        name = str(dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in distributions:
            return f"{dist.version} ({name})"
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_facts(index: Optional[int] = None) -> Dict[str, Any]:
    """Name, compute capability, driver, CUDA and SM clock (NVML where present) of GPU `index` (default: the
    current one), or {"gpu": None} without one."""

    out: Dict[str, Any] = {"gpu": None}
    if not torch.cuda.is_available():
        return out
    if index is None:
        index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    out.update({"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
                "cuda": torch.version.cuda, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                # a Jetson's GPU shares the host's memory: copy-in is a copy within it, not a transfer over a bus
                "integrated_gpu": bool(getattr(props, "is_integrated", False))})
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)  # NVML counts like CUDA where CUDA_VISIBLE_DEVICES is unset
        out["driver"] = pynvml.nvmlSystemGetDriverVersion()
        out["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
    except Exception:  # NVML absent or refused: the record simply lacks those two facts
        pass
    return out


@functools.lru_cache(maxsize=None)
def environment(device_index: Optional[int] = None) -> Dict[str, Any]:
    """The software and hardware a figure was measured on, the GPU being the one it ran on (SM clock read
    again per record)."""

    env = {"host": platform.node(), "cpu": _cpu_name(), "python": platform.python_version(),
           "torch": torch.__version__, "torchvision": _version("torchvision"),
           "onnx": _version("onnx"), "onnxruntime": imported_version("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
           "modelopt": _version("nvidia-modelopt"), "tensorrt": _version("tensorrt") or _version("tensorrt-cu13")
           or _version("tensorrt-cu12"), "tensorrt_rtx": _version("tensorrt-rtx-cu13-bindings"),
           "loadgen": _version("mlcommons-loadgen"), "torchao": _version("torchao")}
    env.update({k: v for k, v in gpu_facts(device_index).items() if k != "sm_clock_mhz"})
    return env


def make_record(kind: str, command: Optional[str] = None, device_index: Optional[int] = None,
                **fields: Any) -> Dict[str, Any]:
    """A flat record: kind, fields, environment (of GPU device_index where it ran on one), command line, time."""
    rec: Dict[str, Any] = {"record_version": RECORD_VERSION, "kind": kind,
                           "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "command": command or " ".join(shlex.quote(a) for a in sys.argv), "error": None}
    rec.update(fields)
    rec["env"] = dict(environment(device_index))
    return dict(finite_json(rec))  # a figure that is not a number is written as null, never as NaN


def record_name(rec: Dict[str, Any]) -> str:
    """A file name that says what the record holds, and ends in a random tag: runs that start in the same
    second (a sweep's dynamic and static engines, three runs started together) never share a name."""
    parts = [rec.get("kind", "record"), rec.get("network", "net"), rec.get("backend", ""), rec.get("precision", ""),
             rec.get("options", ""), f"bs{rec['batch_size']}" if rec.get("batch_size") else "", rec.get("mode", ""),
             str(rec.get("env", {}).get("gpu") or "cpu").replace(" ", "-").lower(),
             str(rec["time"]).replace(":", "").replace("+0000", "Z")]
    # every part from a field is a slug (letters, digits, ._+-): a network named "../../README" names no path
    return "-".join(slug(p, 40) for p in parts if p) + f"-{secrets.token_hex(3)}.json"


def write_record(rec: Dict[str, Any], folder: Path) -> Path:
    """Writes the record atomically under a name no other record has. A record that does not fit the schema is a
    bug of ArtTRT's: it is said loudly, and written all the same (a measurement is never thrown away)."""
    try:
        check_record({k: v for k, v in rec.items() if k != "_path"})
    except RecordError as err:
        log.error("ArtTRT wrote a record that does not fit its own schema (%s): please report it", err)
    path = folder / record_name(rec)
    while path.exists():
        path = folder / record_name(rec)
    atomic_write_json(path, rec)
    return path


@dataclass
class Recorder:
    """Where a run's records go (None: nowhere) and the command line they name."""

    folder: Optional[Path] = None
    command: Optional[str] = None

    def write(self, rec: Dict[str, Any]) -> Record:
        """Writes the record under folder/records (if any); returns it typed, with its path where written.

        A measurement is never lost to a folder that stopped taking files: the record then goes to the
        system's temporary folder, and a warning says where."""
        if self.folder is not None:
            try:
                rec["_path"] = str(write_record(rec, self.folder / "records"))
            except (OSError, ArtTRTError) as err:
                rec["_path"] = str(write_record(rec, Path(tempfile.gettempdir()) / "arttrt-records"))
                rec["_elsewhere"] = True  # (in memory only: finish_study says where, and draws nothing over them)
                log.warning("could not write the record under %s (%s): it is in %s", self.folder, err, rec["_path"])
        try:
            return check_record(rec)
        except RecordError:  # said by write_record: a bug of ArtTRT's; the figures are kept, untyped where wrong
            return Record.model_construct(**rec)


def record_files(folder: Path, nested: bool = False) -> List[Path]:
    """The .json files of folder's own records (folder/records/, or folder itself where it is a records folder);
    nested: of every records folder at any depth under folder (shares of a study copied side by side, each its
    own output folder). Never another run's files beside them: a demo's output under outputs/demo is its own.
    Links to folders are not followed; the layer tables and profiler traces (inspect/, profiles/) are never
    records."""
    out = []
    roots = [folder] if folder.name == "records" else [folder / "records"]
    if nested:
        roots = [Path(d) for d, _, _ in os.walk(folder) if Path(d).name == "records"] or roots
        roots = [r for r in roots if not any(p in roots for p in r.parents)]  # records/x/records: read once
    for root in sorted(roots):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("inspect", "profiles"))
            out += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".json")]
    return out


def load_records(folder: Path, kind: Optional[str] = None, nested: bool = False) -> List[Record]:
    """Every ArtTRT record of folder (its records/ folder; nested: every records/ folder under it), oldest first,
    each checked against the schema; foreign JSON files are ignored, a record that cannot be read or does not fit
    is skipped with one warning naming it."""
    out = []
    for p in record_files(folder, nested):
        rec = read_record(p)
        if rec is not None and (kind is None or rec.kind == kind):
            out.append(rec)
    return sorted(out, key=lambda r: str(r.time or ""))


def record_folders(records: List[Record]) -> Dict[str, int]:
    """The folders the records were read from, with how many each gave."""
    out: Dict[str, int] = {}
    for r in records:
        if r.path:
            parent = str(Path(r.path).parent)
            out[parent] = out.get(parent, 0) + 1
    return out


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _WARNED:  # once per file and process, however often the folder is read
        _WARNED.add(str(path))
        log.warning("%s", message)


def read_record(path: Path) -> Optional[Record]:
    """One ArtTRT record with its path set, or None: for a file that is not one (foreign JSON, not a regular file,
    unreadable, cut short: quietly) and for a record that does not fit the schema (one warning naming the file and
    the field). Never trusted unchecked, never a traceback."""
    meant = path.parent.name == "records" or path.name.startswith(("validate-", "compare-"))  # meant as a record
    if not is_regular_file(path):  # a FIFO named x.json would block the read forever
        if meant:
            _warn_once(path, f"skipped {path}: not a regular file (a dangling link, a FIFO, a folder)")
        return None
    try:  # bounded and non-blocking: /proc/kmsg reports size 0 and never ends
        rec = json.loads(read_bytes(path, "record", MAX_RECORD_BYTES).decode("utf-8"))  # NaN parses; the schema refuses it
    except (ArtTRTError, OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, bad UTF-8
        if meant:
            why = ("not UTF-8" if isinstance(err, UnicodeDecodeError) else "nested too deep"
                   if isinstance(err, RecursionError) else first_line(err))
            _warn_once(path, f"skipped {path}: a record that cannot be read ({why})")
        return None
    if not isinstance(rec, dict) or "record_version" not in rec:
        if meant:  # in a records/ folder: said; elsewhere a sidecar or someone else's JSON, quietly
            _warn_once(path, f"skipped {path}: not an ArtTRT record (no record_version)")
        return None
    try:
        return check_record({**rec, "_path": str(path)})
    except RecordError as err:
        _warn_once(path, f"skipped {path}: not a valid ArtTRT record ({err})")
        return None

