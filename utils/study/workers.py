"""The processes of one study: claims (a setup taken by creating its file exclusively), the command line a
worker runs, and the outcome lines a worker leaves for its parent. Used by --gpus (one worker per GPU) and by
the study itself (a setup run in a process of its own).

Usage:
    if claim(folder, setup): ...run it...; note_outcome(folder, "measured", record)
    argv = worker_argv(sys.argv[1:], "cuda:1", folder)
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

MAIN = Path(__file__).resolve().parents[2] / "main.py"
SETUP_PROCESS = "ARTTRT_SETUP_PROCESS"  # set in a worker told its setups: its parent loaded and checked everything


def claim(folder: Path, index: int) -> bool:
    """Takes setup `index` for this process: True if no other process of the study has."""
    try:
        fd = os.open(folder / f"setup-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def worker_argv(argv: Sequence[str], device: str, claims: Path, setups: Optional[Sequence[int]] = None,
                force: bool = False) -> List[str]:
    """The study's own arguments without --gpus, --device, --claims and --setups, for a worker on `device`
    claiming from `claims` (and, where given, running exactly `setups`)."""
    out: List[str] = []
    skip = False
    for a in argv:
        if skip and not a.startswith("-"):
            continue
        skip = False
        if a in ("--gpus", "--device", "--claims", "--setups"):
            skip = True
            continue
        if a.startswith(("--gpus=", "--device=", "--claims=", "--setups=")):
            continue
        out.append(a)
    talk = [] if "--verbose" in out or "--quiet" in out else ["--quiet"]
    told = ["--setups", *map(str, setups)] if setups is not None else []
    again = ["--force"] if force and "--force" not in out else []
    return [*out, "--device", device, "--claims", str(claims), *told, *again, *talk]


def launch(argv: Sequence[str], device: str, claims: Path, setups: Optional[Sequence[int]] = None,
           force: bool = False) -> subprocess.Popen:
    """The one way a study starts a worker process: main.py with the study's arguments on `device`, claiming from
    `claims`; given `setups`, it runs exactly those (a setup in a process of its own), else it takes the next
    unclaimed one until none is left (one worker per GPU of --gpus)."""

    env = dict(os.environ)
    if setups is not None:
        env[SETUP_PROCESS] = "1"  # its parent loaded every network and checked the plan
    return subprocess.Popen([sys.executable, str(MAIN), *worker_argv(argv, device, claims, setups, force)], env=env)


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
