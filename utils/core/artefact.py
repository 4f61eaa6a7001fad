"""The one cached-artefact helper: every build step whose output is a file (ONNX export, precision
conversion, calibration data, TensorRT engines, the decoded dataset) goes through `cached`.

A file is named <stem>-<key><suffix>, where key is utils.core.content.content_key(settings): the settings that
made it, with every input file (a Path) and network taken by its content, never by its name. Beside it, <stem>-<key>.json (the sidecar) holds the facts of how it was made and
an "artefact" block: key, settings, size in bytes and a fingerprint of the content (SHA-256 of the file
unless the step gives a cheaper one). The file is reused only when the sidecar is readable, its key is
this key, and the file's size and fingerprint match; otherwise it is rebuilt and a warning says why.
The file is written aside and renamed, the sidecar after it: an interrupted build leaves nothing that
looks valid, and a damaged file is rebuilt instead of failing on every run until deleted by hand.

Usage:
    path, facts = cached(folder, "resnet18-dyn-224x224-fp32", ".onnx", {"weights": ..., "shape": ...},
                         lambda tmp: export_onnx(net, tmp, shape))
    facts["cached"], facts["prepare_s"]   # reused or built now, and the seconds spent now
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from utils.core.content import content_of
from utils.core.fileio import atomic_path, atomic_write_json, cache_key, file_sha256, slug

log = logging.getLogger(__name__)

BLOCK = "artefact"  # the sidecar's key for what `cached` itself checks
Fingerprint = Callable[[Path, Mapping[str, Any]], Any]


def sha256_fingerprint(path: Path, facts: Mapping[str, Any]) -> str:
    """The default fingerprint: SHA-256 of the whole file."""
    return file_sha256(path)


def sidecar_of(path: Path) -> Path:
    """The sidecar of an artefact (or of a user's file that carries one, such as an engine)."""
    return path.with_suffix(".json")


def _problem(path: Path, sidecar: Path, key: str, fingerprint: Fingerprint,
             still_valid: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """(sidecar facts, "") when the artefact can be reused, else (None, why not)."""
    if not path.is_file() or not sidecar.is_file():
        return None, "absent"
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError, RecursionError) as err:
        return None, f"has an unreadable sidecar ({err})"
    block = meta.get(BLOCK) if isinstance(meta, dict) else None
    if not isinstance(block, dict) or block.get("key") != key:
        return None, "has a sidecar from another ArtTRT version or other settings"
    size = path.stat().st_size
    if size != block.get("bytes"):
        return None, f"holds {size} bytes, not the {block.get('bytes')} it was written with (truncated or replaced)"
    try:
        same = fingerprint(path, meta) == block.get("fingerprint")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"cannot be checked ({err})"
    if not same:
        return None, "does not hold the content it was written with"
    why = still_valid(meta) if still_valid is not None else None
    if why:
        return None, why
    return meta, ""


def cached(folder: Path, stem: str, suffix: str, settings: Mapping[str, Any],
           make: Callable[[Path], Optional[Mapping[str, Any]]], *, force: bool = False,
           fingerprint: Fingerprint = sha256_fingerprint,
           still_valid: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None) -> Tuple[Path, Dict[str, Any]]:
    """The artefact made by `make(tmp_path)` from `settings`, made once and reused while it checks out.

    Args:
        settings: what the artefact is made from; a Path in it stands for the file's (or folder's) content, a
            network for its architecture and weights (utils.core.content).
        stem: the readable part of the file name (what it is); the settings' key is appended.
        make: writes the artefact to the temporary path it is given; returns facts for the sidecar.
        force: rebuild even if a valid artefact exists.
        fingerprint: fingerprint(path, facts) of the content, computed after make() and checked at reuse.
        still_valid: still_valid(facts) -> None, or why a sound artefact must still be remade (a state it
            recorded has passed, say).

    Returns:
        (path, facts): the sidecar's facts plus "cached" (reused or not) and "prepare_s" (seconds spent now).
    """
    resolved = content_of(settings)  # input files and networks by content
    key = cache_key(resolved)
    stem = slug(stem, 80)  # a name from a user's folder or network: bounded (a 250-character folder name is legal)
    path = folder / f"{stem}-{key}{suffix}"
    sidecar = folder / f"{stem}-{key}.json"
    if not force:
        meta, why = _problem(path, sidecar, key, fingerprint, still_valid)
        if meta is not None:
            log.debug("reusing %s", path)
            return path, {**meta, "cached": True, "prepare_s": 0.0}
        if why != "absent":
            log.warning("%s %s: rebuilding it", path.name, why)
    sidecar.unlink(missing_ok=True)  # ours: a new file is never paired with the old sidecar
    t0 = time.perf_counter()
    with atomic_path(path) as tmp:
        facts = dict(make(tmp) or {})
        block = {"key": key, "settings": resolved, "bytes": tmp.stat().st_size,
                 "fingerprint": fingerprint(tmp, facts)}
    meta = {**facts, BLOCK: block}
    atomic_write_json(sidecar, meta)
    return path, {**meta, "cached": False, "prepare_s": round(time.perf_counter() - t0, 3)}
