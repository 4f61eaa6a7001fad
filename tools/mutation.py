"""Mutation testing of the modules that make ArtTRT's figures, with mutmut (https://github.com/boxed/mutmut).

mutmut changes one thing at a time in a module (an operator, a constant, an argument, a return value) and runs
the tests that reach the changed function; a change no test notices ("survived") is a figure nothing guards.
Each module runs in its own copy of the checkout under --workdir (the checkout itself is never touched), with
the test files listed for it below. A survivor is either killed by a new test or listed in docs/mutation.md as
equivalent (the change cannot alter behaviour), with the reason; listed ones do not count against the module.

Usage (about 45 minutes for every module on a 2-core machine; not part of CI):
    pip install mutmut==3.8.1
    python tools/mutation.py                      # every module: kill rate per module, survivors listed
    python tools/mutation.py stats compare --show # some modules, with each survivor's diff
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
import fnmatch
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from checkout import checkout_copy  # noqa: E402
from utils.report.doc import table as markdown_table  # noqa: E402

EQUIVALENT_DOC = ROOT / "docs" / "mutation.md"
# name: (the files mutated, the functions mutated in them (mutmut's names, fnmatch patterns; None: all),
# the tests that guard them). Functions are named where a file also holds code that makes no figure.
Module = Tuple[List[str], Optional[List[str]], List[str]]
MODULES: Dict[str, Module] = {
    "statistics": (["utils/measure/stats.py"], None, ["tests/measure/test_stats.py"]),
    "timing and accuracy": (["utils/measure/timing.py"], None, ["tests/measure/test_timing.py"]),
    # the loop's steps that hold GPU paths (CUDA events, streams, the page-locked feed, the on-device checksum)
    # against the GPU tests: run on a CUDA machine (on the CPU those tests skip)
    "timing on a GPU": (["utils/measure/timing.py"],
                        [f"utils.measure.timing.xǁ{f}__*" for f in (
                            "_Timerǁ__init_", "_Timerǁrecord", "_Timerǁms_until", "_Loopǁ_feed", "_Loopǁ_verification",
                            "_Loopǁcopy_in", "_Loopǁrun_batch", "_Loopǁfinish", "_Loopǁcheck_reads")],
                        ["tests/measure/test_timing_gpu.py"]),
    "energy": (["utils/measure/energy.py"], None, ["tests/measure/test_energy.py"]),
    "comparison": (["utils/measure/compare.py"], None, ["tests/measure/test_compare.py"]),
    "cache key and fingerprint": (
        ["utils/data/scan.py", "utils/core/artefact.py", "utils/data/cache.py"],
        ["utils.data.scan.*", "utils.core.artefact.*", "utils.data.cache.x__fingerprint__*",
         "utils.data.cache.x__sample_digests__*", "utils.data.cache.x__digest__*",
         "utils.data.cache.x__unreadable_now_readable__*"],
        ["tests/data/test_scan.py", "tests/data/test_cache.py", "tests/core/test_artefact.py"]),
    "dataset formatting": (["utils/data/format.py"], None, ["tests/data/test_format.py"]),
    "export check": (["utils/models/onnx_export.py"],
                     ["utils.models.onnx_export.x_check_against_torch__*", "utils.models.onnx_export.x_compare_with_torch__*",
                      "utils.models.onnx_export.x_export_onnx__*",
                      "utils.models.onnx_export.x_check_input_shape__*", "utils.models.onnx_export.x_parse_input_shape__*",
                      "utils.models.onnx_export.x_read_metadata__*", "utils.models.onnx_export.x_set_metadata__*"],
                     # the tiny seeded model's tests: the real networks' exports take tens of seconds each
                     ["tests/models/test_onnx_export.py", "-k", "export_check or wrong_export or input_shapes or word_for_word or crop_other or two_images or broken_and_foreign or default_exporter or tolerance_grows or contradict"]),
    "error boundary": (["utils/core/errors.py"], None, ["tests/core/test_errors.py"]),
    "records": (["utils/report/records.py"], None, ["tests/report/test_records.py"]),
    "tables": (["utils/report/select.py", "utils/report/sections/results_tables.py", "utils/report/sections/worth_it_tables.py", "utils/report/sections/compare_tables.py", "utils/report/sections/energy_tables.py", "utils/report/sections/mixed_precision_tables.py", "utils/report/sections/inspect_tables.py", "utils/report/sections/cells.py", "utils/report/terminal.py"], None, ["tests/report/test_tables.py", "tests/report/test_tables_records.py",
                                                  "tests/report/test_tables_study.py", "tests/measure/test_energy.py",
                                                  "tests/report/test_tables_mixed.py", "tests/report/test_tables_energy.py"]),
}
ON_A_GPU = ("timing on a GPU",)  # named explicitly, on a CUDA machine (not in the default "every module")
# what the tests need beside utils/ (mutmut copies utils/ itself, mutated, and tests/)
ALSO_COPY = ["main.py", "build_trt.py", "onnx_transform.py", "format_dataset.py", "README.md", "requirements.txt",
             "tools", "benchmarks", "datasets", "weights", "outputs", "docs"]
STATUSES = ("killed", "survived", "no tests", "timeout", "suspicious", "skipped", "segfault", "not checked")


def equivalents(doc: Path = EQUIVALENT_DOC, section: str = "") -> Dict[str, str]:
    """Mutants docs/mutation.md lists (`- `key`: why` lines): as equivalent, or (section "Reached only on a
    GPU") in code the CPU suite cannot reach. Either kind is left out of the kill rate and counted apart."""
    if not doc.is_file():
        return {}
    text = doc.read_text()
    if section:
        text = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0] if f"## {section}" in text else ""
    return dict(re.findall(r"^- `(\S+__mutmut_\d+)`: (.+)$", text, flags=re.M))


