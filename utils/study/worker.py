"""A worker process of a study (--gpus, or a setup run in a process of its own): it reads the request and the plan
its parent handed over (utils/study/handover.py) and runs them; it parses no command line and makes no plan.

Usage (started by utils.study.workers.launch):
    python -m utils.study.worker CLAIMS/worker-cuda-1.json
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.core.errors import ArtTRTError, cli_boundary, setup_logging
from utils.study.handover import read_handover
from utils.study.run import validate_command


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise ArtTRTError("a study's worker takes one argument, the file its study handed over (it is started by a "
                          "study, not by hand)")
    request, plan = read_handover(Path(args[0]))
    setup_logging(request.quiet, request.verbose)
    return validate_command(request, plan, worker=True)


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
