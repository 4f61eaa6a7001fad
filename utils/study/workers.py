"""The processes of one study: claims (a setup taken by creating its file exclusively), the command line a
worker runs, and the outcome lines a worker leaves for its parent. Used by --gpus (one worker per GPU) and by
the study itself (a setup run in a process of its own).

Usage:
    if claim(folder, setup): ...run it...; note_outcome(folder, "measured", record)
    proc = launch(write_handover(folder, "worker-cuda-1", for_worker(request, "cuda:1", folder), plan))
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from utils.core.fileio import atomic_write_text
from utils.report.records import read_record
from utils.report.schema import Record
from utils.study.plan import digest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def claim_key(setup: Any, rules: Dict[str, Any], environment: Dict[str, Any]) -> str:
    """What a claim names: the setup by content (network, backend, precision, options, calibration, its jobs), the
    measurement rules of this run and the environment its jobs' keys hold (identity.environment_identity: the GPU's
    model, driver, the libraries it runs), never its device index (the workers of --gpus share a plan on GPUs of one
    model) nor its place in the plan (another command's plan numbers its setups differently). Tasks of a cluster on
    another GPU model or other versions claim apart: a setup done there is not done here (its records would not be
    found done either)."""
    spec = {k: v for k, v in dataclasses.asdict(setup.spec).items() if k != "device"}
    return digest({"network": setup.network, "spec": spec, "jobs": [(j.role, j.batch_size) for j in setup.jobs],
                   "rules": rules, "environment": environment})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def read_claim(path: Path) -> Optional[Dict[str, Any]]:
    """A claim file's holder ({"pid", "host", "time", "setup", "state"}), or None where it is not one of ours."""
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and isinstance(got.get("pid"), int) else None


def is_stale(holder: Optional[Dict[str, Any]]) -> bool:
    """A claim whose process is gone: on this host, a pid that no longer runs (a killed worker); a claim of another
    host cannot be checked from here and is never taken for stale."""
    if holder is None:
        return True  # cut by a kill before its content was written, or not ours: taken over
    return holder.get("state") == "running" and holder.get("host") == platform.node() and not _alive(holder["pid"])


def claim(folder: Path, key: str, label: str = "") -> Optional[Dict[str, Any]]:
    """Takes the setup of claim key `key` for this process: None where it has it now, else the claim of the process
    that holds it (running, or done). A stale claim (its process gone) is released and taken, said in a warning.
    Claims are taken under an exclusive lock of the folder (flock), so two processes never both take one over."""
    path = folder / f"setup-{key}.claim"
    mine = {"pid": os.getpid(), "host": platform.node(), "time": time.time(), "setup": label, "state": "running"}
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            holder = read_claim(path)
            if not is_stale(holder):
                return holder
            log.warning("%s was claimed by process %s on %s, which is gone: its claim is released and taken here",
                        label or key, (holder or {}).get("pid", "?"), (holder or {}).get("host", "?"))
        atomic_write_text(path, json.dumps(mine))
    return None


def release(folder: Path, key: str) -> None:
    """Marks this process's claim of `key` done: no other process of the study takes the setup again."""
    path = folder / f"setup-{key}.claim"
    holder = read_claim(path)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == platform.node():
        atomic_write_text(path, json.dumps({**holder, "state": "done", "done": time.time()}))


def held_now(folder: Path, held: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The claims other processes held, as they stand now (read again: a setup running then may be done since)."""
    return [{**(read_claim(folder / f"setup-{h['key']}.claim") or h), "key": h["key"]} for h in held]


def claims_elsewhere(held: Sequence[Dict[str, Any]]) -> str:
    """One line for the setups other processes held: how many, done or running, and by whom."""
    running = [h for h in held if h.get("state") != "done"]
    done = len(held) - len(running)
    now = time.time()
    who = sorted({f"pid {h.get('pid')} on {h.get('host')} for {_age(now - float(h.get('time') or now))}"
                  for h in running})
    line = (f"claims: {len(held)} setup{'s' if len(held) != 1 else ''} held by other processes ({done} done, "
            f"{len(running)} running" + (f": {', '.join(who[:4])}" + (", ..." if len(who) > 4 else "") if who else "")
            + ")")
    if running:  # a process of another host cannot be checked from here: say how to release its claim
        line += (f"; a claim whose process is gone on another host is released by deleting its file "
                 f"(setup-{running[0].get('key', '<key>')}.claim in the claims folder)")
    return line


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


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
        f.write(json.dumps({"status": status, "path": record.path if record is not None else None}) + "\n")


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


def records_of(lines: Sequence[Dict[str, Any]]) -> List[Optional[Record]]:
    """The record each outcome line names (None where it names none, or the file is not a record)."""

    return [read_record(Path(line["path"])) if line.get("path") else None for line in lines]
