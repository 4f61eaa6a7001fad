"""Named phases of a run (export, convert, build, warm-up, measure, ...) as NVTX ranges, so that Nsight Systems
users see ArtTRT's phases on their timeline, and as PyTorch profiler labels (torch.profiler.record_function).

NVTX only where a CUDA GPU is.
An NVTX range costs about a microsecond: phases are marked, never single batches.

Usage:
    with phase("build"):
        ...
"""
from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar, cast

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


PREFIX = "arttrt:"
F = TypeVar("F", bound=Callable[..., Any])


def nvtx_enabled() -> bool:
    return bool(torch.cuda.is_available())


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    label = PREFIX + name
    nvtx = nvtx_enabled()
    with torch.profiler.record_function(label):
        if nvtx:
            torch.cuda.nvtx.range_push(label)
        try:
            yield
        finally:
            if nvtx:
                torch.cuda.nvtx.range_pop()


class PhaseMarks:
    """Consecutive phases of a loop (warm-up, measure, short batch): entering one closes the last.

    Usage:
        marks = PhaseMarks(); marks.enter("warm-up"); ...; marks.enter("measure"); ...; marks.close()
    """

    def __init__(self) -> None:
        self._open: Optional[Any] = None

    def enter(self, name: str) -> None:
        self.close()
        self._open = phase(name)
        self._open.__enter__()

    def close(self) -> None:
        if self._open is not None:
            opened, self._open = self._open, None
            opened.__exit__(None, None, None)


def in_phase(name: str) -> Callable[[F], F]:
    """Decorator: the function's every call is the phase `name`."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return fn(*args, **kwargs)

        return cast(F, inner)

    return wrap
