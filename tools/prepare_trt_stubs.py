"""Copies tensorrt-stubs' .pyi files where mypy can read them, fixing the generator's syntax slips.

tensorrt-stubs (generated from the TensorRT 10.13 bindings) is installed apart, into .trt-stubs/
(pip install --no-deps --target .trt-stubs tensorrt-stubs==10.13.0.35.1): in site-packages its
tensorrt/ folder would import as an empty `tensorrt` package and fool ModelOpt into thinking TensorRT
is there. It has no py.typed marker, so mypy would skip it, and a few generated lines are not valid
Python. This copies the stubs to
.mypy_stubs/ (pyproject.toml's mypy_path) with only these mechanical fixes, none of which touches a
name or signature that ArtTRT uses:
  - a parameter named `in` (a keyword) in plugin methods -> `in_`;
  - a parameter without default after one with a default -> given `= ...`;
  - `import tensorrt_libs` (the native libraries, no stubs) -> removed.

Usage:
    python tools/prepare_trt_stubs.py
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / ".trt-stubs"
DST = ROOT / ".mypy_stubs"
INSTALL = "pip install --no-deps --target .trt-stubs tensorrt-stubs==10.13.0.35.1"


def fix(text: str) -> str:
    text = re.sub(r"([(,] ?)in: ", r"\1in_: ", text)
    text = re.sub(r"^import tensorrt_libs as tensorrt_libs\n", "", text, flags=re.M)

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


def main() -> int:
    shutil.rmtree(DST, ignore_errors=True)
    for pkg in ("tensorrt", "tensorrt_bindings"):
        src = SRC / pkg
        stubs = sorted(src.glob("*.pyi"))
        if not stubs:
            print(f"tensorrt-stubs is not installed ({src} has no .pyi): {INSTALL}", file=sys.stderr)
            return 2
        (DST / pkg).mkdir(parents=True)
        for f in stubs:
            (DST / pkg / f.name).write_text(fix(f.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
