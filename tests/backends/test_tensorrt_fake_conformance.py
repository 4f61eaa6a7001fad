"""The contract fake of TensorRT (tests/fakes/tensorrt) offers no API the real TensorRT lacks: every public name,
class, method, property and parameter it offers is checked against the stubs that tools/make_trt_stubs.py generates
from NVIDIA's own compiled bindings (tensorrt-cu13-bindings 11.4 for the "11" flavour, tensorrt-cu12-bindings 10.16
for "10"). A method of the fake must take the parameters of one of the real overloads, by name and in order, and may
give a default only where the real one has one; a property must be a property there, settable only where the real one
is. Where this test fails, the fake is wrong, never the stubs."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FAKES = ROOT / "tests" / "fakes"
# The buffer protocol of IHostMemory is NVIDIA's documented interface (pyFoundationalTypesDoc.h: "This class exposes a
# buffer interface using Python's buffer protocol"); pybind11-stubgen cannot show it. Object housekeeping is not API.
NOT_API = {"__buffer__", "__module__", "__doc__", "__dict__", "__weakref__", "__qualname__", "__annotations__",
           "__slots__", "__new__", "__hash__", "__firstlineno__", "__static_attributes__", "__orig_bases__",
           "__parameters__"}


def _stub_tree(version: str) -> ast.Module:
    path = ROOT / ".mypy_stubs" / f"trt{version}" / "tensorrt_bindings" / "tensorrt.pyi"
    if not path.is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_trt_stubs.py")], check=True)
    return ast.parse(path.read_text())


Member = Dict[str, Any]  # kind: "method" | "property" | "attribute" | "class"; overloads; settable


def _params(fn: ast.FunctionDef) -> List[Tuple[str, bool]]:
    """(name, has a default) of each parameter after self, as the stub writes it."""
    args = fn.args.args[1:] if fn.args.args and fn.args.args[0].arg in ("self", "this") else fn.args.args
    defaults = [False] * (len(args) - len(fn.args.defaults)) + [True] * len(fn.args.defaults)
    return [(a.arg, d) for a, d in zip(args, defaults)]


def _members(cls: ast.ClassDef) -> Dict[str, Member]:
    out: Dict[str, Member] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            decos = [ast.unparse(d) for d in node.decorator_list]
            if "property" in decos:
                out.setdefault(node.name, {"kind": "property", "settable": False})
            elif any(d.endswith(".setter") for d in decos):
                out.setdefault(node.name, {"kind": "property"})["settable"] = True
            else:
                entry = out.setdefault(node.name, {"kind": "method", "overloads": []})
                entry.setdefault("overloads", []).append(_params(node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = {"kind": "attribute"}
        elif isinstance(node, ast.ClassDef):
            out[node.name] = {"kind": "class", "members": _members(node)}
    return out


def stub_api(version: str) -> Dict[str, Member]:
    """Module-level names of NVIDIA's bindings of `version`: classes with their members, functions with parameters."""
    api: Dict[str, Member] = {"__version__": {"kind": "attribute"}}
    for node in _stub_tree(version).body:
        if isinstance(node, ast.ClassDef):
            api[node.name] = {"kind": "class", "members": _members(node)}
        elif isinstance(node, ast.FunctionDef):
            api.setdefault(node.name, {"kind": "method", "overloads": []})["overloads"].append(_params(node))
    return api


_FAKE: List[Any] = []


def fake_module(flavour: str) -> Any:
    from tests.conftest import load_fake_tensorrt

    if not _FAKE:
        _FAKE.append(load_fake_tensorrt())
    fake = _FAKE[0]
    fake._select(flavour)
    return fake


