"""What a summary and a report show, one row per section in SECTIONS: its name, the files it writes, which records
it draws (select) and how (render). The console summary of a run (summary_docs) and report.html (utils.report.report)
both loop over SECTIONS; a new table is one module under utils/report/sections/ and one row here.

Usage:
    view = View.of(records, max_drop=1.0)
    for doc in summary_docs(view): print(doc)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from utils.core.fileio import slug
from utils.measure.telemetry import read_csv
from utils.report import plots
from utils.report.doc import Doc, one_page
from utils.report.schema import Record, typed_all
from utils.report.sections.baseline_tables import baseline_markdown
from utils.report.sections.compare_tables import compare_doc, compare_groups, compare_labels
from utils.report.sections.compute_tables import compute_markdown
from utils.report.sections.confidence_tables import confidence_markdown, speed_markdown
from utils.report.sections.energy_tables import energy_markdown
from utils.report.sections.inspect_tables import inspect_markdown, profile_markdown
from utils.report.sections.mixed_precision_tables import mixed_precision_markdown
from utils.report.sections.results_tables import (percentile_table, results_table, side_by_side_markdown,
                                                  summary_markdown)
from utils.report.sections.served_tables import served_markdown
from utils.report.sections.worth_it_tables import not_measured_markdown, worth_it_markdown
from utils.report.select import latest_compares, latest_per_config, served_records, study_order, timing_rows
from utils.report.terminal import fit_terminal


@dataclass(frozen=True)
class View:
    """The records a summary or a report draws, sorted once: every record read, the validations (failed and skipped
    ones too), the serving records, the timing rows and the newest of each setup, the newest comparisons."""

    everything: Sequence[Record]
    max_drop: Optional[float] = None
    folder: Optional[Path] = None  # a report's results folder (its telemetry CSVs); None for a console summary
    every: List[Record] = field(default_factory=list)
    ok: List[Record] = field(default_factory=list)
    served: List[Record] = field(default_factory=list)
    timing: List[Record] = field(default_factory=list)
    latest: List[Record] = field(default_factory=list)
    compares: List[Record] = field(default_factory=list)
    baseline: Sequence[Record] = ()             # --report --baseline OLD: the baseline's records
    max_regression: Optional[float] = None

    @classmethod
    def of(cls, everything: Sequence[Any], max_drop: Optional[float] = None, folder: Optional[Path] = None,
           baseline: Sequence[Any] = (), max_regression: Optional[float] = None) -> "View":
        """The view of records read (Records) or made (dicts: checked against the schema here, once)."""
        everything, baseline = typed_all(everything), typed_all(baseline)
        every = [r for r in everything if r.kind == "validate"]
        ok = [r for r in every if not r.error]
        timing = timing_rows(ok)
        return cls(everything, max_drop, folder, every, ok, served_records(ok), timing, latest_per_config(timing),
                   latest_compares([r for r in everything if r.kind == "compare" and not r.error]),
                   baseline, max_regression)

    def setups(self) -> int:
        return len({(r.network, r.backend, r.precision, r.options) for r in self.latest})


@dataclass(frozen=True)
class Markdown:
    """A section's Doc, and its file under table_outputs/ (None: in report.html only)."""

    file: Optional[str]
    doc: Doc


@dataclass(frozen=True)
class Plot:
    """A plot of a section: its file under plots/, its title in report.html, and what draws it there."""

    file: str
    title: str
    draw: Callable[[Path], Path]


Piece = Union[Markdown, Plot]


@dataclass(frozen=True)
class Section:
    name: str
    files: Tuple[str, ...]  # the files it may write ("{network}": one per network), checked against what it renders
    select: Callable[[View], List[Any]]  # what it draws, one subject each (empty: the section is left out)
    render: Callable[[View, Any], List[Piece]]
    console: bool = False  # in a run's console summary
    report: bool = True  # in report.html (and its files)
    fit_terminal: bool = False  # its tables lose their least telling columns to fit the terminal


RESERVED = ("worth-it", "not-measured", "energy", "mixed-precision", "served", "confidence", "speed", "baseline",
            "compute")  # the report's own table files


def file_name(network: str) -> str:
    """A network's file name part: a slug of the record field, never a path, never one of the report's own files."""
    name = slug(network)
    return f"network-{name}" if name in RESERVED or name.endswith("-side-by-side") else name


def _one(recs: List[Record]) -> List[Any]:
    return [recs] if recs else []


def _networks(recs: Sequence[Record]) -> List[str]:
    return sorted({str(r.network) for r in recs})


def _doc(file: Optional[str], doc: Doc) -> List[Piece]:
    return [Markdown(file, doc)] if doc else []


def _served(view: View, recs: List[Record]) -> List[Piece]:
    pieces: List[Piece] = _doc("served.md", served_markdown(recs, view.max_drop))
    for network in _networks(recs):
        if view.folder is not None and plots.serving_points(recs, network):
            pieces.append(Plot(f"serving-{file_name(network)}.png", f"{network}: latency against load (LoadGen Server)",
                               lambda path, n=network: plots.serving_curve(recs, n, path)))
    return pieces


