"""Keys from content: the one helper that turns what an artefact or a job was made from into a key.

Every cached artefact (ONNX export, precision conversion, calibration data, engine, the decoded dataset) and every
study job is keyed by `content_key(settings)`. In `settings`, a path (`pathlib.Path`) stands for its content, never
for its name: a file for the SHA-256 of its bytes and, for an ONNX file, of every external-data file it refers to;
a folder for every file under it (relative path, size, modification and status-change times, inode: what the
dataset cache keys a folder of images by). An object with a `content_key()` method (a loaded network: its
architecture and weights) stands for what that method returns. Everything else is a plain value (precision,
shapes, options). Replacing a file under the same name therefore gives a new key, and so a rebuild or a new
measurement; two files with the same content share one.

Usage:
    key = content_key({"onnx": Path("x.onnx"), "precision": "int8", "model": net})
    files = onnx_files(Path("x.onnx"))     # the file and its external data: what its size and hash cover
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, List, Mapping

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import cache_key, file_sha256, regular_file

if TYPE_CHECKING:
    import onnx
else:
    from utils.core.deps import onnx


def onnx_files(path: Path) -> List[Path]:
    """An ONNX file and the external-data files its tensors name (each once, in a stable order); one sentence
    for a reference that leads out of the model's folder or to a file that is not there."""

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise ArtTRTError(f"{path} is not a readable ONNX file: {first_line(err)}") from err
    tensors = getattr(onnx.external_data_helper, "_get_all_tensors", None)
    found = list(tensors(proto)) if tensors is not None else list(proto.graph.initializer)
    # external data is looked up beside the path as given, as ONNX Runtime and onnx do (not beside a link's target)
    base = Path(os.path.abspath(path)).parent
    out: List[Path] = [path]
    for t in found:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), None)
        if not location:
            raise ArtTRTError(f"{path}: tensor {t.name!r} is stored outside the file but names no location")
        target = base / location
        if base.resolve() not in target.resolve().parents:
            raise ArtTRTError(f"{path}: tensor {t.name!r} names external data {location!r} outside the model's "
                              "folder: refusing it")
        regular_file(target, f"external data of {path.name}")
        if target not in out:
            out.append(target)
    return out


def files_bytes(paths: List[Path]) -> int:
    """The bytes of all the files together (an ONNX model's size is its file plus its external data)."""
    return sum(os.stat(p).st_size for p in paths)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content; for an ONNX file, of the file and each external-data file it names."""
    regular_file(path)
    if path.suffix.lower() != ".onnx":
        return file_sha256(path)
    files = onnx_files(path)
    if len(files) == 1:
        return file_sha256(path)
    h = hashlib.sha256()
    for i, f in enumerate(files):
        h.update(f"{i if i == 0 else f.name}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def tree_digest(folder: Path) -> str:
    """Every regular file under folder by relative path, size, modification and status-change times and inode
    (a file replaced under its old name and mtime changes its ctime and inode); remembered for the process."""
    h = hashlib.sha256()
    seen = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):  # class folders may be links
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree: walked once
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            rel = os.fsencode(os.path.relpath(p, folder))
            h.update(rel + f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()


def content_of(value: Any) -> Any:
    """`value` with every path replaced by its content's digest and every object that has a content_key() by
    that key, recursively (mappings, sequences, dataclasses)."""
    if isinstance(value, PurePath):
        p = Path(value)
        if p.is_dir():
            return {"tree": tree_digest(p)}
        return {"sha256": file_digest(p)}
    if hasattr(value, "content_key") and callable(value.content_key):
        return {"content": value.content_key()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return content_of({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): content_of(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_of(v) for v in value]
    return value


def content_key(settings: Mapping[str, Any], length: int = 12) -> str:
    """The key of what settings describe, its paths and networks taken by content (see the module's doc)."""
    return cache_key(content_of(settings), length)
