"""Against a baseline (main.py --report NEW --baseline OLD): each row of NEW matched to OLD's row of the same setup
(network, weights, images, backend, precision, options, batch size, mode), its speed ratio with a 95 % interval, its
top-1 change (paired where both kept predictions: McNemar), what differs in the environment, and the rows in one
folder only; a row whose whole speed interval lies below 1 - --max_regression is a regression.

Usage:
    doc, regressed = baseline_markdown(new_records, old_records, max_regression=5.0)
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from utils.report.doc import Doc, compose, fmt, table
from utils.report.schema import Paired, Record
from utils.report.schema_types import ENV_IDENTITY
from utils.report.sections.confidence_tables import STABLE_SPREAD_PERCENT, interval_from, run_spread, speed_change
from utils.report.select import latest_per_config, row_label, timing_rows

BASELINE_HEADING = "## Against the baseline"

BASELINE_NOTE = ("Each row of this folder beside the baseline's row of the same setup (network, weights, images, "
                 "runner, batch size, mode). Speed: images/s here over the baseline's, its 95 % interval combining "
                 "both rows' intervals in log space (\"intervals from\": a row's timed batches, by the moving-block "
                 "bootstrap, which understate run-to-run noise; or N whole runs with --repeats N, which hold it); a "
                 "regression is a row whose whole interval lies below 1 - --max_regression; \"unstable runs\": a "
                 "row's fastest run is more than 10 % above its slowest (perf_analyzer's stability rule), so its "
                 "verdict is weak. Top-1: the change in points, paired on the same images (McNemar's "
                 "exact p) where both folders kept the predictions. Environment: what differs between the two rows.")

ENV_SHOWN = (*ENV_IDENTITY, "sm_clock_mhz", "power_limit_w")


def setup_identity(r: Record) -> Tuple[Any, ...]:
    """What a row measured, whatever the machine and the libraries: the key rows of two folders are matched by."""
    return (r.network, r.weights_id or r.weights, r.dataset_key or r.dataset,
            r.images, row_label(r), r.batch_size, r.mode)


def env_changes(new: Record, old: Record) -> str:
    a, b = ({k: getattr(r.env, k, None) for k in ENV_SHOWN} for r in (new, old))  # sm_clock_mhz: untyped extras
    diff = [f"{k} {b[k] or '-'} -> {a[k] or '-'}" for k in ENV_SHOWN if a[k] != b[k]]
    return "; ".join(diff) or "same"


def _top1(new: Record, old: Record, paired: Optional[Paired]) -> str:
    if paired is not None and paired.paired_change_points is not None:
        return (f"{paired.paired_change_points:+.2f} ({paired.paired_low_points or 0:+.2f}.."
                f"{paired.paired_high_points or 0:+.2f}), McNemar p {paired.mcnemar_p or 0:.3g}")
    if new.top1 is None or old.top1 is None:
        return "-"
    return f"{float(new.top1) - float(old.top1):+.2f} (unpaired)"


def baseline_markdown(new: Sequence[Record], old: Sequence[Record],
                      max_regression: Optional[float] = None) -> Tuple[Doc, List[str]]:
    """The table of NEW against OLD, and the rows that regressed beyond max_regression % (their labels)."""
    mine = {setup_identity(r): r for r in latest_per_config([r for r in timing_rows(new) if not r.error])}
    theirs = {setup_identity(r): r for r in latest_per_config([r for r in timing_rows(old) if not r.error])}
    rows, regressed = [], []
    # the paired top-1 is its setup's accuracy pass's (a timing row carries the top-1 only): by setup, any batch
    pairs = {setup_identity(r)[:5]: r.baseline_paired for r in new if r.baseline_paired is not None}
    for key in sorted(set(mine) & set(theirs), key=lambda k: tuple(map(str, k))):
        a, b = mine[key], theirs[key]
        ratio, low, high = speed_change(a, b)
        verdict = "-"
        if ratio is not None and low is not None and high is not None:
            limit = 1 - (max_regression or 0.0) / 100.0
            if high < limit and max_regression is not None:
                verdict = f"REGRESSED (more than {max_regression:g} %)"
                regressed.append(f"{a.network} {row_label(a)} bs{a.batch_size}")
            elif high < 1.0:
                verdict = "slower"
            elif low > 1.0:
                verdict = "faster"
            else:
                verdict = "no measurable difference"
            spreads = [x for x in (run_spread(b), run_spread(a)) if x is not None]
            if spreads and max(spreads) > STABLE_SPREAD_PERCENT:  # the verdict of runs that disagree is weak
                verdict += f"; unstable runs (up to {max(spreads):.0f} % apart)"
        speed = "-" if ratio is None else f"{ratio:.3f}x" + (f" ({low:.3f}..{high:.3f})" if low is not None else "")
        rows.append([a.network, row_label(a), a.batch_size, fmt(b.images_per_s, 1),
                     fmt(a.images_per_s, 1), speed, verdict, _top1(a, b, pairs.get(key[:5])), env_changes(a, b),
                     f"{interval_from(b)} / {interval_from(a)}"])
    only_new = sorted(f"{r.network} {row_label(r)} bs{r.batch_size}" for k, r in mine.items()
                      if k not in theirs)
    only_old = sorted(f"{r.network} {row_label(r)} bs{r.batch_size}" for k, r in theirs.items()
                      if k not in mine)
    parts: List[Any] = [BASELINE_HEADING, BASELINE_NOTE]
    if rows:
        parts.append(table(["network", "runner", "batch", "images/s baseline", "images/s here",
                            "speed (95 %)", "verdict", "top-1 change, points", "environment",
                            "intervals from (baseline / here)"], rows))
    else:
        parts.append("No row of this folder has a row of the same setup in the baseline.")
    if only_new:
        parts.append("Here only: " + ", ".join(only_new) + ".")
    if only_old:
        parts.append("In the baseline only: " + ", ".join(only_old) + ".")
    return compose(*parts), regressed
