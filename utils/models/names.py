"""Which network names ArtTRT can build, answered without importing PyTorch: torchvision's classifiers are read from
its source files (each is a function decorated @register_model() in torchvision/models/*.py, the list
torchvision.models.list_models(module=torchvision.models) returns once imported, 1.5 s later), so a mistyped
--network is refused with the closest names before any model is built.

Usage:
    check_network_name("resnet81")   # ArtTRTError: unknown network 'resnet81': did you mean resnet18, resnet101?
"""
from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from pathlib import Path
from typing import List

from utils.core.errors import ArtTRTError
from utils.models.timm_networks import is_timm

OTHERS = ("efficientnet_lite0",)
KINDS = ("a torchvision classifier name (e.g. resnet50, mobilenet_v2), timm:NAME (any timm classifier), "
         "efficientnet_lite0, or a YOLOv8-cls .pt/.yaml file")
_REGISTERED = re.compile(r"@register_model\(\)(?:(?!\ndef ).)*?\ndef (\w+)\(", re.S)


@functools.lru_cache(maxsize=1)
def torchvision_classifiers() -> List[str]:
    """torchvision's classification models, from its source files (empty where torchvision is not installed)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return []
    names = set()
    for f in sorted((Path(spec.origin).parent / "models").glob("*.py")):
        names.update(_REGISTERED.findall(f.read_text(encoding="utf-8", errors="replace")))
    return sorted(names)


LEGACY_YOLO = ("yolo", "yolov8", "yolov8-cls")  # the original's --network yolo --weights FILE.pt


def is_yolo(name: str) -> bool:
    """A YOLOv8-cls network: a .pt/.yaml file or an Ultralytics model name (load_network builds it by Ultralytics)."""
    return name.endswith((".pt", ".yaml", ".yml")) or name.startswith("yolov8")


def is_built_elsewhere(name: str) -> bool:
    """Names whose check belongs to their own builder: timm's (timm's list), YOLO files and names."""
    return is_timm(name) or is_yolo(name) or name.lower() in LEGACY_YOLO


def unknown_network(name: str) -> ArtTRTError:
    """The one sentence for a name nothing builds, with the closest known names."""
    near = difflib.get_close_matches(name, [*torchvision_classifiers(), *OTHERS], n=3, cutoff=0.6)
    return ArtTRTError(f"unknown network {name!r}: " + (f"did you mean {', '.join(near)}? Use " if near else "use ")
                       + KINDS)


def check_network_name(name: str) -> None:
    """Refuses a name that is no torchvision classifier, efficientnet_lite0, timm:NAME or YOLO file, at once."""
    if is_built_elsewhere(name) or name in OTHERS:
        return
    known = torchvision_classifiers()
    if known and name not in known:
        raise unknown_network(name)
