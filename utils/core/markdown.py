"""GitHub Markdown tables, columns padded to line up in a terminal (tabulate), cells given as text.

Usage:
    print(markdown_table(["backend", "images/s"], [["torch", "40.7"]]))
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    from tabulate import tabulate

    return str(tabulate([[str(c) for c in row] for row in rows], headers=list(header), tablefmt="github",
                        disable_numparse=True))
