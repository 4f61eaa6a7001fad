"""Scanning a class-folder dataset: root/<class>/<image>, classes matched to model outputs by name (ImageNet
wnids through the shipped class table, or a --class_map file), never by folder sort order alone.

Usage:
    index = scan_dataset(Path("datasets/imagenet"))
    index.files[0], index.labels[0], index.fingerprint()
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from PIL import Image

from utils.core.errors import ArtTRTError
from utils.core.fileio import read_text
from utils.data.imagenet import imagenet_classes

log = logging.getLogger(__name__)

# Pillow's handlers that name a format but cannot decode it here (stubs, or an outside program: Ghostscript)
NOT_DECODED = {".bufr", ".grib", ".h5", ".hdf", ".eps", ".ps", ".emf", ".wmf", ".mpeg", ".mpg"}


@functools.lru_cache(maxsize=None)
def image_extensions() -> frozenset:
    """Every file extension of a format Pillow opens and decodes here (.jpg, .png, .tif, .gif, .jfif, .webp, ...);
    asked on first use, not at import (Image.init loads every plugin: 30 ms that main.py --help need not pay)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and ext not in NOT_DECODED)


SHOWN_UNUSED = 10  # the files not used named in the warning (all of them are in DatasetIndex.unused)


@dataclass
class DatasetIndex:
    """Every image of a class-folder tree with its class index (the model's output index)."""

    root: Path
    files: List[str]  # relative paths
    labels: List[int]
    class_names: List[str]  # folder name per model output index
    unused: List[Tuple[str, str]] = field(default_factory=list)  # (relative path, why it is not used)

    def fingerprint(self) -> str:
        """Hash of relative paths, sizes, modification and status-change times and inodes: changes when the
        dataset does, also when a file is replaced by one of the same size with its old mtime restored
        (touch -r cannot set ctime) or made readable again (chmod changes ctime)."""
        h = hashlib.sha256()
        for rel, label in zip(self.files, self.labels):
            st = (self.root / rel).stat()  # a file name that is not UTF-8 is hashed as the bytes it is
            h.update(os.fsencode(rel) + f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{label}\n".encode())
        return h.hexdigest()


def read_class_map(path: Path) -> List[str]:
    """A class map file: one folder name per line, in the model's output order."""
    names = [ln.strip() for ln in read_text(path, "class map file").splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        raise ArtTRTError(f"class map file {path} names a class twice")
    return names


def scan_dataset(root: Path, num_classes: int = 1000, class_map: Optional[Path] = None) -> DatasetIndex:
    """Lists root/<class>/<image>, matching class folders to model outputs by name.

    Without a class map the folders must be ImageNet-1k wnids and the network must have 1000 outputs.
    """
    if not root.is_dir():
        raise ArtTRTError(f"dataset folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ArtTRTError(f"dataset folder {root} holds no class folders (expected {root}/<wnid>/<image>; "
                          "format_dataset.py makes that layout)")
    if class_map is not None:
        names = read_class_map(class_map)
        index = {n: i for i, n in enumerate(names)}
        if len(names) != num_classes:
            raise ArtTRTError(f"class map {class_map} names {len(names)} classes but the network has "
                              f"{num_classes} outputs")
    else:
        table = imagenet_classes()
        if num_classes != len(table):
            raise ArtTRTError(f"the network has {num_classes} outputs, not the 1000 ImageNet classes: "
                              "pass --class_map FILE naming the class folders in output order")
        names, index = table.wnids, table.index
    files: List[str] = []
    labels: List[int] = []
    unused: List[Tuple[str, str]] = [(p.name, "not in a class folder") for p in sorted(root.iterdir())
                                     if p.is_file() and not p.name.startswith(".")]
    for folder in folders:
        if folder.name not in index:
            what = "the class map" if class_map else "ImageNet-1k wnids"
            raise ArtTRTError(f"class folder {folder.name!r} in {root} is not among {what}"
                              + ("" if class_map else " (pass --class_map FILE for other classes)"))
        for f in sorted(folder.iterdir()):
            rel = f"{folder.name}/{f.name}"
            if f.name.startswith("."):
                continue  # hidden: a system's own (.DS_Store), never an image of the set
            if f.is_dir():
                inside = sum(len(fs) for _, _, fs in os.walk(f))
                unused.append((rel + "/", f"a folder inside class folder {folder.name} ({inside} files): images are "
                                          "read one level down only, root/<class>/<image>"))
            elif not f.is_file():
                unused.append((rel, "not a regular file"))
            elif f.suffix.lower() in image_extensions():
                files.append(rel)
                labels.append(index[folder.name])
            else:
                unused.append((rel, f"{f.suffix or 'no extension'}: not an image format Pillow opens"))
    if not files:
        raise ArtTRTError(f"dataset folder {root} holds class folders but no images"
                          + (f" ({unused[0][0]}: {unused[0][1]})" if unused else ""))
    if unused:  # every file of the folder is used or named here
        shown = "; ".join(f"{rel} ({why})" for rel, why in unused[:SHOWN_UNUSED])
        more = f"; and {len(unused) - SHOWN_UNUSED} more" if len(unused) > SHOWN_UNUSED else ""
        log.warning("%s: %d file%s not used: %s%s", root, len(unused), "s" if len(unused) != 1 else "", shown, more)
    return DatasetIndex(root, files, labels, list(names), unused)
