"""Plots (matplotlib, headless PNG), drawn only from saved records and telemetry CSVs; no figure is
computed here. Every backend and precision has one colour in every plot (the backend picks the hue, the
precision its shade); values that span more than a decade get a log scale; every colour is in a legend.

Usage:
    throughput_plot(records, "resnet50", Path("outputs/plots/throughput-resnet50.png"))
    serving_curve(records, "resnet50", Path("outputs/plots/serving-resnet50.png"))
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from utils.backends.registry import BACKENDS, PRECISIONS  # noqa: E402
from utils.core.fileio import atomic_path  # noqa: E402
from utils.measure.scenarios import paired  # noqa: E402
from utils.report.schema import Record  # noqa: E402
from utils.report.schema_types import Env  # noqa: E402
from utils.report.select import finite_number, identity_columns, row_label, serve_question, served_records  # noqa: E402

matplotlib.use("Agg")
# Texts in plots come from records (network names, labels): never parsed as mathtext ("$" is a dollar sign, and an
# unbalanced one cannot stop a report)
matplotlib.rcParams["text.parse_math"] = False


PHASE_COLOURS = {"build": "#f4d03f", "load": "#aed6f1", "warm-up": "#f5b7b1", "measure": "#abebc6"}
HUES = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def colour(rec: Record) -> Tuple[float, float, float]:
    """The colour of a record's backend and precision, the same in every plot: the backend's hue, lighter
    for each precision after fp32."""
    names = list(BACKENDS)
    b = names.index(rec.backend) if rec.backend in names else len(names)
    p = PRECISIONS.index(rec.precision) if rec.precision in PRECISIONS else 0
    base = to_rgb(HUES[b % len(HUES)])
    mix = 0.16 * p  # toward white
    return (base[0] + (1 - base[0]) * mix, base[1] + (1 - base[1]) * mix, base[2] + (1 - base[2]) * mix)


def _log_if_wide(ax: Any, values: Sequence[float], axis: str = "y") -> None:
    """A log scale where values span more than a decade, its ticks plain numbers at 1, 2, 5 x 10^k (the default
    labels are mathtext, which this module never parses: they would read "$\\mathdefault{10^{3}}$")."""
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        scale = ax.yaxis if axis == "y" else ax.xaxis
        scale.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        scale.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        scale.set_minor_formatter(NullFormatter())


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes, never over a bar or a line (the saved image grows to hold it)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # a name the font cannot draw
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def series_labels(records: Sequence[Record]) -> Callable[[Record], str]:
    """A record's line or bar label: its row label, plus the timing mode, dataset and weights where those differ
    among the records drawn together (a sync and a pipelined run are two lines, never one zigzag)."""
    modes = {r.mode for r in records}
    extra = identity_columns(records)

    def label(r: Record) -> str:
        parts = [f(r) for _, f in extra] + ([str(r.mode)] if len(modes) > 1 else [])
        return row_label(r) + (f" [{', '.join(parts)}]" if parts else "")

    return label


def _hatches() -> Callable[[str, Record], str]:
    """A hatch per further label of one colour (TRT fp16 and TRT fp16 static): no two bars look alike."""
    seen: Dict[Tuple[float, float, float], List[str]] = defaultdict(list)
    patterns = ["", "//", "..", "xx", "\\\\", "++"]

    def hatch(label: str, rec: Record) -> str:
        labels = seen[colour(rec)]
        if label not in labels:
            labels.append(label)
        return patterns[labels.index(label) % len(patterns)]

    return hatch


# Precisions told apart by more than shade: a marker on lines, a hatch on bars (fp32 plain)
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^", "fp8": "v"}
PRECISION_HATCHES = {"fp32": "", "fp16": "//", "bf16": "\\\\", "int8": "xx", "fp8": ".."}


def throughput_plot(records: Sequence[Record], network: str, path: Path) -> Path:
    """images/s against batch size, one line per row label (backend, precision, options; and mode, dataset,
    weights where they differ); where only one batch size was measured, one labelled bar per row instead of a lone
    dot on a narrow axis."""
    fig, _ = throughput_figure(records, network)
    return _save(fig, path)


def throughput_figure(records: Sequence[Record], network: str) -> Tuple[Any, Any]:
    lines: Dict[str, List[Tuple[int, float]]] = defaultdict(list)
    first: Dict[str, Record] = {}
    mine = [r for r in records if r.network == network and r.images_per_s]
    series = series_labels(mine)
    for r in mine:
        label = series(r)
        lines[label].append((int(r.batch_size), float(r.images_per_s)))
        first.setdefault(label, r)
    sizes = sorted({p[0] for pts in lines.values() for p in pts})
    env = records[0].env if records else Env()
    where = env.gpu or env.cpu or "?"
    if len(sizes) == 1:  # one batch size: a bar per row, its value written at its end
        order = sorted(lines, key=lambda label: lines[label][0][1])
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(order)))
        for y, label in enumerate(order):
            r, value = first[label], lines[label][0][1]
            ax.barh(y, value, color=colour(r), hatch=PRECISION_HATCHES.get(str(r.precision), ""),
                    edgecolor="#333333")
            ax.text(value, y, f" {value:,.1f}", va="center", fontsize=8)
        ax.set_yticks(range(len(order)), order)
        ax.set_xlim(0, max(lines[label][0][1] for label in order) * 1.2)
        ax.set_xlabel("images / s")
        ax.set_title(f"{network}: throughput at batch size {sizes[0]} on {where}")
        ax.grid(True, alpha=0.3, axis="x")
        return fig, ax
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    seen: Dict[Tuple[str, str], int] = defaultdict(int)
    for label, pts in sorted(lines.items()):
        pts.sort()
        r = first[label]
        key = (str(r.backend), str(r.precision))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=PRECISION_MARKERS.get(key[1], "o"), label=label,
                color=colour(r), linestyle=styles[seen[key] % len(styles)])  # same colour, another dash: an option
        seen[key] += 1
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    _log_if_wide(ax, [p[1] for pts in lines.values() for p in pts])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title(f"{network}: throughput on {where}")
    ax.grid(True, alpha=0.3, which="both")
    _legend_outside(ax)
    return fig, ax


def latency_bars(records: Sequence[Record], path: Path, batch_size: int) -> Path:
    """Latency-model (solid) and latency-all (pale, behind) means at one batch size, grouped by network."""
    rows = [r for r in records if r.batch_size == batch_size and r.latency_model_mean]
    networks = sorted({r.network for r in rows})
    series = series_labels(rows)
    hatch = _hatches()
    labels = sorted({series(r) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(networks) * max(1, len(labels)) / 2), 4.5))
    width = 0.8 / max(1, len(labels))
    for j, label in enumerate(labels):
        xs, model, allc, col, pattern = [], [], [], None, ""
        for i, net in enumerate(networks):
            match = [r for r in rows if r.network == net and series(r) == label]
            if match:
                xs.append(i + j * width)
                model.append(match[-1].latency_model_mean)
                allc.append(match[-1].latency_all_mean or 0)  # a record without it: no pale bar
                col = colour(match[-1])
                pattern = PRECISION_HATCHES.get(str(match[-1].precision), "") + hatch(label, match[-1])
        ax.bar(xs, allc, width, color=col, alpha=0.35, edgecolor=col, linestyle="--")
        ax.bar(xs, model, width, label=label, color=col, hatch=pattern, edgecolor="#333333")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(networks))], networks)
    _log_if_wide(ax, [r.latency_model_mean for r in rows] + [r.latency_all_mean or 0 for r in rows])
    ax.set_ylabel("ms per batch (edged: model, pale: with copies)")
    ax.set_title(f"latency at batch size {batch_size}")
    _legend_outside(ax)
    return _save(fig, path)


def telemetry_plot(samples: Sequence[Dict[str, Any]], path: Path, title: str) -> Path:
    """GPU memory and SM utilisation over time, the phases shaded (the original's Vanilla | TRT pair)."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    t = [s["t_s"] for s in samples]
    ax1.plot(t, [s["memory_used_mb"] for s in samples], color="#1f618d")
    ax1.set_ylabel("GPU memory (MiB)")
    ax2.plot(t, [s["sm_util_percent"] for s in samples], color="#b03a2e")
    ax2.set_ylabel("SM utilisation (%)")
    ax2.set_xlabel("time (s)")
    start = 0
    for i in range(1, len(samples) + 1):
        if i == len(samples) or samples[i]["phase"] != samples[start]["phase"] or \
                samples[i]["label"] != samples[start]["label"]:
            col = PHASE_COLOURS.get(samples[start]["phase"])
            if col:
                for ax in (ax1, ax2):
                    ax.axvspan(samples[start]["t_s"], samples[i - 1]["t_s"], color=col, alpha=0.4, lw=0)
            if samples[start]["phase"] == "measure":
                ax1.text(samples[start]["t_s"], ax1.get_ylim()[1], samples[start]["label"], fontsize=6,
                         rotation=90, va="top")
            start = i
    ax1.set_title(title)
    ax1.legend(handles=[Patch(color=c, alpha=0.4, label=p) for p, c in PHASE_COLOURS.items()], fontsize=7,
               loc="upper left", ncol=4)
    return _save(fig, path)


Point = Tuple[float, Optional[float], Optional[float], bool]  # completed samples/s, p50 ms, p<percentile> ms, VALID


def serving_points(records: Sequence[Record], network: str) -> List[Tuple[str, Record, List[Point]]]:
    """Per Server record of the network (the newest of each setup and settings): its label, the record, and each
    LoadGen run of its peak_steps in the order of target QPS as (completed samples/s, p50, p<percentile>, VALID);
    a run without a samples/s is left out. Read from the records, nothing computed."""
    mine = [r for r in served_records(records) if r.network == network and r.scenario == paired("rate")
            and r.peak_steps is not None]
    series = series_labels(mine)
    questions = {serve_question(r) for r in mine}
    out = []
    for r in mine:
        pct, bound = serve_question(r)
        label = series(r) + (f" [p{pct:g} <= {bound:g} ms]" if len(questions) > 1 else "")
        steps = sorted((s for s in r.peak_steps or [] if finite_number(s.samples_per_s) is not None),
                       key=lambda s: finite_number(s.target_qps) or 0.0)
        lat: List[Dict[str, float]] = [s.latency_ms or {} for s in steps]  # by LoadGen's names: "p50", "p99.9"
        out.append((label, r, [(float(s.samples_per_s or 0.0), finite_number(t.get("p50")),
                                finite_number(t.get(f"p{pct:g}")), s.loadgen_valid is True)
                               for s, t in zip(steps, lat)]))
    return sorted(((label, r, pts) for label, r, pts in out if pts), key=lambda x: x[0])


def serving_curve(records: Sequence[Record], network: str, path: Path) -> Path:
    """Latency (p50 dashed, the bound's percentile solid) against completed samples/s of every Server run of each
    runner, a horizontal line at each latency bound; a VALID run is a dot, an INVALID one a cross."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ys: List[float] = []
    series = serving_points(records, network)
    for label, r, pts in series:
        pct = serve_question(r)[0]
        for name, style, ms in (("p50", "--", [p[1] for p in pts]), (f"p{pct:g}", "-", [p[2] for p in pts])):
            drawn = [(p[0], y, p[3]) for p, y in zip(pts, ms) if y is not None]
            ax.plot([x for x, _, _ in drawn], [y for _, y, _ in drawn], linestyle=style, color=colour(r),
                    label=f"{label} {name}")
            for valid, marker in ((True, "o"), (False, "x")):
                mark = [(x, y) for x, y, v in drawn if v == valid]
                ax.plot([x for x, _ in mark], [y for _, y in mark], linestyle="none", marker=marker, color=colour(r))
            ys += [y for _, y, _ in drawn]
    bounds = sorted({serve_question(r) for _, r, _ in series}, key=lambda q: q[1])
    for pct, bound in bounds:
        ax.axhline(bound, color="#555555", linestyle=":", label=f"bound: p{pct:g} <= {bound:g} ms")
    _log_if_wide(ax, ys + [b for _, b in bounds])
    ax.set_xlabel("completed samples / s (LoadGen Server)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{network}: latency against load (MLPerf LoadGen Server)")
    ax.grid(True, alpha=0.3, which="both")
    for valid, marker in ((True, "o"), (False, "x")):  # the markers' meaning, once, in the legend
        ax.add_line(Line2D([], [], linestyle="none", marker=marker, color="#333333",
                           label="VALID run" if valid else "INVALID run"))
    _legend_outside(ax)
    return _save(fig, path)
