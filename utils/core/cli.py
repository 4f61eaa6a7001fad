"""What every ArtTRT script's command line has in common: no abbreviated options (a typo is an error, not
another option), help that shows each default, the first paragraph of the script's docstring as description.

Usage:
    p = new_parser("main.py", __doc__)
"""
from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from typing import Any, List, Optional, Sequence


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with the default after each option that has a meaningful one (not None, not False)."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if "default" not in text and shown and (action.option_strings or action.nargs in ("?", "*")):
            text += " (default: %(default)s)"
        return text


def _formatter(prog: str) -> HelpFormatter:
    return HelpFormatter(prog, width=110, max_help_position=34)


class Parser(argparse.ArgumentParser):
    """argparse's parser whose "unrecognized arguments" names the options meant (a prefix, or difflib's closest)."""

    def error(self, message: str) -> Any:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            flags = [word.split("=", 1)[0] for word in message[len(prefix):].split() if word.startswith("-")]
            hints = [f"{flag}: did you mean {' or '.join(near)}?" for flag in flags for near in [self.near(flag)]
                     if near]
            message += "".join(f"; {h}" for h in hints)
        return super().error(message)

    def near(self, flag: str) -> List[str]:
        """The options a mistyped flag most likely meant: those it begins (--batch: --batch_size, --batch_sizes),
        else the closest spellings (--netwrk: --network, --networks)."""
        known = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
        starts = [o for o in known if o.startswith(flag) and len(flag) > 3]
        return (starts or difflib.get_close_matches(flag, known, n=2, cutoff=0.75))[:3]


def new_parser(prog: str, doc: Optional[str], **kw: Any) -> argparse.ArgumentParser:
    """An ArgumentParser with allow_abbrev=False and the default-showing help, 110 columns wide, whose refusal of an
    unknown option names the closest ones."""
    return Parser(prog=prog, description=(doc or "").split("\n\n")[0], allow_abbrev=False, formatter_class=_formatter,
                  **kw)


def command_line(prog: str, argv: Optional[Sequence[str]]) -> str:
    """The exact command line of this run, for its records (main(argv) may be called without a shell)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(shlex.quote(a) for a in ["python", prog] + args)
