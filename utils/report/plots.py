"""Plots (matplotlib, headless PNG), drawn only from saved records and telemetry CSVs; no figure is
computed here.

Usage:
    throughput_plot(records, "resnet50", Path("outputs/plots/throughput-resnet50.png"))
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils.backends.registry import row_label  # noqa: E402
from utils.core.fileio import atomic_path  # noqa: E402

PHASE_COLOURS = {"build": "#f4d03f", "load": "#aed6f1", "warm-up": "#f5b7b1", "measure": "#abebc6"}


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def throughput_plot(records: Sequence[Dict[str, Any]], network: str, path: Path) -> Path:
    """images/s against batch size, one line per backend and precision."""
    lines: Dict[str, List[tuple[int, float]]] = defaultdict(list)
    for r in records:
        if r.get("network") == network and r.get("images_per_s"):
            lines[row_label(r) + f" [{r.get('mode', '')}]"].append((int(r["batch_size"]), float(r["images_per_s"])))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    sizes = sorted({p[0] for pts in lines.values() for p in pts})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    env = records[0].get("env", {}) if records else {}
    ax.set_title(f"{network}: throughput on {env.get('gpu') or env.get('cpu', '?')}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def latency_bars(records: Sequence[Dict[str, Any]], path: Path, batch_size: int) -> Path:
    """Latency-model and latency-all means at one batch size, grouped by network (inference_time_bar_all.png)."""
    rows = [r for r in records if r.get("batch_size") == batch_size and r.get("latency_model_mean")]
    networks = sorted({r["network"] for r in rows})
    labels = sorted({row_label(r) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(networks) * max(1, len(labels)) / 2), 4.5))
    width = 0.8 / max(1, len(labels))
    for j, label in enumerate(labels):
        xs, model, allc = [], [], []
        for i, net in enumerate(networks):
            match = [r for r in rows if r["network"] == net and row_label(r) == label]
            if match:
                xs.append(i + j * width)
                model.append(match[-1]["latency_model_mean"])
                allc.append(match[-1]["latency_all_mean"])
        bars = ax.bar(xs, allc, width, alpha=0.35)
        ax.bar(xs, model, width, label=label, color=bars.patches[0].get_facecolor()[:3] if bars.patches else None)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(networks))], networks)
    ax.set_ylabel("ms per batch (solid: model, pale: with copies)")
    ax.set_title(f"latency at batch size {batch_size}")
    ax.legend(fontsize=8)
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
            colour = PHASE_COLOURS.get(samples[start]["phase"])
            if colour:
                for ax in (ax1, ax2):
                    ax.axvspan(samples[start]["t_s"], samples[i - 1]["t_s"], color=colour, alpha=0.4, lw=0)
            if samples[start]["phase"] == "measure":
                ax1.text(samples[start]["t_s"], ax1.get_ylim()[1], samples[start]["label"], fontsize=6,
                         rotation=90, va="top")
            start = i
    ax1.set_title(title + "  (shaded: " + ", ".join(PHASE_COLOURS) + ")")
    return _save(fig, path)
