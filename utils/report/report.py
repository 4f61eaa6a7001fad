"""Regenerates every table, plot and the report of a results folder from its records and telemetry CSVs.

report.html is one self-contained page (tables, and plots inline as PNG data: no network access, no other
file needed) drawn from the same records as the Markdown tables; Python-Markdown turns those tables into HTML.

Usage:
    python main.py --report outputs
"""
from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import Dict, List, Optional

from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text
from utils.report.records import load_records
from utils.report.tables import (compare_groups, inspect_markdown, latest_compares, latest_per_config,
                                 not_measured_markdown, profile_markdown, side_by_side_markdown, summary_markdown,
                                 worth_it_markdown)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}.note{color:#666;font-size:.9em}"""


def _md(text: str) -> str:
    import markdown

    return str(markdown.markdown(text, extensions=["tables"]))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def make_report(folder: Path, max_top1_drop: Optional[float] = None) -> List[str]:
    """Writes table_outputs/<network>*.md, plots/*.png and report.html under folder; returns what it wrote.

    With several setups, the first section is "is TensorRT worth it?" across networks (table_outputs/worth-it.md;
    max_top1_drop marks the rows over the gate); skipped and failed study jobs are listed at the end."""
    from utils.measure.telemetry import read_csv
    from utils.report import plots

    if not folder.is_dir():
        raise ArtTRTError(f"results folder {folder} does not exist")
    every = load_records(folder, "validate")
    records = [r for r in every if not r.get("error")]
    compares = [r for r in load_records(folder, "compare") if not r.get("error")]
    csvs = sorted(folder.rglob("telemetry-*.csv"))
    if not records and not csvs and not compares and not every:
        raise ArtTRTError(f"no ArtTRT records under {folder}: run main.py -v first")
    wrote: List[str] = []
    latest = latest_per_config(records)
    sections: List[str] = []
    images: Dict[str, Path] = {}
    if len({(r.get("network"), r.get("backend"), r.get("precision"), r.get("options")) for r in latest}) > 1:
        worth = worth_it_markdown(records, max_top1_drop)
        atomic_write_text(folder / "table_outputs" / "worth-it.md", worth)
        wrote.append(str(folder / "table_outputs" / "worth-it.md"))
        sections.append(_md(worth))
    for network in sorted({r["network"] for r in latest}):
        summary, side = summary_markdown(network, latest), side_by_side_markdown(network, latest)
        for name, text in ((f"{network}.md", summary), (f"{network}-side-by-side.md", side)):
            atomic_write_text(folder / "table_outputs" / name, text)
            wrote.append(str(folder / "table_outputs" / name))
        plot = plots.throughput_plot(latest, network, folder / "plots" / f"throughput-{network}.png")
        wrote.append(str(plot))
        sections.append(_md(side) + _img(plot, f"{network}: images/s against batch size") + _md(summary))
    for bs in sorted({int(r["batch_size"]) for r in latest}):
        bars = plots.latency_bars(latest, folder / "plots" / f"inference_time_bar_all-bs{bs}.png", bs)
        wrote.append(str(bars))
        images[f"Latency at batch size {bs}"] = bars
    for csv_path in csvs:
        samples = read_csv(csv_path)
        if samples:
            tel = plots.telemetry_plot(samples, folder / "plots" / f"{csv_path.stem}.png", csv_path.stem)
            wrote.append(str(tel))
            images[f"GPU telemetry: {csv_path.stem}"] = tel
    for text in (inspect_markdown(latest), profile_markdown(latest)):
        if text:
            sections.append(_md(text))
    for title, path in images.items():
        sections.append(f"<h2>{html.escape(title)}</h2>" + _img(path, title))
    compares = latest_compares(compares)
    for text in compare_groups(compares):  # several runners side by side, then each on its own
        sections.append(_md(text))
    for rec in compares:
        md = (folder / "compare" / (Path(rec["_path"]).stem + ".md"))
        if md.is_file():
            sections.append(_md(md.read_text()))
    missing = not_measured_markdown(every)
    if missing:
        atomic_write_text(folder / "table_outputs" / "not-measured.md", missing)
        sections.append(_md(missing))
    env = (latest or compares or [{}])[-1].get("env", {})
    head = (f"<h1>ArtTRT report</h1><p class=note>{len(records)} validation and {len(compares)} comparison "
            f"records under {html.escape(str(folder.resolve()))}; drawn {dt.datetime.now():%Y-%m-%d %H:%M}. "
            f"Measured on {html.escape(str(env.get('gpu') or env.get('cpu', '?')))}, torch "
            f"{html.escape(str(env.get('torch')))}, ONNX Runtime {html.escape(str(env.get('onnxruntime')))}, "
            f"TensorRT {html.escape(str(env.get('tensorrt') or 'not installed'))}.</p>")
    page = f"<!doctype html><html><head><meta charset=utf-8><title>ArtTRT report</title><style>{STYLE}</style>" \
           f"</head><body>{head}{''.join(sections)}</body></html>\n"
    atomic_write_text(folder / "report.html", page)
    wrote.append(str(folder / "report.html"))
    return wrote


def where_results_are(output: Path) -> str:
    """The paths a run wrote, one per line, after every run."""
    return "\n".join(f"{what}: {output / sub}" for what, sub in (
        ("records", "records"), ("tables", "table_outputs"), ("comparisons", "compare"), ("plots", "plots"),
        ("layers", "inspect"), ("profiles", "profiles"), ("report", "report.html")) if (output / sub).exists())
