"""Progress bars (tqdm): shown only when asked for and only on a terminal.

Usage:
    bar = progress_bar(total=n, desc="decoding", enabled=not quiet); bar.update(1); bar.close()
"""
from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar on stderr; tqdm itself turns it off where stderr is not a terminal (CI, logs)."""
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None if enabled else True)
