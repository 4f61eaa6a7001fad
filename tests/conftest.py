"""Shared fixtures: real photos and weights that ship in packages, tiny datasets made per test."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("CI", "true")  # no progress bars in test output
# Hypothesis keeps its example database and Unicode tables outside the checkout (the suite writes nothing there)
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(__import__("tempfile").gettempdir(),
                                                                   "arttrt-hypothesis"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory):
    """Every test and fixture writes caches, artefacts and the demo photos under the session's temporary folder,
    never into the repo; set for the whole session, since module- and session-scoped fixtures are made before
    any test's own fixtures (a module fixture exporting ONNX once wrote into weights/ of a fresh checkout)."""
    base = tmp_path_factory.getbasetemp()
    mp = pytest.MonkeyPatch()
    for name, sub in (("ARTTRT_CACHE_DIR", "cache"), ("ARTTRT_WEIGHTS_DIR", "weights"),
                      ("ARTTRT_DATASETS_DIR", "datasets")):
        mp.setenv(name, str(base / sub))
    mp.delenv("COLUMNS", raising=False)  # printed tables keep every column (a test of the narrowing sets it)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _quiet_does_not_leak(monkeypatch):
    """main() without --verbose turns the libraries' tqdm bars off process-wide (as it should in a run): undone
    after each test."""
    import tqdm

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    init = tqdm.tqdm.__dict__["__init__"]
    monkeypatch.setattr(tqdm.tqdm, "__init__", init.func if isinstance(init, functools.partialmethod) else init)
    monkeypatch.delattr(tqdm.tqdm, "_arttrt_init", raising=False)


# The suite writes nothing into the checkout: every file under it (ignored ones too: weights/, datasets/,
# outputs/) is the same before and after, or the session fails and names what changed. Folders the tools
# themselves keep (Python's bytecode, pytest's, mypy's and its TensorRT stubs, mutmut's copies) are not the tests' doing.
_TREE = pytest.StashKey[dict]()
NOT_OURS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", "mutants", ".mypy_stubs", ".trt-bindings"}


def _tree_state():
    state = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in NOT_OURS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            state[os.path.relpath(path, ROOT)] = (st.st_size, st.st_mtime_ns)
    return state


def pytest_sessionstart(session):
    if (ROOT / ".git").exists():  # a checkout (mutmut's copies have none and write beside the tests)
        session.config.stash[_TREE] = _tree_state()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_TREE, None)
    if before is None:
        return
    after = _tree_state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = f"the tests wrote into the checkout ({len(changed)} files): " + ", ".join(changed[:20])
        reporter.write_line(text, red=True) if reporter else print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED



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


def tree_snapshot(*paths):
    """Every file under paths (or the file itself) by relative path, size, bytes' hash and mode: what a user owns."""
    import hashlib
    import stat as st_

    out = {}
    for base in map(Path, paths):
        items = [base] if not base.is_dir() else sorted(p for p in base.rglob("*"))
        for p in items:
            s = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if st_.S_ISREG(s.st_mode) else None
            out[str(p)] = (s.st_mode, s.st_size, digest)
    return out


class unchanged:
    """with unchanged(folder, file): ...: fails if anything under them was added, removed or changed (a user's
    inputs: datasets, weights, class maps, ONNX files, the folder beside an output)."""

    def __init__(self, *paths):
        self.paths = paths

    def __enter__(self):
        self.before = tree_snapshot(*self.paths)
        return self

    def __exit__(self, *exc):
        after = tree_snapshot(*self.paths)
        changed = sorted(k for k in self.before.keys() | after.keys() if self.before.get(k) != after.get(k))
        assert not changed, f"a user's files changed: {changed[:10]}"
        return False
