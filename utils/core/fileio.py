"""Atomic writes, content hashes and cache keys: every artefact is keyed by what it was made from.

Usage:
    key = cache_key({"onnx": file_sha256(p), "precision": "int8"})
    atomic_write_text(path, text)
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from utils.core.errors import ArtTRTError


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def cache_key(settings: Mapping[str, Any], length: int = 12) -> str:
    """A short stable hash of a settings mapping (sorted JSON)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    A crash or a full disk leaves no half-written file under the final name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp_path, final)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise ArtTRTError(f"the disk holding {final.parent} is full: {final.name} was not written "
                              "(nothing half-written was left behind)") from err
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes text to path atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes JSON (indented, sorted keys) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Reads a JSON file; a broken one is a user-facing error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtTRTError(f"cannot read JSON file {path}: {err}") from err
