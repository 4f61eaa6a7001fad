"""The 1000 ImageNet-1k classes in torchvision's class-index order, shipped as data in the repo.

Folders and model outputs are matched by wnid through this table, never by folder sort order alone.
The table was taken from timm's `timm/data/_info/imagenet_synsets.txt` (same order as torchvision)
and `imagenet_synset_to_lemma.txt`.

Usage:
    from utils.data.imagenet import imagenet_classes
    imagenet_classes().wnids[0] == "n01440764"; imagenet_classes().index["n01440764"] == 0
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

DATA_FILE = Path(__file__).with_name("imagenet_classes.tsv")
WNID_RE = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassTable:
    """Class index -> wnid and readable name."""

    wnids: List[str]
    names: List[str]
    index: Dict[str, int] = field(repr=False)

    def __len__(self) -> int:
        return len(self.wnids)


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> ClassTable:
    """Loads the shipped table (index<TAB>wnid<TAB>name), checking it is whole."""
    wnids: List[str] = []
    names: List[str] = []
    for i, line in enumerate(DATA_FILE.read_text().splitlines()):
        idx, wnid, name = line.split("\t")
        assert int(idx) == i and WNID_RE.match(wnid), f"corrupt class table line {i}"
        wnids.append(wnid)
        names.append(name)
    assert len(wnids) == 1000 and len(set(wnids)) == 1000, "class table must hold 1000 distinct wnids"
    return ClassTable(wnids, names, {w: i for i, w in enumerate(wnids)})

