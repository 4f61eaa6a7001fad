"""Tests of utils/report/. R(...) makes a hand-written record typed, as the report reads every record; as_read(fn)
gives fn its hand-written records (dicts) typed the same way."""
from typing import Any, Dict, Optional

from utils.report.schema import Record


def R(fields: Optional[Dict[str, Any]] = None, **kw: Any) -> Record:
    """A hand-written record checked against the schema's types (a test's record may leave out what a record read
    from a file must name: schema.check_record's REQUIRED)."""
    return Record.model_validate({"record_version": 2, "kind": "validate", **(fields or {}), **kw})


def _read(v: Any) -> Any:
    if isinstance(v, dict):
        return R(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (dict, Record)) for x in v):
        return [x if isinstance(x, Record) else R(x) for x in v]
    return v


def as_read(fn: Any) -> Any:
    """fn taking hand-written records (dicts) as the report takes them: typed."""
    def wrapper(*args: Any, **kw: Any) -> Any:
        return fn(*[_read(a) for a in args], **{k: _read(v) for k, v in kw.items()})
    return wrapper
