"""Regenerates every table and plot of a results folder from its records and telemetry CSVs.

Usage:
    python main.py --report outputs
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text
from utils.report.records import load_records
from utils.report.tables import latest_per_config, side_by_side_markdown, summary_markdown


def make_report(folder: Path) -> List[str]:
    """Writes table_outputs/<network>.md and plots/*.png under folder; returns what it wrote."""
    from utils.measure.telemetry import read_csv
    from utils.report import plots

    if not folder.is_dir():
        raise ArtTRTError(f"results folder {folder} does not exist")
    records = [r for r in load_records(folder, "validate") if not r.get("error")]
    csvs = sorted(folder.rglob("telemetry-*.csv"))
    if not records and not csvs:
        raise ArtTRTError(f"no ArtTRT records under {folder}: run main.py -v first")
    wrote: List[str] = []
    latest = latest_per_config(records)
    for network in sorted({r["network"] for r in latest}):
        path = folder / "table_outputs" / f"{network}.md"
        atomic_write_text(path, summary_markdown(network, latest))
        wrote.append(str(path))
        side = folder / "table_outputs" / f"{network}-side-by-side.md"
        atomic_write_text(side, side_by_side_markdown(network, latest))
        wrote.append(str(side))
        wrote.append(str(plots.throughput_plot(latest, network, folder / "plots" / f"throughput-{network}.png")))
    for bs in sorted({int(r["batch_size"]) for r in latest}):
        wrote.append(str(plots.latency_bars(latest, folder / "plots" / f"inference_time_bar_all-bs{bs}.png", bs)))
    for csv_path in csvs:
        samples = read_csv(csv_path)
        if samples:
            wrote.append(str(plots.telemetry_plot(samples, folder / "plots" / f"{csv_path.stem}.png", csv_path.stem)))
    return wrote
