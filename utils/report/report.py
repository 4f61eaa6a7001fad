"""Regenerates every table, plot and the report of a results folder from its records and telemetry CSVs.

report.html is one self-contained page (tables, and plots inline as PNG data: no network access, no other
file needed) drawn from the same records as the Markdown tables, through an auto-escaping Jinja2 template: every
text that came from a record, a file or a folder name is escaped where it is placed, so nothing in a record can
add an element or an attribute to the page. Files written from record fields are named by slugs inside the folder.

Usage:
    python main.py --report outputs
"""
from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jinja2
from markupsafe import Markup

from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text, slug
from utils.report.doc import Doc
from utils.report.records import load_records
from utils.report.tables import (compare_doc, compare_groups, compare_labels, energy_markdown, inspect_markdown,
                                 latest_compares, latest_per_config, mixed_precision_markdown,
                                 not_measured_markdown, profile_markdown, records_read, served_markdown,
                                 served_records, side_by_side_markdown, summary_markdown, timing_rows,
                                 worth_it_markdown)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}.note{color:#666;font-size:.9em}"""

PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    "<!doctype html><html><head><meta charset=utf-8><title>ArtTRT report</title><style>{{ style }}</style></head>"
    "<body><h1>ArtTRT report</h1><p class=note>{{ head }}</p>"
    "{% for s in sections %}{% if s.kind == 'doc' %}{{ s.html }}{% else %}<h2>{{ s.title }}</h2>"
    '<p><img alt="{{ s.title }}" src="data:image/png;base64,{{ s.data }}"></p>{% endif %}{% endfor %}'
    "</body></html>\n")


def _doc(d: Doc) -> Dict[str, Any]:
    return {"kind": "doc", "html": d.html()}


def _img(path: Path, title: str) -> Dict[str, Any]:
    return {"kind": "img", "title": title, "data": base64.b64encode(path.read_bytes()).decode("ascii")}


