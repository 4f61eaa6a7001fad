"""The one user-facing error type, and the CLI boundary that turns it into one line.

Usage:
    from utils.core.errors import ArtTRTError, cli_boundary
    raise ArtTRTError("dataset folder 'x' does not exist")
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Optional, Sequence

log = logging.getLogger("arttrt")


class ArtTRTError(Exception):
    """A user mistake or an unmet requirement: printed as one sentence, exit code 2."""


def cli_boundary(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Runs a script's main(); an ArtTRTError becomes one line on stderr and exit 2.

    Real bugs keep their traceback (Polygraphy's _main.py does the same).
    """
    try:
        return main(argv)
    except ArtTRTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: records written so far are kept", file=sys.stderr)
        return 130


def setup_logging(quiet: bool = False) -> None:
    """One format for every script; --quiet keeps warnings only."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
