"""What a table or a section is, once, in two renderings: Markdown for the terminal and the .md files, and HTML for
report.html through an auto-escaping Jinja2 template. Every text in it (a folder name, a network name, a record
field, a class-map entry) is data: in HTML it is escaped at the cell, never parsed as markup, so no element or
attribute reaches the page that the template did not write; in Markdown it is cell text.

A Doc is a str (its Markdown), so it prints, compares and is written to .md files as before, and it keeps its blocks
(headings, paragraphs, tables) for the HTML.

Usage:
    doc = compose("# resnet50", "Measured on ...", table(["backend", "images/s"], [["torch", "40.7"]]))
    print(doc); html_fragment = doc.html()
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import jinja2
from markupsafe import Markup
from tabulate import tabulate

from utils.core.errors import visible


def cell(text: str) -> str:
    """A Markdown table cell: visible, and its pipes escaped (a '|' in a name never adds a column)."""
    return visible(text).replace("|", "\\|")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str

    def markdown(self) -> str:
        return f"{'#' * self.level} {visible(self.text)}"


@dataclass(frozen=True)
class Para:
    """A paragraph: runs of (text, strong)."""

    runs: Tuple[Tuple[str, bool], ...]

    def markdown(self) -> str:
        return "".join(f"**{visible(t)}**" if strong else visible(t) for t, strong in self.runs)


@dataclass(frozen=True)
class Table:
    header: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]
    text: str  # the Markdown (tabulate's, columns padded)

    def markdown(self) -> str:
        return self.text


@dataclass(frozen=True)
class Footnote:
    """A note said once per page, however many tables need it: what it says, and the rows it is said of. compose()
    merges a Doc's footnotes of one key into one at its end; one_page() does the same across a page's Docs."""

    key: str
    text: str
    items: Tuple[str, ...] = ()

    def markdown(self) -> str:
        return visible(self.text + (f" Here: {'; '.join(self.items)}." if self.items else ""))


Block = Union[Heading, Para, Table, Footnote]

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_BLOCKS = _ENV.from_string("""\
{% for b in blocks %}
{% if b.kind == "heading" %}<h{{ b.level }}>{{ b.text }}</h{{ b.level }}>
{% elif b.kind == "para" %}<p>{% for text, strong in b.runs %}{% if strong %}<strong>{{ text }}</strong>{% else %}\
{{ text }}{% endif %}{% endfor %}</p>
{% else %}<table><thead><tr>{% for h in b.header %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in b.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endif %}
{% endfor %}""")


class Doc(str):
    """Markdown text that keeps its blocks for an escaped HTML rendering."""

    blocks: Tuple[Block, ...]

    def __new__(cls, blocks: Sequence[Block], text: str) -> "Doc":
        obj = super().__new__(cls, text)
        obj.blocks = tuple(blocks)
        return obj

    def html(self) -> Markup:
        """The blocks as HTML, every text escaped (Jinja2's autoescape)."""
        items = []
        for b in self.blocks:
            if isinstance(b, Heading):
                items.append({"kind": "heading", "level": min(max(b.level, 1), 4), "text": visible(b.text)})
            elif isinstance(b, Para):
                items.append({"kind": "para", "runs": [(visible(t), strong) for t, strong in b.runs]})
            elif isinstance(b, Footnote):
                items.append({"kind": "para", "runs": [(b.markdown(), False)]})
            else:
                items.append({"kind": "table", "header": [visible(h) for h in b.header],
                              "rows": [[visible(c) for c in row] for row in b.rows]})
        return Markup(_BLOCKS.render(blocks=items))


def fmt(v: Any, digits: int = 2) -> str:
    """A cell's text: "-" for a missing or NaN figure, a float to `digits` places, a large int with thousands
    separators, anything else as str()."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def sci(v: Any, form: str = ".3e") -> str:
    """A figure in the given format (scientific by default), "-" where missing."""
    return "-" if v is None else format(float(v), form)


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Doc:
    """The one table helper: GitHub Markdown with columns padded to line up in a terminal (tabulate), and escaped
    HTML in the report (Doc.html); each cell's text by fmt (text stays as it is)."""
    head = tuple(str(h) for h in header)
    body = tuple(tuple(fmt(c) for c in row) for row in rows)
    text = str(tabulate([[cell(c) for c in r] for r in body], headers=[cell(h) for h in head], tablefmt="github",
                        disable_numparse=True))
    return Doc([Table(head, body, text)], text)


def strong(text: str) -> Tuple[str, bool]:
    return (text, True)


Part = Union[Doc, str, Tuple[Any, ...], None]


def footnote(key: str, text: str, items: Sequence[str] = ()) -> Doc:
    """A footnote block (Footnote): one per key at the end of the Doc it is composed into, and of the page."""
    note = Footnote(key, text, tuple(dict.fromkeys(items)))
    return Doc([note], note.markdown() + "\n")


def _merged(blocks: Sequence[Block]) -> List[Block]:
    """blocks with their footnotes moved to the end, one per key (the rows of each merged, in order)."""
    notes: Dict[str, Footnote] = {}
    for b in blocks:
        if isinstance(b, Footnote):
            had = notes.get(b.key)
            notes[b.key] = b if had is None else Footnote(b.key, had.text, tuple(dict.fromkeys(had.items + b.items)))
    return [b for b in blocks if not isinstance(b, Footnote)] + list(notes.values())


def _doc(blocks: Sequence[Block]) -> Doc:
    return Doc(blocks, "\n\n".join(b.markdown() for b in blocks) + "\n" if blocks else "")


def one_page(docs: Sequence[Doc]) -> Tuple[List[Doc], Doc]:
    """The Docs of one page (report.html, a console summary) without their footnotes, and those footnotes merged:
    each said once, at the page's end."""
    every = [b for d in docs for b in getattr(d, "blocks", ()) if isinstance(b, Footnote)]
    bare = [_doc([b for b in d.blocks if not isinstance(b, Footnote)]) if isinstance(d, Doc) else d for d in docs]
    return bare, _doc(_merged(every))


def compose(*parts: Part) -> Doc:
    """One Doc of its parts, separated by blank lines: a Doc keeps its blocks; a str starting with '#' is a heading,
    any other non-empty str a paragraph; a tuple of runs (str, or strong(str)) a paragraph with strong runs; the
    footnotes of the parts once each, at the end."""
    blocks: List[Block] = []
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, Doc):
            blocks += part.blocks
        elif isinstance(part, tuple):
            blocks.append(Para(tuple(r if isinstance(r, tuple) else (str(r), False) for r in part)))
        elif part.startswith("#"):
            level = len(part) - len(part.lstrip("#"))
            blocks.append(Heading(level, part[level:].strip()))
        else:
            blocks.append(Para(((part, False),)))
    return _doc(_merged(blocks))
