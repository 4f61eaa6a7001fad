"""Progress bars (tqdm) that --quiet and CI switch off in one place.

Usage:
    bar = progress_bar(total=n, desc="decoding"); bar.update(1); bar.close()
"""
from __future__ import annotations

import os
from typing import Any

QUIET = bool(os.environ.get("CI"))


def set_quiet(quiet: bool) -> None:
    global QUIET
    QUIET = quiet or bool(os.environ.get("CI"))


def progress_bar(total: int, desc: str, disable: bool = False) -> Any:
    """A tqdm bar on stderr; a no-op object when quiet or tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in requirements, but a bar is never worth a crash
        disable = True
    if disable or QUIET:
        class _Null:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
            def set_postfix_str(self, s: str) -> None: ...
        return _Null()
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
