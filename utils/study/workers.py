"""The processes of one study: claims (a setup taken by creating its file exclusively), the command line a
worker runs, and the outcome lines a worker leaves for its parent. Used by --gpus (one worker per GPU) and by
the study itself (a setup run in a process of its own).

Usage:
    if claim(folder, setup): ...run it...; note_outcome(folder, "measured", record)
    proc = launch(write_handover(folder, "worker-cuda-1", for_worker(request, "cuda:1", folder), plan))
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from utils.report.records import read_record

ROOT = Path(__file__).resolve().parents[2]


def claim(folder: Path, index: int) -> bool:
    """Takes setup `index` for this process: True if no other process of the study has."""
    try:
        fd = os.open(folder / f"setup-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def launch(handover: Path) -> subprocess.Popen:
    """The one way a study starts a worker process: python -m utils.study.worker with the file of its request and
    plan (utils/study/handover.py); told setups, it runs exactly those (a setup in a process of its own), else it
    takes the next unclaimed one until none is left (one worker per GPU of --gpus)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.Popen([sys.executable, "-m", "utils.study.worker", str(handover)], env=env)


def note_outcome(claims: Path, status: str, record: Any) -> None:
    """A worker's line per finished job (claims/outcomes-<pid>.jsonl): its parent counts them for its progress
    bar and reads them for its tables."""
    with open(claims / f"outcomes-{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps({"status": status, "path": (record or {}).get("_path")}) + "\n")


def outcomes_of(claims: Path) -> List[Dict[str, Any]]:
    """Every outcome line the workers of claims wrote ({"status", "path"}); a line cut by a kill is left out."""
    out = []
    for p in sorted(claims.glob("outcomes-*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def jobs_done(claims: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in claims.glob("outcomes-*.jsonl"))


def wait_all(procs: Sequence[subprocess.Popen], tick: Optional[Callable[[], None]] = None) -> None:
    """Waits for every worker (calling tick about twice a second); on Ctrl-C or SIGTERM, the workers stop the same
    way (SIGINT: each keeps its finished records) before this process goes on unwinding."""
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            if tick is not None:
                tick()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise


def records_of(lines: Sequence[Dict[str, Any]]) -> List[Optional[Dict[str, Any]]]:
    """The record each outcome line names (None where it names none, or the file is not a record)."""

    return [read_record(Path(line["path"])) if line.get("path") else None for line in lines]
