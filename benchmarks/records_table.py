"""Prints the figures of every validation record under a folder, one line each, with the harness check
images/s / (batch / latency-all): near 1 or above means the host kept the GPU fed (a benchmark helper).

Usage:
    python benchmarks/records_table.py outputs/
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from utils.report.records import load_records

    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python benchmarks/records_table.py FOLDER (a folder of ArtTRT records, e.g. outputs/)",
              file=sys.stderr)
        return 2
    recs = load_records(Path(sys.argv[1]), "validate")
    print(f"{'network':<18} {'backend':<9} {'prec':<5} {'options':<14} {'graph':<5} {'bs':>4} {'images':>7} "
          f"{'timed':>7} {'images/s':>10} {'lat-all ms':>10} {'lat-model':>10} {'ips/(bs/all)':>12} {'top1':>6}  short batch")
    for r in (x.as_dict() for x in recs):  # each record as written, field by field
        if r.get("error"):  # a setup that failed has no figures: its error, cut to one line
            print(f"{r['network']:<18} {r['backend']:<9} {r['precision']:<5} {r.get('options') or '-':<14} "
                  f"{'-':<5} {r.get('batch_size') or 0:>4} error: {str(r['error']).splitlines()[0][:160]}")
            continue
        bs, la, ips = r["batch_size"], r.get("latency_all_mean"), r.get("images_per_s")
        ratio = ips / (bs / la * 1e3) if ips and la else float("nan")
        short = (r.get("short_batch") or {}).get("handling", "-")
        top1 = "-" if r.get("top1") is None else f"{r['top1']:.1f}"
        print(f"{r['network']:<18} {r['backend']:<9} {r['precision']:<5} {r.get('options') or '-':<14} "
              f"{'yes' if r.get('cuda_graph') else 'no':<5} {bs:>4} {r['images']:>7} {r['timed_images']:>7} "
              f"{ips or 0:>10,.0f} {la or 0:>10.3f} {r.get('latency_model_mean') or 0:>10.3f} {ratio:>12.3f} "
              f"{top1:>6}  {short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
