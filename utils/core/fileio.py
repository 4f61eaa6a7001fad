"""Atomic writes, content hashes and cache keys: every artefact is keyed by what it was made from.

Usage:
    key = cache_key({"onnx": file_sha256(p), "precision": "int8"})
    atomic_write_text(path, text)
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from utils.core.errors import ArtTRTError


_SHA256_SEEN: dict = {}


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex; remembered for the process while the file's size, times and inode stay
    the same (a sweep checks the same engine at every batch size: it is read once)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _SHA256_SEEN:
        _SHA256_SEEN[key] = _sha256(path, chunk)
    return str(_SHA256_SEEN[key])


def _sha256(path: str | os.PathLike[str], chunk: int) -> str:
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

    A crash or a full disk leaves no half-written file under the final name. The temporary name carries the
    writer's process id: what a killed writer left (kill -9 cannot be caught) is removed by the next writer
    of the same file.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_parts(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".part", dir=final.parent)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _sweep_parts(final: Path) -> None:
    """Removes the temporary files of `final` left by writers that no longer run."""
    prefix = f".{final.name}."
    for part in final.parent.glob(f"{glob.escape(prefix)}*.part"):
        pid = part.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


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


def ensure_writable(folder: str | os.PathLike[str], what: str) -> Path:
    """Makes `folder` if needed and proves a file can be written there, before any long work: one sentence
    naming the option otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".arttrt-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError as err:
        raise ArtTRTError(f"{what} {path} is a file, not a folder") from err
    except OSError as err:
        reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or type(err).__name__).lower()
        raise ArtTRTError(f"{what} {path} cannot be written to ({reason}): choose another folder") from err
    return path
