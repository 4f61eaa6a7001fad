"""Option dataclasses filled from an argparse namespace by field name (after Polygraphy's args groups):
each layer defines its options once, adds its own argument group, and reads them back with `from_args`.

Usage:
    @dataclass(frozen=True)
    class Options:
        provider: str = "cpu"
    opts = from_args(Options, args)   # args.provider, or the default where the namespace lacks it
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Type, TypeVar

T = TypeVar("T")


def from_args(cls: Type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """cls(**fields read from args), a field missing from args (or None there) keeping its default."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    values.update(overrides)
    return cls(**values)
