"""Scanning a class-folder dataset: root/<class>/<image>, classes matched to model outputs by name (ImageNet
wnids through the shipped class table, or a --class_map file), never by folder sort order alone.

Usage:
    index = scan_dataset(Path("datasets/imagenet"))
    index.files[0], index.labels[0], index.fingerprint()
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from utils.core.errors import ArtTRTError
from utils.core.fileio import read_text
from utils.data.imagenet import imagenet_classes

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class DatasetIndex:
    """Every image of a class-folder tree with its class index (the model's output index)."""

    root: Path
    files: List[str]  # relative paths
    labels: List[int]
    class_names: List[str]  # folder name per model output index

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
    for folder in folders:
        if folder.name not in index:
            what = "the class map" if class_map else "ImageNet-1k wnids"
            raise ArtTRTError(f"class folder {folder.name!r} in {root} is not among {what}"
                              + ("" if class_map else " (pass --class_map FILE for other classes)"))
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                files.append(f"{folder.name}/{f.name}")
                labels.append(index[folder.name])
    if not files:
        raise ArtTRTError(f"dataset folder {root} holds class folders but no images")
    return DatasetIndex(root, files, labels, list(names))