def make_report(folder: Path, max_top1_drop: Optional[float] = None,
                records: Optional[List[Dict[str, Any]]] = None) -> List[str]:
    """Writes table_outputs/<network>*.md, plots/*.png and report.html under folder; returns what it wrote.

    Serving records (MLPerf LoadGen scenarios) come first: "served within the budget" (table_outputs/served.md) and
    each network's latency-against-load curve; then, with several setups, "is TensorRT worth it?" across networks
    (table_outputs/worth-it.md; max_top1_drop marks the rows over the gate, in both tables); the timing tables never
    take a serving record. Skipped and failed study jobs are listed at the end."""
    from utils.measure.telemetry import read_csv
    from utils.report import plots

    if not folder.is_dir():
        raise ArtTRTError(f"results folder {folder} does not exist")
    everything = load_records(folder) if records is None else records  # a run passes what it read and wrote
    every = [r for r in everything if r.get("kind") == "validate"]
    records = [r for r in every if not r.get("error")]
    compares = [r for r in everything if r.get("kind") == "compare" and not r.get("error")]
    csvs = sorted(folder.rglob("telemetry-*.csv"))
    if not records and not csvs and not compares and not every:
        raise ArtTRTError(f"no ArtTRT records under {folder}: run main.py -v first")
    wrote: List[str] = []
    served = served_records(records)  # the one split: serving records here, timing rows below
    records = timing_rows(records)
    latest = latest_per_config(records)
    sections: List[Dict[str, Any]] = []
    images: List[Tuple[str, Path]] = []

    def write(sub: str, name: str, text: str) -> None:
        path = folder / sub / name
        atomic_write_text(path, text)
        wrote.append(str(path))

    if served:
        serve_doc = served_markdown(served, max_top1_drop)
        write("table_outputs", "served.md", serve_doc)
        sections.append(_doc(serve_doc))
        for network in sorted({str(r.get("network")) for r in served}):
            if plots.serving_points(served, network):
                curve = plots.serving_curve(served, network, folder / "plots" / f"serving-{file_name(network)}.png")
                wrote.append(str(curve))
                sections.append(_img(curve, f"{network}: latency against load (LoadGen Server)"))
    if len({(r.get("network"), r.get("backend"), r.get("precision"), r.get("options")) for r in latest}) > 1:
        worth = worth_it_markdown(records, max_top1_drop)
        write("table_outputs", "worth-it.md", worth)
        sections.append(_doc(worth))
    for network in sorted({str(r["network"]) for r in latest}):
        summary, side = summary_markdown(network, latest), side_by_side_markdown(network, latest)
        name = file_name(network)
        write("table_outputs", f"{name}.md", summary)
        write("table_outputs", f"{name}-side-by-side.md", side)
        plot = plots.throughput_plot(latest, network, folder / "plots" / f"throughput-{name}.png")
        wrote.append(str(plot))
        sections += [_doc(side), _img(plot, f"{network}: images/s against batch size"), _doc(summary)]
    energy = energy_markdown(latest)
    if energy:
        write("table_outputs", "energy.md", energy)
        sections.append(_doc(energy))
    for bs in sorted({int(r["batch_size"]) for r in latest if r.get("batch_size") is not None}):
        bars = plots.latency_bars(latest, folder / "plots" / f"inference_time_bar_all-bs{bs}.png", bs)
        wrote.append(str(bars))
        images.append((f"Latency at batch size {bs}", bars))
    for csv_path in csvs:
        samples = read_csv(csv_path)
        if samples:
            tel = plots.telemetry_plot(samples, folder / "plots" / f"{slug(csv_path.stem)}.png", csv_path.stem)
            wrote.append(str(tel))
            images.append((f"GPU telemetry: {csv_path.stem}", tel))
    mixed = mixed_precision_markdown(latest)
    if mixed:
        write("table_outputs", "mixed-precision.md", mixed)
        sections.append(_doc(mixed))
    for text in (inspect_markdown(latest), profile_markdown(latest)):
        if text:
            sections.append(_doc(text))
    sections += [_img(path, title) for title, path in images]
    compares = latest_compares(compares)
    read = records_read(everything, len(latest) + len(served), len(compares))
    for doc in compare_groups(compares):  # several runners side by side, then each on its own
        sections.append(_doc(doc))
    for rec in compares:  # drawn from the record itself, never from a file beside it
        sections.append(_doc(compare_doc(rec, *compare_labels(rec), str(rec.get("network")))))
    missing = not_measured_markdown(every)
    if missing:
        write("table_outputs", "not-measured.md", missing)
        sections.append(_doc(missing))
    env = (latest or served or compares or [{}])[-1].get("env", {})
    head = (f"Records under {folder.resolve()}: {read}. Drawn "
            f"{dt.datetime.now():%Y-%m-%d %H:%M}. Measured on {env.get('gpu') or env.get('cpu', '?')}, torch "
            f"{env.get('torch')}, ONNX Runtime {env.get('onnxruntime')}, TensorRT {env.get('tensorrt') or 'not installed'}.")
    page = PAGE.render(style=Markup(STYLE), head=head, sections=sections)
    atomic_write_text(folder / "report.html", page)
    wrote.append(str(folder / "report.html"))
    return wrote


RESERVED = ("worth-it", "not-measured", "energy", "mixed-precision", "served")  # the report's own table files


def file_name(network: str) -> str:
    """A network's file name part: a slug of the record field, never a path, never one of the report's own files."""
    name = slug(network)
    return f"network-{name}" if name in RESERVED or name.endswith("-side-by-side") else name


def where_results_are(output: Path) -> str:
    """The paths a run wrote, one per line, after every run."""
    return "\n".join(f"{what}: {output / sub}" for what, sub in (
        ("records", "records"), ("tables", "table_outputs"), ("comparisons", "compare"), ("plots", "plots"),
        ("layers", "inspect"), ("profiles", "profiles"), ("report", "report.html")) if (output / sub).exists())