def config(files: Sequence[str], tests: Sequence[str]) -> str:
    def toml_list(xs: Sequence[str]) -> str:
        return "[" + ", ".join(json.dumps(x) for x in xs) + "]"

    return ("\n[tool.mutmut]\n"
            'source_paths = ["utils"]\n'
            f"only_mutate = {toml_list(files)}\n"
            f"also_copy = {toml_list(ALSO_COPY)}\n"
            f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
            'process_isolation = "forkserver"\n')  # torch is not fork-safe once used


def run_module(name: str, workdir: Path, children: int, only: Optional[List[str]] = None) -> Dict[str, str]:
    """mutmut over one module in a fresh copy; every mutant's status by key (`only`: these functions of it)."""
    files, functions, tests = MODULES[name]
    functions = only or functions
    here = workdir / name.replace(" ", "-")
    if here.exists():
        shutil.rmtree(here)
    checkout_copy(here)
    with open(here / "pyproject.toml", "a") as f:
        f.write(config(files, tests))
    env = {**os.environ, "CI": "true"}
    env.pop("ARTTRT_CACHE_DIR", None)
    env.pop("ARTTRT_WEIGHTS_DIR", None)
    log = here / "mutmut.log"
    with open(log, "w") as out:
        r = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *(functions or [])],
                           cwd=here,
                           env=env, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"mutmut failed on {name} (exit {r.returncode}); its log: {log}\n{tail}")
    listed = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=here, env=env,
                            capture_output=True, text=True, check=True).stdout
    found = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+__mutmut_\d+): (.+)$", listed, flags=re.M)}
    return {k: v for k, v in found.items() if functions is None or any(fnmatch.fnmatch(k, f) for f in functions)}


def summarise(name: str, statuses: Dict[str, str], equivalent: Dict[str, str],
              gpu_only: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    counts = {s: sum(v == s for v in statuses.values()) for s in STATUSES}
    survivors = sorted(k for k, v in statuses.items() if v not in ("killed", "timeout") and k not in equivalent)
    listed = sum(k in equivalent and statuses[k] not in ("killed", "timeout") for k in statuses)
    counted = len(statuses) - listed
    caught = counts["killed"] + counts["timeout"]  # a mutant that makes the tests hang is caught: they never pass
    rate = 100.0 * caught / counted if counted else float("nan")
    return {"module": name, "mutants": len(statuses), "killed": caught, "equivalent": listed,
            "gpu only": sum(k in (gpu_only or {}) and statuses[k] not in ("killed", "timeout") for k in statuses),
            "not killed": len(survivors), "kill rate %": round(rate, 1), "survivors": survivors,
            "counts": counts}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", metavar="MODULE", help=f"modules to mutate (default all): {', '.join(MODULES)}")
    p.add_argument("--workdir", default="/tmp/arttrt-mutation", help="where the copies and mutmut's files go")
    p.add_argument("--max_children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    p.add_argument("--show", action="store_true", help="print each survivor's diff (mutmut show)")
    p.add_argument("--json", help="write the summary here as JSON")
    p.add_argument("--only", nargs="+", metavar="PATTERN",
                   help="only the functions these mutmut names match (fnmatch: 'utils.report.select.x_latest_per_config*')")
    args = p.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        print(f"error: no module {unknown[0]!r} here: choose from {', '.join(MODULES)}", file=sys.stderr)
        return 2
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("error: mutmut is not installed: pip install mutmut==3.8.1", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    equivalent, gpu_only = equivalents(), equivalents(section="Reached only on a GPU")
    rows = []
    for name in args.modules or [m for m in MODULES if m not in ON_A_GPU]:
        t0 = time.perf_counter()
        statuses = run_module(name, workdir, args.max_children, args.only)
        row = summarise(name, statuses, equivalent, gpu_only)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"{name}: {row['killed']}/{row['mutants']} killed, {row['equivalent']} listed (of which "
              f"{row['gpu only']} reached only on a GPU), "
              f"{row['not killed']} not killed, kill rate {row['kill rate %']} % ({row['seconds']} s)", flush=True)
        for key in row["survivors"]:  # type: ignore[union-attr]
            print(f"  {statuses[key]}: {key}")
            if args.show:
                print(subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=workdir / name.replace(" ", "-"),
                                     capture_output=True, text=True).stdout)
    print()
    print(markdown_table(["module", "mutants", "killed", "listed equivalent", "listed GPU-only", "not killed",
                          "kill rate %", "seconds"],
                         [[r["module"], r["mutants"], r["killed"], int(r["equivalent"]) - int(r["gpu only"]),
                           r["gpu only"], r["not killed"], r["kill rate %"], r["seconds"]] for r in rows]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["kill rate %"] >= 90 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
