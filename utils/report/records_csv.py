"""records.csv: every record of a folder as one flat row, beside its records/ (for a spreadsheet, pandas or a CI
diff). The columns follow the schema (utils/report/schema.py): its fields in order, the flat ones of the
environment and the serving settings as env.<field> and serve_settings.<field>, any other nested value as JSON
text, and fields outside the schema after them; a text a spreadsheet would run as a formula is quoted.

Usage:
    write_records_csv(folder, records)   # folder/records.csv, atomically
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

from utils.core.fileio import atomic_write_text
from utils.report.schema import Record, ServeSettings
from utils.report.schema_types import Env

FLAT = {"env": Env, "serve_settings": ServeSettings}  # nested models whose fields become columns
FORMULA = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection: a cell starting so is quoted with '


def csv_columns() -> List[str]:
    """The schema's columns, in the schema's order."""
    cols: List[str] = []
    own = [n for n in Record.__annotations__ if n in Record.model_fields]  # the record's own fields first
    for name in [*own, *(n for n in Record.model_fields if n not in own)]:
        f = Record.model_fields[name]
        key = f.alias or name
        model = FLAT.get(key)
        cols += [f"{key}.{sub.alias or s}" for s, sub in model.model_fields.items()] if model else [key]
    return cols


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    text = str(v)
    return "'" + text if text.startswith(FORMULA) else text


def flat(rec: Dict[str, Any]) -> Dict[str, str]:
    """One record as column -> cell text (the file it was read from left out)."""
    out: Dict[str, str] = {}
    for key, v in rec.items():
        if key.startswith("_"):  # where it was read from, in memory only
            continue
        if key in FLAT and isinstance(v, dict):
            out.update({f"{key}.{k}": _cell(x) for k, x in v.items()})
        else:
            out[key] = _cell(v)
    return out


def records_csv(records: Sequence[Record]) -> str:
    """Every record as one flat row: its fields as written."""
    rows = [flat(r.as_dict()) for r in records]
    cols = csv_columns()
    known = set(cols)
    cols += sorted({k for row in rows for k in row} - known)  # every field: those outside the schema too
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_records_csv(folder: Path, records: Sequence[Record]) -> Path:
    path = folder / "records.csv"
    atomic_write_text(path, records_csv(records))
    return path


