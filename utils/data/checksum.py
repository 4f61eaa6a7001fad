"""A checksum of every decoded image, computed when the cache is written and checked on every read, on the
device where the batch already is (so it costs no host time, even at TensorRT's speed).

For an image of n bytes read as 32-bit words v_k (bytes where n is not a multiple of 4), the checksum is
sum_k (w_k * v_k mod 2^32, as a signed 32-bit number), summed exactly in 64 bits, with fixed odd weights w_k.
A change confined to one word changes its product (an odd weight times a nonzero change below 2^32 is never 0
modulo 2^32) and so the exact sum; a zeroed, shifted or swapped row changes it except by rare coincidence.
32-bit products are native on a GPU (64-bit ones are not); NumPy and PyTorch compute the same numbers.

Usage:
    sums = checksums_numpy(images_u8)            # (N,) int64, at write time
    bad = (checksums_torch(batch_on_gpu, weights_torch(nbytes, device)) != expected).sum()
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch

SEED = 20261129


def _words(nbytes: int) -> int:
    return 4 if nbytes % 4 == 0 else 1


@functools.lru_cache(maxsize=8)
def weights_numpy(nbytes: int) -> np.ndarray:
    """The fixed odd 32-bit weights for images of `nbytes` bytes, one per word, as uint32."""
    n = nbytes // _words(nbytes)
    w = np.random.default_rng(SEED).integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    return w | np.uint32(1)


def weights_torch(nbytes: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(weights_numpy(nbytes).view(np.int32)).to(device)


def checksums_numpy(images: np.ndarray) -> np.ndarray:
    """(N,) int64 checksums of N uint8 images (any shape after the first axis)."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    nbytes = flat.shape[1]
    words = flat.view(np.uint32) if _words(nbytes) == 4 else flat
    w = weights_numpy(nbytes)
    out = np.empty(len(flat), np.int64)
    for i in range(len(flat)):  # row by row: no (N, words) temporary of products
        prod = (words[i].astype(np.uint32) * w).view(np.int32)  # uint32 arithmetic wraps modulo 2^32
        out[i] = prod.sum(dtype=np.int64)
    return out


def checksums_torch(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N,) int64 checksums of N uint8 images on their device; weights from weights_torch on that device."""
    flat = images.reshape(images.shape[0], -1)
    words = flat.view(torch.int32) if _words(flat.shape[1]) == 4 else flat.to(torch.int32)
    return (words * weights).sum(dim=1, dtype=torch.int64)  # int32 products wrap modulo 2^32 as in NumPy
