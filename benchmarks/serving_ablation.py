"""What each serving change buys, measured apart (a benchmark that prints figures, not a test).

The 0.91 Server/Offline ratio of 2026-12-04 came with three changes at once: batches of prepared sizes (batch_take),
Python's switch interval cut to 0.2 ms during a LoadGen run, and a finer --find_peak bisection. This runs the same
main.py serving job once per variant, each in its own output folder (so no run finds another's records done), with
one of the first two changes undone in this process:

    as-built      the code as it is
    switch-5ms    Python's default thread switch interval (5 ms) kept during the LoadGen runs
    pad-up        the old batcher: take every queued sample (up to --max_batch) and pad up to the next prepared size
    pad-below-32  pad up a queue of fewer than 32, take prepared sizes above (the reviewer's alternative)

and prints, per variant, Offline samples/s, the Server peak QPS with its p99, mean batch and padded rows, from the
records themselves (read through the schema). How it could mislead: one run per variant, and the bisection's last
VALID and INVALID rates are about 2 % apart, so differences of a few per cent are within its noise; name as-built
twice to see that noise (the second run writes to as-built-2). The change reaches main.py's own process only: a
backend that runs in a process of its own on a GPU (ONNX Runtime), --gpus, --shard and --claims are refused, and so
is more than one runner.

Usage:
    python benchmarks/serving_ablation.py --variants as-built pad-up --out DIR -- <main.py -v arguments without --output>
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.core.errors import ArtTRTError, cli_boundary  # noqa: E402
from utils.core.fileio import atomic_write_json  # noqa: E402
from utils.measure import serving, sut  # noqa: E402

AS_BUILT_TAKE = sut.batch_take
PYTHON_DEFAULT_SWITCH_S = 5e-3


def pad_up(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    return min(queued, max_batch)


def pad_below_32(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    n = min(queued, max_batch)
    return n if n < 32 else AS_BUILT_TAKE(queued, max_batch, sizes)


# each variant: (the module whose name it replaces, the name) -> the replacement; the module is where the code that
# uses the name looks it up (BatchingSUT._take in utils.measure.sut, Harness.run in utils.measure.serving)
VARIANTS: Dict[str, Dict[Tuple[Any, str], Any]] = {
    "as-built": {},
    "switch-5ms": {(serving, "SWITCH_INTERVAL_S"): PYTHON_DEFAULT_SWITCH_S},
    "pad-up": {(sut, "batch_take"): pad_up},
    "pad-below-32": {(sut, "batch_take"): pad_below_32},
}


def run_variant(name: str, main_args: List[str], folder: Path,
                main: Callable[[Optional[Sequence[str]]], int]) -> int:
    """main.py once, writing under folder, with the variant's change in the serving modules, restored afterwards
    whatever happens."""
    change = VARIANTS[name]
    saved = {(module, k): getattr(module, k) for module, k in change}
    try:
        for (module, k), v in change.items():
            setattr(module, k, v)
        return cli_boundary(main, [*main_args, "--output", str(folder)])
    finally:
        for (module, k), v in saved.items():
            setattr(module, k, v)


def check_job(main_args: List[str]) -> None:
    """The main.py job, refused in one sentence before any work where a variant would not reach it or its summary
    would mix runners: one network, backend and precision; a Server scenario with --find_peak; one process."""
    import main as arttrt
    from utils.backends import registry
    from utils.study.request import request_from_args

    parser = arttrt.build_parser()
    req = request_from_args(parser.parse_args(main_args), parser, main_args)
    if req.mode != "validate":
        raise ArtTRTError("give main.py's -v job after --")
    if len(req.networks) * len(req.backends) * len(req.precisions) != 1 or req.calib_methods or req.calib_sizes:
        raise ArtTRTError("give one network, one backend and one precision: each variant's row is one runner")
    if not any(o.scenario == "server" and o.find_peak for o in req.scenarios):
        raise ArtTRTError("give --scenario server (and offline, for the ratio) with --find_peak: the peak QPS is "
                          "what the variants are compared on")
    if req.gpus or req.claims or req.shard or req.setups:
        raise ArtTRTError("--gpus, --shard and --claims run jobs in other processes, where a variant does not reach")
    if req.device.startswith("cuda") and registry.get(req.backends[0]).own_process_on_gpu:
        raise ArtTRTError(f"the {req.backends[0]} backend runs in a process of its own on a GPU, where a variant "
                          "does not reach")


def summary(name: str, folder: Path) -> Dict[str, Any]:
    """The variant's figures, from its records read through the schema (one runner: check_job)."""
    from utils.report.records import load_records

    row: Dict[str, Any] = {"variant": name}
    for rec in (r.as_dict() for r in load_records(folder)):  # each record as written
        if rec.get("role") != "scenario" or rec.get("error"):
            continue
        lat = rec.get("latency_ms") or {}
        row["runner"] = f"{rec.get('network')} {rec.get('backend')} {rec.get('precision')} {rec.get('options') or ''}"
        if rec.get("scenario") == "offline":
            row.update(offline_samples_per_s=rec.get("samples_per_s"), offline_valid=rec.get("loadgen_valid"))
        elif rec.get("scenario") == "server":
            row.update(server_peak_qps=rec.get("peak_qps"), server_p99_ms=lat.get("p99"),
                       server_valid=rec.get("loadgen_valid"), top1=rec.get("top1"),
                       mean_batch=rec.get("mean_batch"), padded_samples=rec.get("padded_samples"),
                       steps=[(s.get("target_qps"), s.get("loadgen_valid"), (s.get("latency_ms") or {}).get("p99"))
                              for s in rec.get("peak_steps") or []])
    off, peak = row.get("offline_samples_per_s"), row.get("server_peak_qps")
    row["server_over_offline"] = round(peak / off, 3) if off and peak else None  # no VALID peak: none
    return row


