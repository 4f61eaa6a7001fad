"""The 1000 ImageNet-1k classes in torchvision's class-index order, read from the files timm ships (a
dependency already: `timm/data/_info/imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`, the data behind
timm's ImageNetInfo), found without importing timm, which would cost seconds.

Folders and model outputs are matched by wnid through this table, never by folder sort order alone.

Usage:
    from utils.data.imagenet import imagenet_classes
    imagenet_classes().wnids[0] == "n01440764"; imagenet_classes().index["n01440764"] == 0
"""
from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from utils.core.errors import ArtTRTError

WNID_RE = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassTable:
    """Class index -> wnid and readable name."""

    wnids: List[str]
    names: List[str]
    index: Dict[str, int] = field(repr=False)

    def __len__(self) -> int:
        return len(self.wnids)


def timm_info_folder() -> Path:
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ArtTRTError("the ImageNet class table ships with timm: pip install timm")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> ClassTable:
    """The table, checked whole (1000 distinct wnids, each with a name)."""
    folder = timm_info_folder()
    wnids = (folder / "imagenet_synsets.txt").read_text().split()
    lemma = dict(line.split("\t", 1) for line in (folder / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                 if "\t" in line)
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or not all(WNID_RE.match(w) and w in lemma for w in wnids):
        raise ArtTRTError(f"timm's ImageNet class files in {folder} are not the 1000 ImageNet-1k classes")
    names = [lemma[w].split(",")[0].strip() for w in wnids]  # the first lemma: "tench", not "tench, Tinca tinca"
    return ClassTable(wnids, names, {w: i for i, w in enumerate(wnids)})


def readable_class_names(folders: Optional[Sequence[str]]) -> Optional[List[str]]:
    """A dataset's class folder names as people read them: an ImageNet wnid becomes its first lemma ("tench"), any
    other name stays as it is; None for unlabelled data."""
    if not folders:
        return None
    try:
        table = imagenet_classes()
        lemma = dict(zip(table.wnids, table.names))
    except ArtTRTError:  # timm's class files missing: the folder names themselves
        lemma = {}
    return [lemma.get(f, f) for f in folders]
