"""Turns an ImageNet-1k validation download into DST/<wnid>/<file>, one folder per synset.

Usage:
    python format_dataset.py --src val/ --dst datasets/imagenet --labels ILSVRC2012_validation_ground_truth.txt --meta meta.mat
    python format_dataset.py --src val/ --dst datasets/imagenet --labels LOC_val_solution.csv
    python format_dataset.py --src val_with_synset_names/ --dst datasets/imagenet
    python format_dataset.py --src datasets/imagenet --dry-run   # check a class-folder tree (no --dst needed)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.core.errors import cli_boundary, setup_logging


def build_parser() -> argparse.ArgumentParser:
    from utils.core.cli import new_parser

    examples = (__doc__ or "").split("Usage:\n", 1)[-1].rstrip()
    p = new_parser("format_dataset.py", __doc__, epilog="examples:\n" + examples)
    p.add_argument("--src", required=True, help="the downloaded validation images")
    p.add_argument("--dst", help="where DST/<wnid>/<file> is made (required unless --dry-run)")
    p.add_argument("--labels", help="ILSVRC2012_validation_ground_truth.txt (with --meta) or LOC_val_solution.csv")
    p.add_argument("--meta", help="the devkit's data/meta.mat (maps ILSVRC2012 IDs to wnids)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--move", action="store_true", help="move the files instead of hard-linking them")
    how.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="count only, change nothing")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.data.format import apply_placement, format_summary, plan_placement

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dst and not args.dry_run:
        parser.error("--dst is required (where DST/<wnid>/<file> is made), unless --dry-run only counts")
    setup_logging()
    src = Path(args.src)
    dst = Path(args.dst) if args.dst else src  # --dry-run alone: counts the tree where it stands
    plan = plan_placement(src, Path(args.labels) if args.labels else None, Path(args.meta) if args.meta else None)
    mode = "move" if args.move else "copy" if args.copy else "link"
    summary = apply_placement(plan, dst, mode=mode, dry_run=args.dry_run)
    print(format_summary(plan, summary, dst, mode, args.dry_run))
    return 1 if summary.unplaced else 0


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
