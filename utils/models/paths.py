"""Where built artefacts live (weights/ unless ARTTRT_WEIGHTS_DIR says otherwise) and how a network's
weights are named in cache keys.

Usage:
    folder = weights_dir() / "onnx"
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networks.py asks weights_dir() where published YOLO weights go: no import circle
    from utils.models.networks import Network


def weights_dir() -> Path:
    return Path(os.environ.get("ARTTRT_WEIGHTS_DIR", Path(__file__).resolve().parent.parent.parent / "weights"))


def weights_id(net: "Network") -> str:
    """The network by content (architecture and weights, utils.models.networks.Network.content_key), for records,
    job keys and the tables' grouping: never its name or the path of its weights."""
    return "model:" + net.content_key()[:20]
