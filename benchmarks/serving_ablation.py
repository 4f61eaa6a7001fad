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
VALID and INVALID rates are about 2 % apart, so differences of a few per cent are within its noise; run as-built
twice to see that noise.

Usage:
    python benchmarks/serving_ablation.py --variants as-built pad-up --out DIR -- <main.py -v arguments without --output>
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.core.errors import cli_boundary  # noqa: E402
from utils.measure import serving  # noqa: E402

AS_BUILT_TAKE = serving.batch_take
AS_BUILT_SWITCH = serving.SWITCH_INTERVAL_S
PYTHON_DEFAULT_SWITCH_S = 5e-3


def pad_up(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    return min(queued, max_batch)


def pad_below_32(queued: int, max_batch: int, sizes: Sequence[int]) -> int:
    n = min(queued, max_batch)
    return n if n < 32 else AS_BUILT_TAKE(queued, max_batch, sizes)


VARIANTS: Dict[str, Dict[str, Any]] = {
    "as-built": {},
    "switch-5ms": {"SWITCH_INTERVAL_S": PYTHON_DEFAULT_SWITCH_S},
    "pad-up": {"batch_take": pad_up},
    "pad-below-32": {"batch_take": pad_below_32},
}


def run_variant(name: str, main_args: List[str], out: Path, main: Callable[[Optional[Sequence[str]]], int]) -> int:
    """main.py once with the variant's change in utils.measure.serving, restored afterwards whatever happens."""
    change = VARIANTS[name]
    saved = {k: getattr(serving, k) for k in change}
    try:
        for k, v in change.items():
            setattr(serving, k, v)
        return cli_boundary(main, [*main_args, "--output", str(out / name)])
    finally:
        for k, v in saved.items():
            setattr(serving, k, v)


def summary(name: str, folder: Path) -> Dict[str, Any]:
    from utils.report.records import load_records

    row: Dict[str, Any] = {"variant": name}
    for rec in load_records(folder):
        if rec.get("role") != "scenario" or rec.get("error"):
            continue
        lat = rec.get("latency_ms") or {}
        if rec.get("scenario") == "offline":
            row["offline_samples_per_s"] = rec.get("samples_per_s")
        elif rec.get("scenario") == "server":
            row.update(server_peak_qps=rec.get("peak_qps"), server_p99_ms=lat.get("p99"), top1=rec.get("top1"),
                       mean_batch=rec.get("mean_batch"), padded_samples=rec.get("padded_samples"),
                       steps=[(s.get("target_qps"), s.get("loadgen_valid"), (s.get("latency_ms") or {}).get("p99"))
                              for s in rec.get("peak_steps") or []])
    off, peak = row.get("offline_samples_per_s"), row.get("server_peak_qps")
    row["server_over_offline"] = round(peak / off, 3) if off and peak else None
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, main_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python benchmarks/serving_ablation.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out", required=True, help="a folder for each variant's records (a new or empty one)")
    args = p.parse_args(ours)
    if not main_args or any(a == "--output" or a.startswith("--output=") for a in main_args):
        p.error("give main.py's arguments after --, without --output (each variant writes under --out)")
    if not any(a.startswith("--scenario") for a in main_args):
        p.error("give main.py's --scenario (server, with --find_peak, for the peak QPS)")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"--out {out} is not empty: a variant would find an earlier run's jobs done")
    import main as arttrt

    rows = []
    for name in args.variants:
        rc = run_variant(name, main_args, out, arttrt.main)
        rows.append({**summary(name, out / name), "exit": rc})
        print(json.dumps(rows[-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving_ablation.json").write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(f"{r['variant']:>13}: Offline {r.get('offline_samples_per_s')} samples/s, Server peak "
              f"{r.get('server_peak_qps')} QPS (p99 {r.get('server_p99_ms')} ms), ratio {r.get('server_over_offline')}, "
              f"mean batch {r.get('mean_batch')}, padded rows {r.get('padded_samples')}, exit {r['exit']}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
