"""Where built artefacts live (weights/ unless ARTTRT_WEIGHTS_DIR says otherwise) and how a network's
weights are named in cache keys.

Usage:
    folder = weights_dir() / "onnx"
"""
from __future__ import annotations

import os
from pathlib import Path

from utils.core.fileio import file_sha256
from utils.models.networks import Network


def weights_dir() -> Path:
    return Path(os.environ.get("ARTTRT_WEIGHTS_DIR", Path(__file__).resolve().parent.parent.parent / "weights"))


def weights_id(net: Network) -> str:
    """What the network's weights are, for cache keys: a file hash, a packaged name, or random+seed."""
    if os.path.isfile(net.weights):
        return "sha256:" + file_sha256(net.weights)[:16]
    return net.weights
