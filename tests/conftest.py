"""Shared fixtures: real photos and weights that ship in packages, tiny datasets made per test."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("CI", "true")  # no progress bars in test output


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Every test writes caches and artefacts under its own session folder, never into the repo."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("ARTTRT_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("ARTTRT_WEIGHTS_DIR", str(base / "weights"))


@pytest.fixture(scope="session")
def foolbox_dir() -> Path:
    from utils.data.photos import foolbox_photo_dir

    return foolbox_photo_dir()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """foolbox's 20 labelled ImageNet photos in class folders, made by the format_dataset code."""
    from utils.data.photos import demo_dataset

    return demo_dataset(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def lite0():
    from utils.models.networks import load_network

    return load_network("efficientnet_lite0", pretrained=True)


def write_jpeg(path: Path, size=(64, 48), mode="RGB", seed=0, **kw) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", **kw)
    return path


@pytest.fixture
def tiny_dataset(tmp_path, foolbox_dir) -> Path:
    """Three classes, real photo crops, with one grayscale and one CMYK JPEG among them."""
    root = tmp_path / "tiny"
    photos = sorted(foolbox_dir.glob("imagenet_*.jpg"))[:6]
    wnids = ["n01440764", "n01443537", "n01484850"]
    for i, p in enumerate(photos):
        img = Image.open(p).convert("RGB")
        dst = root / wnids[i % 3] / f"img{i}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if i == 4:
            img = img.convert("L")
        if i == 5:
            img = img.convert("CMYK")
        img.save(dst, "JPEG", quality=90)
    return root


def squeeze(text: str) -> str:
    """A Markdown table with its column padding collapsed: `| a | b |` whatever the widths."""
    import re

    return re.sub(r" {2,}", " ", text)
