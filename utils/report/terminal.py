"""A one-table Doc fitted to the terminal's width: the least telling columns left out first, and said.

Usage:
    print(fit_terminal(results_table(records), terminal_width()))
"""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import List, Optional, Tuple

from utils.report.doc import Table, table


# what a terminal narrower than a table loses first (every column stays in table_outputs/ and the report)
TERMINAL_DROPS = ("parameters", "layers", "top-5 (%)", "size (MiB)", "Latency-all mean / max (ms)",
                  "all p50 / p90 / p99 (ms)", "all CV (%)", "timed batches", "mode", "network", "batch")


SAME_IN_EVERY_ROW = ("network", "batch")  # left out only where every row has the same (said in the note)


TERMINAL_MEANS = {"Latency-model mean / max (ms)": "model ms"}  # then the mean alone


def terminal_width() -> Optional[int]:
    """The columns of the terminal the tables go to; None when stdout is a file or a pipe (and COLUMNS is unset):
    a log keeps every column."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def fit_terminal(doc: str, width: Optional[int]) -> str:
    """A one-table Doc as it fits `width` columns: the least telling columns left out first (TERMINAL_DROPS; the
    network only where every row has the same), then the model latency as its mean; a line says what was left
    out. As it is where it fits, or where nothing more can go."""
    if width is None or max(map(len, doc.splitlines() or [""])) <= width:
        return str(doc)
    tables = [b for b in getattr(doc, "blocks", ()) if isinstance(b, Table)]
    if len(tables) != 1:
        return str(doc)
    header, rows = list(tables[0].header), [list(r) for r in tables[0].rows]
    left_out: List[str] = []
    steps: List[Tuple[str, Optional[str]]] = [(h, None) for h in TERMINAL_DROPS] + list(TERMINAL_MEANS.items())
    for name, renamed in steps:
        if name not in header or (name in SAME_IN_EVERY_ROW and len({r[header.index(name)] for r in rows}) > 1):
            continue
        i = header.index(name)
        if renamed is None:
            left_out.append(f"{name} (each row's is {rows[0][i]})" if name in SAME_IN_EVERY_ROW and rows else name)
            del header[i]
            for r in rows:
                del r[i]
        else:
            header[i] = renamed
            for r in rows:
                r[i] = r[i].split(" / ")[0]
            left_out.append(f"{name.split(' mean')[0]} max")
        text = str(table(header, rows))
        if max(map(len, text.splitlines())) <= width:
            break
    if not left_out:  # nothing that may go is in it: as it is
        return str(doc)
    return text + "\n" + textwrap.fill(f"(to fit {width} columns, left out: {', '.join(left_out)}; every column is "
                                       "in the report)", max(width, 40))