def _signature(fn: Any) -> List[Tuple[str, bool]]:
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.default is not inspect.Parameter.empty) for p in params
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _match(fake_params: List[Tuple[str, bool]], overloads: List[List[Tuple[str, bool]]]) -> bool:
    """Every way the fake can be called is a way TensorRT can: for each number of leading arguments the fake accepts
    (its trailing parameters with defaults left out), some real overload takes those parameters by name and in order,
    with the rest of its own parameters defaulted. pybind11's positional-only names (arg0, arg1, ...) match any name."""
    def same(real_name: str, fake_name: str) -> bool:
        return real_name == fake_name or (real_name.startswith("arg") and real_name[3:].isdigit())

    forms = [len(fake_params)] + [k for k in range(len(fake_params)) if all(d for _, d in fake_params[k:])]
    for k in forms:
        given = fake_params[:k]
        if not any(len(real) >= k and all(same(r, f) for (r, _), (f, _) in zip(real, given))
                   and all(d for _, d in real[k:]) for real in overloads):
            return False
    return True


def _init_attributes(cls: type) -> Set[str]:
    """Public attributes a class's own methods assign on self (self.name = ...): instance API the fake offers."""
    names: Set[str] = set()
    try:
        tree = ast.parse(_dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return names
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" \
                        and not t.attr.startswith("_"):
                    names.add(t.attr)
    return names


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)


def check_class(name: str, cls: type, real: Dict[str, Member], fake: Any) -> List[str]:
    problems: List[str] = []
    own = [c for c in cls.__mro__ if getattr(c, "__module__", None) == fake.__name__]
    seen: Set[str] = set()
    for c in own:
        for attr, value in vars(c).items():
            if attr in seen or attr in NOT_API or (attr.startswith("_") and not attr.startswith("__")):
                continue
            seen.add(attr)
            if getattr(value, "_no_constructor", False):  # pybind11's "No constructor defined!": not callable API
                continue
            if attr.startswith("_") and attr.startswith("__") and attr not in real:
                problems.append(f"{name}.{attr}: TensorRT's {name} has no {attr}")
                continue
            if attr not in real:
                problems.append(f"{name}.{attr}: not in TensorRT's {name}")
                continue
            r = real[attr]
            if isinstance(value, property):
                if r["kind"] not in ("property", "attribute"):
                    problems.append(f"{name}.{attr}: a property here, a {r['kind']} in TensorRT")
                elif value.fset is not None and r["kind"] == "property" and not r.get("settable"):
                    problems.append(f"{name}.{attr}: settable here, read-only in TensorRT")
            elif inspect.isclass(value):
                if r["kind"] == "class":
                    problems += check_class(f"{name}.{attr}", value, r["members"], fake)
                elif r["kind"] != "attribute":
                    problems.append(f"{name}.{attr}: a class here, a {r['kind']} in TensorRT")
            elif callable(value) and not isinstance(value, cls.__class__):
                if r["kind"] != "method":
                    problems.append(f"{name}.{attr}: a method here, a {r['kind']} in TensorRT")
                elif not _match(_signature(value), r["overloads"]):
                    problems.append(f"{name}.{attr}{_signature(value)}: no TensorRT overload takes these "
                                    f"parameters: {r['overloads']}")
            elif r["kind"] not in ("attribute", "property"):  # an enum member or a class constant
                problems.append(f"{name}.{attr}: a value here, a {r['kind']} in TensorRT")
        for attr in _init_attributes(c):
            if attr not in seen and attr not in real:
                problems.append(f"{name}.{attr} (set in {c.__name__}): not in TensorRT's {name}")
            seen.add(attr)
    return problems


def conformance(flavour: str, version: str) -> List[str]:
    fake, real = fake_module(flavour), stub_api(version)
    problems: List[str] = []
    public = {n for n in vars(fake) if not n.startswith("_")}
    offered = [n for n in public if not inspect.ismodule(getattr(fake, n))
               and getattr(getattr(fake, n), "__module__", fake.__name__) == fake.__name__
               and (inspect.isclass(getattr(fake, n)) or inspect.isfunction(getattr(fake, n)))]
    problems += [f"{n}: public in the fake but not in its __all__" for n in offered if n not in fake.__all__]
    for n in fake.__all__:
        value = getattr(fake, n)
        if n not in real:
            problems.append(f"{n}: TensorRT {version} has no {n}")
        elif inspect.isclass(value):
            if real[n]["kind"] != "class":
                problems.append(f"{n}: a class here, a {real[n]['kind']} in TensorRT")
            else:
                problems += check_class(n, value, real[n]["members"], fake)
        elif inspect.isfunction(value):
            if real[n]["kind"] != "method" or not _match(_signature(value), real[n]["overloads"]):
                problems.append(f"{n}{_signature(value)}: not a TensorRT function with these parameters")
    return problems


