"""Every TensorRT name ArtTRT touches, checked against NVIDIA's own compiled bindings (11.4 and 10.x, imported
through stand-in libraries by tools/make_trt_stubs.py): the strongly typed modules against both versions, the
weak-typing module against 10.x, and ArtTRT's own feature detection run on the real modules. No engine is built:
this is a name check against the module TensorRT users import (mypy checks the methods and signatures)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TRT = ROOT / "utils" / "backends" / "tensorrt"


def bindings(version: str) -> Dict[str, str]:
    """The environment that imports the real tensorrt_bindings of `version` (made on demand)."""
    site, libs = ROOT / ".trt-bindings" / f"trt{version}" / "site", ROOT / ".trt-bindings" / f"trt{version}" / "libs"
    if not (site / "tensorrt_bindings").is_dir():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_trt_stubs.py")], check=True)
    return {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}


def names_used(path: Path) -> Tuple[Set[str], Set[str]]:
    """(names reached as trt.A.B, names only tested with hasattr(trt.A, "B")) in one module."""
    tree = ast.parse(path.read_text())
    used: Set[str] = set()
    optional: Set[str] = set()

    def chain(node: ast.AST) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        return ".".join(reversed(parts)) if isinstance(node, ast.Name) and node.id == "trt" else ""

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "parent", None), ast.Attribute):
            c = chain(node)
            if c:
                used.add(c)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            base = chain(node.args[0]) if isinstance(node.args[0], ast.Attribute) else \
                ("" if isinstance(node.args[0], ast.Name) and node.args[0].id == "trt" else None)
            if base is not None:
                optional.add(f"{base}.{node.args[1].value}".lstrip("."))
    # every prefix of a chain is a name too (trt.A.B uses trt.A)
    used |= {c.rsplit(".", k)[0] for c in used for k in range(1, c.count(".") + 1)}
    return used, optional


def resolve(version: str, names: Set[str], extra: str = "") -> Dict[str, object]:
    code = ("import json, tensorrt_bindings as t\n"
            "def has(n):\n    o = t\n    for p in n.split('.'):\n        if not hasattr(o, p): return False\n"
            "        o = getattr(o, p)\n    return True\n"
            f"names = {sorted(names)!r}\n"
            "out = {'version': t.__version__, 'missing': [n for n in names if not has(n)]}\n" + extra +
            "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code], env=bindings(version), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


STRONG = ["__init__.py", "api.py", "build.py", "engine.py", "runner.py", "engine_layers.py"]


@pytest.mark.parametrize("version, expect", [("11", "11.4"), ("10", "10.")])
def test_the_strongly_typed_route_uses_only_names_both_versions_have(version, expect):
    used: Set[str] = set()
    optional: Set[str] = set()
    for f in STRONG:
        u, o = names_used(TRT / f)
        used |= u
        optional |= o
    assert {"Builder", "OnnxParser", "Runtime", "Dims", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
            "MemoryPoolType.WORKSPACE", "TensorIOMode.INPUT", "DataType.BF16", "ILogger.Severity.ERROR"} <= used
    got = resolve(version, used | optional)
    assert str(got["version"]).startswith(expect)
    assert sorted(set(got["missing"]) - optional) == [], f"TensorRT {got['version']} lacks {got['missing']}"


@pytest.mark.slow
def test_weak_typing_is_tensorrt_10_only_and_detected_as_such():
    from utils.backends.tensorrt import weak

    used, optional = names_used(TRT / "weak.py")
    used |= {f"BuilderFlag.{f}" for f in weak.FLAGS.values()} | set(weak.CALIBRATORS.values())
    assert {"BuilderFlag.INT8", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IInt8Calibrator"} <= used
    probe = ("import sys; sys.path.insert(0, '.')\nfrom utils.backends.tensorrt import api, weak\napi._module = t\n"
             "out['has_weak_typing'] = weak.has_weak_typing()\n"
             "try:\n    weak.require('int8'); out['require'] = 'ok'\n"
             "except Exception as e:\n    out['require'] = str(e)\n")
    ten, eleven = resolve("10", used | optional, probe), resolve("11", used | optional, probe)
    assert ten["missing"] == [] and ten["has_weak_typing"] is True and ten["require"] == "ok"
    # TensorRT 11 removed the precision flags and the calibrators: weak.py's names are gone, ArtTRT sees it
    assert {"BuilderFlag.INT8", "BuilderFlag.FP16", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator"} <= \
        set(eleven["missing"])
    assert eleven["has_weak_typing"] is False and "removed in TensorRT 11" in str(eleven["require"])


@pytest.mark.slow
def test_arttrt_finds_the_bindings_module_under_its_own_name():
    """Installed without the `tensorrt` meta package, the module is tensorrt_bindings: load_tensorrt finds it."""
    code = ("import sys; sys.path.insert(0, '.')\nfrom utils.backends.tensorrt import api\n"
            "print(api.load_tensorrt())\n")
    r = subprocess.run([sys.executable, "-c", code], env=bindings("11"), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "('tensorrt_bindings', '11.4.0.106')" in r.stdout, r.stderr
