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
from typing import Any, Dict, List, Optional, Sequence

import jinja2
from markupsafe import Markup

from utils.core.errors import ArtTRTError
from utils.core.fileio import atomic_write_text
from utils.report.doc import one_page
from utils.report.layout import Markdown, Plot, View, pieces
from utils.report.records import load_records, record_folders
from utils.report.records_csv import write_records_csv
from utils.report.schema_types import Env
from utils.report.select import records_read

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


def make_report(folder: Path, max_top1_drop: Optional[float] = None,
                records: Optional[Sequence[Any]] = None, baseline: Sequence[Any] = (),
                max_regression: Optional[float] = None) -> List[str]:
    """Writes table_outputs/*.md, plots/*.png and report.html under folder from the records alone (it never
    writes a record); returns what it wrote. Every section of utils.report.layout.SECTIONS shown in the report, in
    its order: serving records first ("served within the budget" and each network's latency-against-load curve),
    then, with several setups, "is TensorRT worth it?" across networks (max_top1_drop marks the rows over the gate,
    in both tables), each network's tables, and the rest; the timing tables never take a serving record."""
    if not folder.is_dir():
        raise ArtTRTError(f"results folder {folder} is a file, not a folder: give the folder that holds records/"
                          if folder.exists() else f"results folder {folder} does not exist")
    view = View.of(load_records(folder) if records is None else records,  # a run passes what it read and wrote
                   max_top1_drop, folder, baseline, max_regression)
    everything = view.everything  # typed once, by View.of
    if not view.ok and not view.compares and not view.every and not any(folder.rglob("telemetry-*.csv")):
        raise ArtTRTError(f"no ArtTRT records under {folder}: run main.py -v first")
    wrote: List[str] = []
    sections: List[Dict[str, Any]] = []
    drawn = [piece for _, piece in pieces(view, "report")]
    # each file is a page of its own (its footnotes at its end); the report says each footnote once, at its end
    bare, notes = one_page([piece.doc for piece in drawn if isinstance(piece, Markdown)])
    page_docs = iter(bare)
    for piece in drawn:
        if isinstance(piece, Plot):
            path = piece.draw(folder / "plots" / piece.file)
            wrote.append(str(path))
            sections.append({"kind": "img", "title": piece.title,
                             "data": base64.b64encode(path.read_bytes()).decode("ascii")})
            continue
        if piece.file is not None:
            atomic_write_text(folder / "table_outputs" / piece.file, piece.doc)
            wrote.append(str(folder / "table_outputs" / piece.file))
        sections.append({"kind": "doc", "html": next(page_docs).html()})
    if notes:
        sections.append({"kind": "doc", "html": notes.html()})
    read = records_read(everything, len(view.latest) + len(view.served), len(view.compares))
    shown = view.latest or view.served or view.compares
    env = shown[-1].env if shown else Env()
    folders = record_folders(everything)
    if set(folders) - {str(folder / "records")}:  # several runs' folders (merged shares): named, never silently
        read += "; read from " + ", ".join(f"{_relative(Path(f), folder)} ({n})" for f, n in sorted(folders.items()))
    head = (f"Records under {folder.resolve()}: {read}. Drawn "
            f"{dt.datetime.now():%Y-%m-%d %H:%M}. Measured on {env.gpu or env.cpu or '?'}, torch "
            f"{env.torch}, ONNX Runtime {env.onnxruntime}, TensorRT {env.tensorrt or 'not installed'}.")
    page = PAGE.render(style=Markup(STYLE), head=head, sections=sections)
    wrote.append(str(write_records_csv(folder, everything)))  # every record, one flat row each
    atomic_write_text(folder / "report.html", page)
    wrote.append(str(folder / "report.html"))
    return wrote


def _relative(path: Path, folder: Path) -> str:
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def where_results_are(output: Path) -> str:
    """The paths a run wrote, one per line, after every run."""
    return "\n".join(f"{what}: {output / sub}" for what, sub in (
        ("records", "records"), ("tables", "table_outputs"), ("comparisons", "compare"), ("plots", "plots"),
        ("layers", "inspect"), ("profiles", "profiles"), ("report", "report.html")) if (output / sub).exists())
