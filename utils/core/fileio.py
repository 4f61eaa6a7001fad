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
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from utils.core.errors import ArtTRTError, first_line


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


def finite_json(obj: Any) -> Any:
    """obj with every float that is not a number (NaN, +-inf) replaced by None: JSON has no such numbers, and a
    reader must never take one for a figure."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """Strict JSON (indented, sorted keys; non-finite floats written as null, never as NaN)."""
    return json.dumps(finite_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes strict JSON (indented, sorted keys, no NaN) atomically."""
    atomic_write_text(path, json_text(obj))


def regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """`path` if it is a regular file (links followed); one sentence otherwise. A FIFO, a device or a socket
    where a file is expected would block a read forever or read something that is not a file at all."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ArtTRTError(f"{what} {p} does not exist") from None
    except OSError as err:
        raise ArtTRTError(f"{what} {p} cannot be read ({(err.strerror or type(err).__name__).lower()})") from err
    if stat.S_ISDIR(st.st_mode):
        raise ArtTRTError(f"{what} {p} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ArtTRTError(f"{what} {p} is {kind}, not a regular file: refusing to read it")
    return p


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """True for a regular file (links followed); False for anything else, absent included."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


MAX_READ_BYTES = 256 << 20  # a class map, a labels file, a record or a telemetry CSV is far smaller


def read_bytes(path: str | os.PathLike[str], what: str = "file", max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes, or one sentence. Read without blocking and in bounded
    chunks: a file that reports size 0 but never ends (/proc/kmsg) or one of 30 GB is refused, not waited for or
    loaded whole."""
    p = regular_file(path, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ArtTRTError(f"{what} {p} cannot be read ({(err.strerror or type(err).__name__).lower()})") from err
    chunks, total = [], 0
    try:
        while True:
            try:
                block = os.read(fd, 1 << 20)
            except BlockingIOError:
                raise ArtTRTError(f"{what} {p} is not a file that can be read to its end (it blocks)") from None
            except OSError as err:
                raise ArtTRTError(f"{what} {p} cannot be read ({(err.strerror or type(err).__name__).lower()})"
                                  ) from err
            if not block:
                return b"".join(chunks)
            total += len(block)
            if total > max_bytes:
                raise ArtTRTError(f"{what} {p} is larger than {max_bytes / 2**20:g} MiB: refusing to read it")
            chunks.append(block)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], what: str = "file", max_bytes: int = MAX_READ_BYTES) -> str:
    """The UTF-8 text of a regular file (a byte-order mark dropped), or one sentence naming the file and what
    is wrong: absent, not a regular file, unreadable, too large, not UTF-8."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ArtTRTError(f"{what} {path} is not UTF-8 text (byte {err.start}, line {line})") from None


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Reads a JSON file (strict: no NaN); a broken one is a user-facing error naming the file."""
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise ArtTRTError(f"cannot read {what} {path}: {first_line(err)}") from err


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


SLUG_RE = re.compile(r"[^A-Za-z0-9._+-]+")


def slug(text: Any, max_len: int = 80) -> str:
    """A file-name part made from text that came from a user or a file: letters, digits and ._+- only, no
    leading dot, at most max_len characters; where anything had to change, a short hash of the original
    keeps two different texts apart ("../../README" -> "README-<hash>", never a path)."""
    raw = str(text)
    out = SLUG_RE.sub("_", raw).lstrip("._-")[:max_len] or "unnamed"
    if out != raw:
        out = f"{out[:max_len - 9]}-{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return out


def inside(folder: str | os.PathLike[str], *parts: str) -> Path:
    """folder/parts..., refused in one sentence unless it stays inside folder (links resolved)."""
    base = Path(folder).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ArtTRTError(f"{'/'.join(parts)!r} would lead out of {folder}: refusing it")
    return path


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
