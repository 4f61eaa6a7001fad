"""How sure a top-1 figure is: a 95 % Wilson interval on an accuracy, and a runner against its reference on the same
images as a paired comparison (McNemar's exact test on the images whose answers differ, Newcombe's interval for the
paired change), with a verdict in words. The method and its assumptions: docs/confidence.md.

Usage:
    low, high = wilson(7613, 10000)                      # fractions
    fields = paired_change(pred, ref_pred, labels)       # record fields; None where not comparable
    fields["paired_verdict"]                             # "loses 0.42 points (0.31..0.53)"
    (names: the class names by label index, for the classes that lose most)
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE = 0.95
Z = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
RESOLUTION_POINTS = 1.0  # an interval containing 0 wider than +-this (or than the top-1 budget): too few images
CLASSES_SHOWN = 5


def wilson(k: int, n: int) -> Tuple[float, float]:
    """The 95 % Wilson score interval of k successes in n trials, as fractions (scipy's binomtest; Newcombe 1998's
    method 3); (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    from scipy.stats import binomtest  # here: SciPy's stats take 0.5 s to import (main.py --help must not wait)

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_paired(both: int, lost: int, gained: int, neither: int) -> Tuple[float, float]:
    """The 95 % interval of the change in accuracy, other minus reference, on the same images (fractions):
    Newcombe's (1998) method 10, built from the two Wilson intervals and the correlation of the paired answers.
    both: right in both; lost: right in the reference only; gained: right in the other only; neither: wrong in both."""
    n = both + lost + gained + neither
    if n == 0:
        return math.nan, math.nan
    p1, p2 = (both + lost) / n, (both + gained) / n  # reference's and other's accuracy
    l1, u1 = wilson(both + lost, n)
    l2, u2 = wilson(both + gained, n)
    margins = [(both + lost), (gained + neither), (both + gained), (lost + neither)]
    denom = math.prod(float(m) for m in margins)
    phi = (both * neither - lost * gained) / math.sqrt(denom) if denom > 0 else 0.0
    d = p2 - p1
    low = d - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    high = d + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, low), min(1.0, high)


def mcnemar_p(lost: int, gained: int) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the discordant images (1.0 where there are none)."""
    if lost + gained == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(gained), int(lost + gained), 0.5).pvalue)


def verdict_in_words(change: float, low: float, high: float, resolution: float = RESOLUTION_POINTS) -> str:
    """In words, from the paired change and its interval (points): a gain or a loss where the interval excludes 0;
    else no measurable change, or too few images to tell where the interval is wider than +-resolution."""
    span = f"({low:.2f}..{high:.2f})"
    if low > 0:
        return f"gains {change:.2f} points {span}"
    if high < 0:
        return f"loses {-change:.2f} points {span}"
    half = max(-low, high)
    if half > resolution:
        return f"too few images to tell (the interval spans {low:+.2f}..{high:+.2f} points)"
    return f"no measurable change (within {low:+.2f}..{high:+.2f} points)"


def paired_change(pred: np.ndarray, ref: np.ndarray, labels: np.ndarray,
                  names: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    """The record fields of a runner's top-1 against its reference's on the same labelled images: the change in
    points with its paired interval, McNemar's p, the flips each way, the classes that lose most, a verdict.
    An image the runner could not rank (-1) is wrong. None where the arrays are not of the same images."""
    pred, ref, labels = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (pred, ref, labels))
    if not (pred.shape == ref.shape == labels.shape):
        return None
    mask = labels >= 0
    if not mask.any():
        return None
    right, ref_right = (pred == labels)[mask], (ref == labels)[mask]
    lab = labels[mask]
    both = int((right & ref_right).sum())
    lost = int((ref_right & ~right).sum())
    gained = int((right & ~ref_right).sum())
    neither = int((~right & ~ref_right).sum())
    n = both + lost + gained + neither
    low, high = newcombe_paired(both, lost, gained, neither)
    change = 100.0 * (gained - lost) / n
    per_class: Dict[int, int] = {}
    for cls, delta in zip(lab[ref_right != right].tolist(), (right.astype(int) - ref_right.astype(int))[
            ref_right != right].tolist()):
        per_class[cls] = per_class.get(cls, 0) + delta
    worst = sorted(((c, -v) for c, v in per_class.items() if v < 0), key=lambda cv: (-cv[1], cv[0]))[:CLASSES_SHOWN]
    return {"paired_images": n, "paired_lost": lost, "paired_gained": gained,
            "paired_change_points": round(change, 4), "paired_low_points": round(100.0 * low, 4),
            "paired_high_points": round(100.0 * high, 4), "mcnemar_p": mcnemar_p(lost, gained),
            "classes_losing": [{"class": int(c), "lost": int(v), **({"name": str(names[c])[:80]} if names is not None
                                                                     and 0 <= c < len(names) else {})}
                               for c, v in worst],
            "paired_verdict": verdict_in_words(change, 100.0 * low, 100.0 * high)}


def images_to_settle(n: int, low: float, high: float, budget: float, change: float) -> Optional[int]:
    """About how many images would make a gate's interval fall on one side of -budget (points): the interval's
    half-width shrinks as 1/sqrt(n); None where it already does or cannot be said."""
    half = (high - low) / 2
    margin = abs(-budget - change)
    if n <= 0 or half <= 0 or margin <= 0:
        return None
    return int(math.ceil(round(n * (half / margin) ** 2, 6)))  # (rounded first: 36.000000001 x 1,000 is 36,000)

