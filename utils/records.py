"""One flat JSON record per measurement (after timm's write_results), with the environment in it.

Each record is written atomically as soon as it is measured, so an interrupted sweep keeps every
record it finished. Tables and plots are drawn from records only.

Usage:
    rec = make_record("validate", network="resnet18", backend="torch", ...)
    path = write_record(rec, Path("outputs/records"))
    recs = load_records(Path("outputs"))
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from utils.fileio import atomic_write_json

RECORD_VERSION = 1
_COMMAND: Optional[str] = None


def set_command(prog: str, argv: Optional[Sequence[str]]) -> None:
    """Records the exact command line of this run (main(argv) may be called without a shell)."""
    global _COMMAND
    args = list(sys.argv[1:] if argv is None else argv)
    _COMMAND = " ".join(shlex.quote(a) for a in ["python", prog] + args)


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_facts() -> Dict[str, Any]:
    """GPU name, compute capability, driver, CUDA and SM clock (NVML where present)."""
    import torch

    out: Dict[str, Any] = {"gpu": None}
    if not torch.cuda.is_available():
        return out
    props = torch.cuda.get_device_properties(0)
    out.update({"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
                "cuda": torch.version.cuda, "gpu_memory_gb": round(props.total_memory / 2**30, 1)})
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        out["driver"] = pynvml.nvmlSystemGetDriverVersion()
        out["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
    except Exception:  # NVML absent or refused: the record simply lacks those two facts
        pass
    return out


@functools.lru_cache(maxsize=1)
def environment() -> Dict[str, Any]:
    """The software and hardware a figure was measured on (SM clock read again per record)."""
    import torch

    env = {"host": platform.node(), "cpu": _cpu_name(), "python": platform.python_version(),
           "torch": torch.__version__, "torchvision": _version("torchvision"),
           "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
           "modelopt": _version("nvidia-modelopt"), "tensorrt": _version("tensorrt") or _version("tensorrt-cu13")
           or _version("tensorrt-cu12"), "tensorrt_rtx": _version("tensorrt-rtx-cu13-bindings")}
    env.update({k: v for k, v in gpu_facts().items() if k != "sm_clock_mhz"})
    return env


def make_record(kind: str, **fields: Any) -> Dict[str, Any]:
    """A flat record: kind, fields, environment, command line and time."""
    rec: Dict[str, Any] = {"record_version": RECORD_VERSION, "kind": kind,
                           "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "command": _COMMAND or " ".join(shlex.quote(a) for a in sys.argv), "error": None}
    rec.update(fields)
    rec["env"] = dict(environment())
    return rec


def record_name(rec: Dict[str, Any]) -> str:
    """A file name that says what the record holds."""
    parts = [rec.get("kind", "record"), rec.get("network", "net"), rec.get("backend", ""), rec.get("precision", ""),
             f"bs{rec['batch_size']}" if rec.get("batch_size") else "", rec.get("mode", ""),
             str(rec.get("env", {}).get("gpu") or "cpu").replace(" ", "-").lower(),
             rec["time"].replace(":", "").replace("+0000", "Z")]
    return "-".join(str(p) for p in parts if p) + ".json"


def write_record(rec: Dict[str, Any], folder: Path) -> Path:
    path = folder / record_name(rec)
    atomic_write_json(path, rec)
    return path


def load_records(folder: Path, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every ArtTRT record under folder (recursively), oldest first; foreign JSON files are ignored."""
    out = []
    for p in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("record_version") and (kind is None or rec.get("kind") == kind):
            rec["_path"] = str(p)
            out.append(rec)
    return sorted(out, key=lambda r: r.get("time", ""))
