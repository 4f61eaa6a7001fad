"""Real labelled ImageNet photos that ship in a package (foolbox's 20), put into class folders by the same
code as format_dataset.py: the built-in demo's and the tests' dataset.

Usage:
    root = demo_dataset(Path("datasets/demo"))
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from utils.core.errors import ArtTRTError
from utils.data.format import apply_placement, plan_placement


def foolbox_photo_dir() -> Path:
    """foolbox's data folder (found, not imported: the package only carries the photos for us)."""

    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise ArtTRTError("the demo photos ship with foolbox: pip install foolbox==3.3.4")
    folder = Path(spec.origin).parent / "data"
    if not any(folder.glob("imagenet_*.jpg")):
        raise ArtTRTError(f"foolbox's ImageNet photos are not in {folder}: reinstall foolbox==3.3.4")
    return folder


def demo_dataset(dst: Path) -> Path:
    """Copies foolbox's imagenet_<i>_<label>.jpg photos into dst/<wnid>/ (a re-run changes nothing)."""

    src = foolbox_photo_dir()
    # foolbox's data folder also holds CIFAR/MNIST images: plan over the ImageNet photos only.
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(src.glob("imagenet_*.jpg")):
            shutil.copy2(f, Path(tmp) / f.name)
        plan = plan_placement(Path(tmp))
        summary = apply_placement(plan, dst, mode="copy")
    if summary.unplaced:
        raise ArtTRTError(f"could not place demo photos: {summary.unplaced[:3]}")
    return dst
