"""Fails (exit 1) when any named file's statement coverage, in the coverage data of the last run ($COVERAGE_FILE),
is below the threshold; prints each file's figure.

Usage:
    python tools/coverage_gate.py 90 utils/backends/tensorrt/runner.py utils/backends/tensorrt/build.py
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import coverage


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    threshold, files = float(args[0]), [str(Path(f).resolve()) for f in args[1:]]
    cov = coverage.Coverage()
    cov.load()
    below = []
    for f in files:
        _, statements, _, missing, _ = cov.analysis2(f)
        percent = 100.0 * (len(statements) - len(missing)) / len(statements) if statements else 100.0
        print(f"{Path(f).relative_to(Path.cwd()) if Path(f).is_relative_to(Path.cwd()) else f}: {percent:.1f} % of "
              f"{len(statements)} statements")
        if percent < threshold:
            below.append(f)
    if below:
        print(f"below {threshold:g} %: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
