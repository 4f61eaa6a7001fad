"""Page-locking host memory where it is, through NVIDIA's own bindings (cuda-bindings, a dependency of
PyTorch's CUDA builds): the decoded cache can then be copied to a GPU by DMA straight from its memory map,
with no host copy per batch. The driver API is used (cuMemHostRegister), so a refusal leaves no "last
error" behind for PyTorch's next kernel-launch check to trip over.

Usage:
    why_not = page_lock(images)          # None when done
    page_unlock(images)                  # before the memory goes away (a study opens several datasets)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Tuple

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch


def page_lock(arr: np.ndarray) -> Optional[str]:
    """Page-locks arr's memory for every CUDA context (read-only where arr is); None when done, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if not arr.flags["C_CONTIGUOUS"] or arr.nbytes == 0:
        return "not one contiguous block"
    try:
        from cuda.bindings import driver as cu
    except ImportError:
        return "cuda-bindings (NVIDIA's cuda-python) is not installed"
    torch.empty(1, device="cuda")  # PyTorch's primary context exists and is current on this thread
    read_only = not arr.flags["WRITEABLE"]
    if read_only:
        err, ok = cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED,
                                          torch.cuda.current_device())
        if err != cu.CUresult.CUDA_SUCCESS or not ok:
            return "this platform cannot page-lock read-only memory"
    flags = cu.CU_MEMHOSTREGISTER_PORTABLE | (cu.CU_MEMHOSTREGISTER_READ_ONLY if read_only else 0)
    (err,) = cu.cuMemHostRegister(arr.ctypes.data, arr.nbytes, flags)
    return None if err == cu.CUresult.CUDA_SUCCESS else f"cuMemHostRegister answered {err.name}"


def page_unlock(arr: np.ndarray) -> None:
    """Undoes page_lock before arr's memory is unmapped: memory that stays registered after munmap makes a later
    mapping at the same address fail ("resource already mapped", seen on the H200 when a study moved to its next
    network)."""
    from cuda.bindings import driver as cu

    cu.cuMemHostUnregister(arr.ctypes.data)


def feed_choice(cuda: bool, integrated: bool, pin_in_place: Callable[[], bool]) -> Tuple[bool, bool, str]:
    """How batches reach the model: (the cache page-locked in place, a pinned copy per batch, the record's words).
    A discrete GPU: page-locked in place where CUDA allows, else a pinned copy. An integrated GPU (a Jetson: host
    and GPU share one memory) page-locks nothing: a pinned staging copy buys no DMA there, so each batch is copied
    from the host's pageable memory (latency-all's copy-in is that copy, not a transfer over a bus). The CPU: host."""
    if not cuda:
        return False, False, "host"
    if integrated:
        return False, False, "pageable copy (integrated GPU: host and GPU share one memory)"
    if pin_in_place():
        return True, False, "page-locked cache (cuMemHostRegister)"
    return False, True, "pinned copy per batch"
