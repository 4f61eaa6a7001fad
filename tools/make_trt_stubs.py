"""Type stubs made from NVIDIA's own compiled TensorRT bindings, for 11.x, the newest 10.x and the oldest 10.x wheel.

TensorRT cannot run on the machines ArtTRT is built and tested on, but its Python bindings are real wheels on
PyPI (tensorrt-cu13-bindings 11.4, tensorrt-cu12-bindings 10.x; about 1.3 MB each, the native libraries left
out). The compiled module imports once libnvinfer.so.N, libnvonnxparser.so.N and libnvinfer_plugin.so.N
resolve: this script compiles stand-in shared libraries that export the entry points the module links against
(read from the module with `nm -D --undefined-only`; none of them is ever called), imports the real module
with them, and runs pybind11-stubgen on it. The stubs are then NVIDIA's API as it is, with only two mechanical
fixes of the generator's slips (a parameter named `in`, a parameter without a default after one with a
default), neither of which touches a name or a type.

Writes, per version V in VERSIONS (11, 10, 10.8):
    .mypy_stubs/trtV/tensorrt_bindings/*.pyi   the generated stubs
    .mypy_stubs/trtV/tensorrt/__init__.pyi     `import tensorrt` as ArtTRT writes it
    .trt-bindings/trtV/site/                   the real module, importable with the stand-in libraries
    .trt-bindings/trtV/libs/                   the stand-in libraries (LD_LIBRARY_PATH)
Reuses what is there (delete the folders to redo it).

Usage:
    python tools/make_trt_stubs.py          # then: MYPYPATH=.mypy_stubs/trt11 python -m mypy ...
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / ".mypy_stubs"
BINDINGS = ROOT / ".trt-bindings"
WHEELS = ROOT / ".trt-bindings" / "wheels"
VERSIONS: Dict[str, str] = {"11": "tensorrt-cu13-bindings==11.4.0.106", "10": "tensorrt-cu12-bindings==10.16.1.11",
                             "10.8": "tensorrt-cu12-bindings==10.8.0.43"}  # the oldest 10.x wheel on PyPI (see below)
# The entry points of TensorRT's libraries that the bindings link against (C linkage). A new one in a later
# release makes this script stop and say which, rather than stub something it does not know.
ENTRY_POINTS = {
    "createInferBuilder_INTERNAL": "void *{}(void *a, int b) {{ return 0; }}",
    "createInferRefitter_INTERNAL": "void *{}(void *a, void *b, int c) {{ return 0; }}",
    "createInferRuntime_INTERNAL": "void *{}(void *a, int b) {{ return 0; }}",
    "createNvOnnxParserRefitter_INTERNAL": "void *{}(void *a, void *b, int c) {{ return 0; }}",
    "createNvOnnxParser_INTERNAL": "void *{}(void *a, void *b, int c) {{ return 0; }}",
    "getBuilderPluginRegistry": "void *{}(int a) {{ return 0; }}",
    "getNvOnnxParserVersion": "int {}(void) {{ return 0; }}",
    "getPluginRegistry": "void *{}(void) {{ return 0; }}",
    "initLibNvInferPlugins": "int {}(void *a, const char *b) {{ return 0; }}",
}


def fix(text: str) -> str:
    """The generator's two syntax slips, fixed mechanically (no name or type changes)."""
    text = re.sub(r"([(,] ?)in: ", r"\1in_: ", text)

    def defaults(m: re.Match[str]) -> str:
        params = m.group(2).split(", ")
        seen_default = False
        for i, p in enumerate(params):
            if "=" in p:
                seen_default = True
            elif seen_default and ":" in p and not p.startswith("*"):
                params[i] = p + " = ..."
        return m.group(1) + ", ".join(params) + m.group(3)

    return re.sub(r"^(\s*def \w+\()(.*)(\) ->.*)$", defaults, text, flags=re.M)


def run(cmd: List[str], **kw: object) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return str(r.stdout)


def wheel(requirement: str) -> Path:
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(WHEELS.glob(f"{name}-{requirement.split('==')[1]}-*.whl"))
    if not found:
        WHEELS.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
             "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "-d", str(WHEELS), requirement])
        found = sorted(WHEELS.glob(f"{name}-*.whl"))
    return found[-1]


def stand_in_libraries(module: Path, libs: Path) -> Dict[str, str]:
    """Compiles libnvinfer/libnvonnxparser/libnvinfer_plugin stand-ins exporting what the module links against."""
    needed = re.findall(r"\[(lib(?:nvinfer|nvonnxparser|nvinfer_plugin)\.so\.\d+)\]", run(["readelf", "-d", str(module)]))
    undefined = {line.split()[-1] for line in run(["nm", "-D", "--undefined-only", str(module)]).splitlines()
                 if line.split() and "@" not in line.split()[-1]}
    ours = {s for s in undefined if re.search(r"Infer|Parser|Plugin", s)}
    unknown = ours - set(ENTRY_POINTS)
    if unknown:
        raise SystemExit(f"{module} links against TensorRT entry points this script does not know: "
                         f"{sorted(unknown)}; add them to ENTRY_POINTS")
    libs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "standin.c"
        src.write_text("\n".join(ENTRY_POINTS[s].format(s) for s in sorted(ours)) + "\n")
        for lib in needed:
            run(["gcc", "-shared", "-fPIC", "-o", str(libs / lib), f"-Wl,-soname,{lib}", str(src)])
    return {"libraries": ", ".join(needed), "entry_points": ", ".join(sorted(ours))}


def make(version: str, requirement: str) -> None:
    out, site, libs = STUBS / f"trt{version}", BINDINGS / f"trt{version}" / "site", BINDINGS / f"trt{version}" / "libs"
    if (out / "tensorrt" / "__init__.pyi").is_file() and (site / "tensorrt_bindings").is_dir() and libs.is_dir():
        return
    shutil.rmtree(site, ignore_errors=True)
    with zipfile.ZipFile(wheel(requirement)) as z:
        z.extractall(site)
    module = next((site / "tensorrt_bindings").glob("tensorrt*.so"))
    facts = stand_in_libraries(module, libs)
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": str(site)}
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "pybind11_stubgen", "tensorrt_bindings", "-o", tmp], env=env)
        shutil.rmtree(out, ignore_errors=True)
        (out / "tensorrt_bindings").mkdir(parents=True)
        for f in sorted((Path(tmp) / "tensorrt_bindings").glob("*.pyi")):
            (out / "tensorrt_bindings" / f.name).write_text(fix(f.read_text()))
    (out / "tensorrt").mkdir()
    (out / "tensorrt" / "__init__.pyi").write_text(
        f"# `import tensorrt` as ArtTRT writes it: NVIDIA's {requirement} bindings, stubbed by tools/make_trt_stubs.py\n"
        "from tensorrt_bindings.tensorrt import *\n__version__: str\n")
    print(f"TensorRT {version}: stubs from {requirement} ({facts['libraries']} stood in for: {facts['entry_points']})")


def main() -> int:
    for version, requirement in VERSIONS.items():
        make(version, requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
