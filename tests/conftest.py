"""Shared fixtures: real photos and weights that ship in packages, tiny datasets made per test."""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

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
    """main() without --verbose turns the libraries' tqdm bars off process-wide, and --quiet sets ArtTRT's loggers to
    warnings only (as each should in a run): undone after each test, so no test depends on which ran before it."""
    import logging

    import tqdm

    levels = {name: logging.getLogger(name).level for name in ("arttrt", "utils", "__main__")}

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    init = tqdm.tqdm.__dict__["__init__"]
    monkeypatch.setattr(tqdm.tqdm, "__init__", init.func if isinstance(init, functools.partialmethod) else init)
    monkeypatch.delattr(tqdm.tqdm, "_arttrt_init", raising=False)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)  # setLevel: the loggers' cached answers are dropped too


# The suite writes nothing into the checkout: ArtTRT's own write targets (weights/, datasets/, outputs/) are the same
# before and after, and no file of the kinds ArtTRT writes (exports, engines, sidecars, records, caches, partial
# files) appears anywhere else in it; or the session fails and names what changed. A source file someone edits while
# the tests run, or a folder of downloads beside them, is not the tests' doing and is not named.
_TREE = pytest.StashKey[dict]()
NOT_OURS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", "mutants", ".mypy_stubs", ".trt-bindings"}
WRITE_TARGETS = ("weights", "datasets", "outputs")
ARTEFACT_SUFFIXES = (".onnx", ".engine", ".part", ".npy", ".npz", ".trtcalib", ".cache", ".json", ".md", ".png",
                     ".html", ".csv", ".pt", ".pth")


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


def _the_tests_wrote(before, after):
    """What changed that the tests could have written: anything under ArtTRT's write targets, and new files of the
    kinds ArtTRT writes elsewhere."""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [k for k in changed if k.split(os.sep, 1)[0] in WRITE_TARGETS
            or (k not in before and k.endswith(ARTEFACT_SUFFIXES))]


def pytest_sessionstart(session):
    if (ROOT / ".git").exists():  # a checkout (mutmut's copies have none and write beside the tests)
        session.config.stash[_TREE] = _tree_state()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_TREE, None)
    if before is None:
        return
    changed = _the_tests_wrote(before, _tree_state())
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


FAKES = ROOT / "tests" / "fakes"
FAKE_GPU = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def load_fake_tensorrt() -> "Any":
    """The contract fake (tests/fakes/tensorrt) as the module `tensorrt`, loaded by its path: nothing is added to
    sys.path, and the caller puts it in sys.modules for as long as it needs it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tensorrt", FAKES / "tensorrt" / "__init__.py",
                                                  submodule_search_locations=[str(FAKES / "tensorrt")])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["tensorrt"]
        else:
            sys.modules["tensorrt"] = saved
    return module


@pytest.fixture(params=["11"])
def fake_tensorrt(request, monkeypatch):
    """ArtTRT's real TensorRT code against the contract fake (tests/fakes/tensorrt), flavour 11.4 by default or
    10.16 with `@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)`. What a CPU-only machine lacks is
    supplied here, and only here: the GPU's identity, the device the engine's buffers live on (the CPU) and CUDA's
    streams and graph capture (tests/fakes/fake_cudart.py). ArtTRT reaches the fake through its one TensorRT module
    (utils/backends/tensorrt/api.py); it is not put in sys.modules, so other libraries (ModelOpt imports tensorrt when
    it is there and uses more of it than ArtTRT does) see what a CPU machine has: no TensorRT."""
    import torch

    from utils.backends.tensorrt import api

    fake = load_fake_tensorrt()
    fake._select(request.param)
    monkeypatch.setattr(api, "_module", fake)
    monkeypatch.setattr(api, "gpu_identity", lambda index=None: dict(FAKE_GPU))
    monkeypatch.setattr(api, "run_device", lambda device="cuda": torch.device("cpu"))
    fake.fake_cudart.install(monkeypatch)
    yield fake


def tiny_onnx(path: Path, batch="batch", classes: int = 10, size: int = 8, outputs: int = 1, seed: int = 0) -> Path:
    """A real two-layer image classifier in ONNX (Conv 3->4, global average pool, Gemm 4->classes), input "input" of
    (batch, 3, size, size) float32, output "logits": small enough for a test, real enough for ONNX Runtime and the
    fake TensorRT's parser. batch: a dim_param name (dynamic) or an int (static)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((classes, 4)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc", transB=1)]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])]
    if outputs > 1:
        nodes.append(helper.make_node("Identity", ["f"], ["features"], name="features"))
        outs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 4]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [batch, 3, size, size])], outs,
                              initializer=[w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str = "64k", full: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at mnt (made here) for the block, then unmounted; full: written until the kernel
    says ENOSPC. Skips the test where this machine does not let it mount one (CI and the project's machines run
    as root, and can)."""
    mnt.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI and this project's machines run as root)")
    try:
        if full:
            with open(mnt / "filler", "wb", buffering=0) as f:
                with pytest.raises(OSError) as no_room:
                    while True:
                        f.write(bytes(1024))
                assert no_room.value.errno == errno.ENOSPC
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