def folders(variants: Sequence[str]) -> List[Tuple[str, str]]:
    """(variant, folder name): a variant named again gets a folder of its own (as-built-2), so it is measured again
    rather than found done."""
    seen: Dict[str, int] = {}
    out = []
    for v in variants:
        seen[v] = seen.get(v, 0) + 1
        out.append((v, v if seen[v] == 1 else f"{v}-{seen[v]}"))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, main_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python benchmarks/serving_ablation.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="run in this order; one named twice is measured twice (its noise)")
    p.add_argument("--out", required=True, help="a folder for each variant's records (a new or empty one)")
    args = p.parse_args(ours)
    if not main_args or any(a == "--output" or a.startswith("--output=") for a in main_args):
        p.error("give main.py's arguments after --, without --output (each variant writes under --out)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        p.error(f"--out {out} is not empty: a variant would find an earlier run's jobs done")
    check_job(main_args)
    import main as arttrt

    rows: List[Dict[str, Any]] = []
    rc = 0
    for name, sub in folders(args.variants):
        code = run_variant(name, main_args, out / sub, arttrt.main)
        rows.append({**summary(name, out / sub), "folder": sub, "exit": code})
        print(json.dumps(rows[-1]), flush=True)
        atomic_write_json(out / "serving_ablation.json", rows)  # what is done so far survives an interruption
        if code in (130, 143):  # Ctrl-C or SIGTERM: stop here, as main.py would
            rc = code
            break
        rc = rc or (1 if code else 0)
    for r in rows:
        print(f"{r['folder']:>14}: Offline {r.get('offline_samples_per_s')} samples/s, Server peak "
              f"{r.get('server_peak_qps')} QPS (p99 {r.get('server_p99_ms')} ms, VALID {r.get('server_valid')}), "
              f"ratio {r.get('server_over_offline')}, mean batch {r.get('mean_batch')}, padded rows "
              f"{r.get('padded_samples')}, exit {r['exit']}")
    return rc


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
