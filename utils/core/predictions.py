"""What a model predicted, the one way every measurement reads it (timing, serving under LoadGen, --compare and the
mixed-precision search): an image whose outputs are not all numbers (NaN, Inf) or are all equal (nothing ranks: an
fp16 underflow to zero, say) has no prediction, class -1, and counts as wrong; never the class that argmax or topk
picked among NaNs or ties.

Usage:
    top = top_classes(logits, 5)            # (n, 5) class indices, -1 rows for no prediction
    right = (top[:, 0] == labels).sum()
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


def output_flags(y: "torch.Tensor") -> "torch.Tensor":
    """(n, 2) booleans per image: its outputs are not all finite (NaN, Inf); its outputs are all equal (nothing
    ranks). One output always ranks: a single-output model is never flat."""
    yf = y.float()
    flat = (yf.amax(dim=1) == yf.amin(dim=1)) & (yf.shape[1] > 1)
    return torch.stack([~torch.isfinite(yf).all(dim=1), flat], dim=1)


def no_prediction(y: "torch.Tensor") -> "torch.Tensor":
    """(n,) booleans: the images without a prediction (outputs not all numbers, or all equal)."""
    return output_flags(y).any(dim=1)


def top_classes(y: "torch.Tensor", k: int = 1) -> "torch.Tensor":
    """(n, min(k, classes)) top classes of each row of logits y (any device or dtype), best first; -1 across the
    row of an image without a prediction."""
    top = torch.nan_to_num(y.float()).topk(min(k, y.shape[1]), dim=1).indices
    return torch.where(no_prediction(y).view(-1, 1), torch.full_like(top, -1), top)