@pytest.mark.parametrize("flavour, version", [("11", "11"), ("10", "10")])
def test_the_fake_offers_only_what_tensorrt_has(flavour, version):
    problems = conformance(flavour, version)
    assert problems == [], "\n".join(problems)


def test_the_conformance_check_catches_what_tensorrt_lacks():
    """The check itself: a method TensorRT does not have, a renamed parameter, a default TensorRT does not give, a
    settable read-only property and a name only 10.x has are each found (the check is not vacuous)."""
    fake = fake_module("11")
    real = stub_api("11")

    class ICudaEngine(fake.ICudaEngine):
        def execute_async_v4(self, stream_handle: int) -> bool:  # no such method
            return True

        def get_tensor_shape(self, tensor: str) -> Any:  # TensorRT calls it `name`
            return None

        def get_tensor_dtype(self, name: str = "input") -> Any:  # TensorRT gives no default
            return None

        @property
        def num_io_tensors(self) -> int:
            return 0

        @num_io_tensors.setter
        def num_io_tensors(self, v: int) -> None:  # read-only in TensorRT
            pass

    ICudaEngine.__module__ = fake.__name__
    problems = check_class("ICudaEngine", ICudaEngine, real["ICudaEngine"]["members"], fake)
    text = "\n".join(problems)
    for expected in ("ICudaEngine.execute_async_v4: not in TensorRT's ICudaEngine",
                     "ICudaEngine.get_tensor_shape[('tensor', False)]",
                     "ICudaEngine.get_tensor_dtype[('name', True)]",
                     "ICudaEngine.num_io_tensors: settable here, read-only in TensorRT"):
        assert expected in text, text
    assert "IInt8EntropyCalibrator2" in stub_api("10") and "IInt8EntropyCalibrator2" not in real
    ten = fake_module("10")
    assert "IInt8EntropyCalibrator2" in ten.__all__ and "IInt8EntropyCalibrator2" not in real


@pytest.mark.parametrize("flavour, version", [("11", "11"), ("10", "10")])
def test_the_fakes_enum_members_have_tensorrts_values(flavour, version):
    """The stubs carry no enum values, so the real bindings (imported through stand-in libraries) give them: a value
    that differs would let code that builds a flag by hand (1 << 1 for STRONGLY_TYPED: 0 in 11, 1 in 10) pass CI."""
    import enum
    import json

    from tests.backends.test_tensorrt_names import bindings

    fake = fake_module(flavour)
    enums = {n: getattr(fake, n) for n in fake.__all__ if inspect.isclass(getattr(fake, n))
             and issubclass(getattr(fake, n), enum.Enum)}
    enums["ILogger.Severity"] = fake.ILogger.Severity
    code = ("import json, tensorrt_bindings as t\nout = {}\n"
            f"for name in {sorted(enums)!r}:\n"
            "    E = t\n    for p in name.split('.'): E = getattr(E, p)\n"
            "    out[name] = {k: int(v) for k, v in E.__members__.items()}\nprint(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code], env=bindings(version), capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    real = json.loads(r.stdout.strip().splitlines()[-1])
    wrong = [f"{name}.{m.name} = {m.value}, TensorRT {version}: {real[name].get(m.name)}"
             for name, E in enums.items() for m in E if real[name].get(m.name) != m.value]
    assert wrong == [], wrong
    assert len(enums) >= 9