def _network(view: View, network: str) -> List[Piece]:
    name = file_name(network)
    return [Markdown(f"{name}-side-by-side.md", side_by_side_markdown(network, view.latest)),
            Plot(f"throughput-{name}.png", f"{network}: images/s against batch size",
                 lambda path: plots.throughput_plot(view.latest, network, path)),
            Markdown(f"{name}.md", summary_markdown(network, view.latest))]


def _latency_bars(view: View, bs: int) -> List[Piece]:
    return [Plot(f"inference_time_bar_all-bs{bs}.png", f"Latency at batch size {bs}",
                 lambda path: plots.latency_bars(view.latest, path, bs))]


def _telemetry(view: View, csv_path: Path) -> List[Piece]:
    samples = read_csv(csv_path)
    if not samples:
        return []
    return [Plot(f"{slug(csv_path.stem)}.png", f"GPU telemetry: {csv_path.stem}",
                 lambda path: plots.telemetry_plot(samples, path, csv_path.stem))]


def _comparisons(view: View, compares: List[Record]) -> List[Piece]:
    """Several runners side by side, then each on its own, drawn from the records themselves."""
    return ([Markdown(None, d) for d in compare_groups(compares)]
            + [Markdown(None, compare_doc(r.as_dict(), *compare_labels(r), str(r.network))) for r in compares])


SECTIONS: Tuple[Section, ...] = (
    Section("baseline", ("baseline.md",), lambda v: _one(v.ok) if v.baseline else [],
            lambda v, recs: _doc("baseline.md", baseline_markdown(recs, v.baseline, v.max_regression)[0])),
    Section("results", (), lambda v: _one(study_order(v.latest)),
            lambda v, recs: [Markdown(None, results_table(recs)), Markdown(None, percentile_table(recs))],
            console=True, report=False, fit_terminal=True),
    Section("served", ("served.md", "serving-{network}.png"), lambda v: _one(v.served), _served, console=True),
    Section("worth it", ("worth-it.md",), lambda v: _one(v.timing) if v.setups() > 1 else [],
            lambda v, recs: _doc("worth-it.md", worth_it_markdown(recs, v.max_drop)), console=True),
    Section("confidence", ("confidence.md",), lambda v: _one(v.ok),
            lambda v, recs: _doc("confidence.md", confidence_markdown(recs)), console=True),
    Section("speed", ("speed.md",), lambda v: _one(v.latest),
            lambda v, recs: _doc("speed.md", speed_markdown(recs))),
    Section("compute", ("compute.md",), lambda v: _one(v.latest),
            lambda v, recs: _doc("compute.md", compute_markdown(recs, v.ok))),
    Section("network", ("{network}-side-by-side.md", "throughput-{network}.png", "{network}.md"),
            lambda v: _networks(v.latest), _network),
    Section("energy", ("energy.md",), lambda v: _one(v.latest), lambda v, recs: _doc("energy.md", energy_markdown(recs))),
    Section("mixed precision", ("mixed-precision.md",), lambda v: _one(v.latest),
            lambda v, recs: _doc("mixed-precision.md", mixed_precision_markdown(recs))),
    Section("inspect", (), lambda v: _one(v.latest), lambda v, recs: _doc(None, inspect_markdown(recs)), console=True),
    Section("profile", (), lambda v: _one(v.latest), lambda v, recs: _doc(None, profile_markdown(recs)), console=True),
    Section("latency bars", ("inference_time_bar_all-bs{batch}.png",),
            lambda v: sorted({int(r.batch_size) for r in v.latest if r.batch_size is not None}),
            _latency_bars),
    Section("telemetry", ("{telemetry}.png",),
            lambda v: sorted(v.folder.rglob("telemetry-*.csv")) if v.folder is not None else [], _telemetry),
    Section("comparisons", (), lambda v: _one(v.compares), _comparisons),
    Section("not measured", ("not-measured.md",), lambda v: _one(v.every),
            lambda v, recs: _doc("not-measured.md", not_measured_markdown(recs)), console=True),
)


def pieces(view: View, where: str) -> List[Tuple[Section, Piece]]:
    """Every piece of the sections shown in `where` ("console" or "report"), in SECTIONS' order."""
    return [(s, p) for s in SECTIONS if getattr(s, where) for subject in s.select(view) for p in s.render(view, subject)]


def summary_docs(view: View, width: Optional[int] = None) -> List[str]:
    """A run's console summary: each section's tables, the results fitted to `width` columns (None: every column),
    and the footnotes of them all once, at the end."""
    shown = [(s, p) for s, p in pieces(view, "console") if isinstance(p, Markdown)]
    bare, notes = one_page([p.doc for _, p in shown])
    docs = [fit_terminal(d, width) if s.fit_terminal else str(d) for (s, _), d in zip(shown, bare) if d]
    return docs + ([str(notes)] if notes else [])
