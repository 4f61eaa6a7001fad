"""The one comparison loop, beside the timing loop: how far a runner drifts from a reference runner, input by
input and over a dataset (its tables are in utils/report/sections/compare_tables.py, its command in main.py --compare).

Both runners get the same uint8 batches and normalise them the same way. Statistics are running sums
updated batch by batch: memory stays bounded (50 000 inputs x 1000 classes never need both full
output matrices at once); only the flipped images are kept.

Tables (the original project's "Comparisons" section):
  - percentage of output values equal under numpy.isclose semantics, |other - ref| <= atol + rtol * |ref|
    (computed with torch.isclose on the raw outputs);
  - for ranks 1..10: the MAE between the two sides' scores at that rank (each side's k-th largest output,
    as logits like the original's example, and as softmax probabilities) and the percentage of inputs whose
    class at that rank differs;
  - a top-10 example (reference score and label beside the other's).
Beyond it: top-1 agreement, top-5 overlap, max abs and relative L2 error of the raw outputs, and on a
dataset the images whose top-1 flipped (CSV) with how many went right->wrong and wrong->right.

Usage:
    stats = compare_runners(ref_runner, other_runner, dataset, batch_size=32, rtol=1e-3, atol=1e-8)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence


from utils.core.deps import inference_mode
from utils.backends.base import Runner
from utils.core.errors import ArtTRTError
from utils.core.predictions import no_prediction
from utils.core.progress import progress_bar
from utils.data.cache import CachedDataset
from utils.measure.measurement import pad_batch

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)
RANKS = 10


def to_scores(y: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities; outputs that already are probabilities (YOLOv8-cls) are kept as they are."""
    y = y.double()
    if bool((y >= 0).all()) and torch.allclose(y.sum(dim=1), torch.ones(y.shape[0], dtype=y.dtype), atol=1e-3):
        return y
    return torch.softmax(y, dim=1)


@dataclass
class CompareStats:
    rtol: float
    atol: float
    class_names: Optional[List[str]] = None
    inputs: int = 0
    values: int = 0
    close: int = 0
    rank_abs_err: List[float] = field(default_factory=lambda: [0.0] * RANKS)        # on probabilities
    rank_logit_err: List[float] = field(default_factory=lambda: [0.0] * RANKS)      # on the raw outputs (logits)
    rank_class_diff: List[int] = field(default_factory=lambda: [0] * RANKS)
    top1_agree: int = 0
    top5_overlap: float = 0.0
    max_abs: float = 0.0
    sq_diff: float = 0.0
    sq_ref: float = 0.0
    labelled: int = 0
    finite_inputs: int = 0          # inputs whose outputs are all finite on both sides: the errors are over these
    ref_nonfinite: int = 0          # inputs with a NaN or Inf output, per side
    other_nonfinite: int = 0
    ref_correct: int = 0
    other_correct: int = 0
    right_to_wrong: int = 0
    wrong_to_right: int = 0
    flips: List[Dict[str, Any]] = field(default_factory=list)
    example: List[Dict[str, Any]] = field(default_factory=list)

    def update(self, ref: torch.Tensor, other: torch.Tensor, labels: torch.Tensor, files: Sequence[str]) -> None:
        """Adds one batch of outputs (any device/dtype; moved to float64 on the CPU here)."""
        if ref.shape != other.shape:
            raise ArtTRTError(f"the two runners' outputs differ in shape: {tuple(ref.shape)} vs {tuple(other.shape)}")
        ref, other = ref.detach().double().cpu(), other.detach().double().cpu()
        b, c = ref.shape
        k = min(RANKS, c)
        self.inputs += b
        # NaN or Inf is not a number to subtract: such inputs are counted per side, their top-1 is "none" (never a
        # class argmax picked among NaNs), and every error below is over the inputs finite on both sides (max(0, nan)
        # is 0 in Python: a NaN run once reported "max abs error 0.000e+00")
        ref_bad, other_bad = ~torch.isfinite(ref).all(dim=1), ~torch.isfinite(other).all(dim=1)
        self.ref_nonfinite += int(ref_bad.sum())
        self.other_nonfinite += int(other_bad.sum())
        ok = ~(ref_bad | other_bad)
        self.finite_inputs += int(ok.sum())
        self.values += int(ok.sum()) * c
        self.close += int(torch.isclose(other[ok], ref[ok], rtol=self.rtol, atol=self.atol).sum())
        if bool(ok.any()):
            diff = other[ok] - ref[ok]
            self.max_abs = max(self.max_abs, float(diff.abs().max()))
            self.sq_diff += float((diff ** 2).sum())
            self.sq_ref += float((ref[ok] ** 2).sum())
        rs, ri = to_scores(torch.nan_to_num(ref)).topk(k, dim=1)
        os_, oi = to_scores(torch.nan_to_num(other)).topk(k, dim=1)
        ri[no_prediction(ref)], oi[no_prediction(other)] = -1, -1  # no class for NaN/Inf or flat outputs
        rs, os_ = rs * ok.unsqueeze(1), os_ * ok.unsqueeze(1)
        rl = ref.gather(1, ri.clamp(min=0))[ok]  # each side's k-th largest raw output (logit), finite inputs only
        ol = other.gather(1, oi.clamp(min=0))[ok]
        for r in range(k):
            self.rank_abs_err[r] += float((rs[ok, r] - os_[ok, r]).abs().sum())
            self.rank_logit_err[r] += float((rl[:, r] - ol[:, r]).abs().sum())
            self.rank_class_diff[r] += int((ri[:, r] != oi[:, r]).sum())
        self.top1_agree += int(((ri[:, 0] == oi[:, 0]) & ok & (ri[:, 0] >= 0)).sum())  # no class agrees with none
        k5 = min(5, c)
        overlap = (ri[:, :k5].unsqueeze(2) == oi[:, :k5].unsqueeze(1)).any(dim=2).sum(dim=1).double() / k5
        self.top5_overlap += float((overlap * ok).sum())
        if not self.example and bool(ok[0]):
            self.example = [{"rank": r + 1, "ref_score": float(rs[0, r]), "ref_class": int(ri[0, r]),
                             "other_score": float(os_[0, r]), "other_class": int(oi[0, r])} for r in range(k)]
        for j in range(b):
            lab = int(labels[j])
            ref_ok, other_ok = int(ri[j, 0]) == lab, int(oi[j, 0]) == lab
            if lab >= 0:
                self.labelled += 1
                self.ref_correct += ref_ok
                self.other_correct += other_ok
            if int(ri[j, 0]) != int(oi[j, 0]):
                self.flips.append({"file": files[j], "true_class": lab if lab >= 0 else None,
                                   "ref_class": int(ri[j, 0]), "ref_score": float(rs[j, 0]),
                                   "other_class": int(oi[j, 0]), "other_score": float(os_[j, 0])})
                if lab >= 0:
                    self.right_to_wrong += ref_ok and not other_ok
                    self.wrong_to_right += other_ok and not ref_ok

    def summary(self) -> Dict[str, Any]:
        n = max(self.inputs, 1)
        f = self.finite_inputs
        k = len(self.example) or RANKS
        return {
            "inputs": self.inputs, "rtol": self.rtol, "atol": self.atol, "finite_inputs": f,
            "ref_nonfinite": self.ref_nonfinite, "other_nonfinite": self.other_nonfinite,
            "isclose_percent": 100.0 * self.close / self.values if self.values else None,
            "rank_mae": [self.rank_abs_err[r] / f if f else None for r in range(k)],
            "rank_logit_mae": [self.rank_logit_err[r] / f if f else None for r in range(k)],
            "rank_class_diff_percent": [100.0 * self.rank_class_diff[r] / n for r in range(k)],
            "top1_agreement_percent": 100.0 * self.top1_agree / n,
            "top5_overlap_percent": 100.0 * self.top5_overlap / n,
            "max_abs_error": self.max_abs if f else None,
            "rel_l2_error": math.sqrt(self.sq_diff / self.sq_ref) if self.sq_ref > 0 else None,
            "flips": len(self.flips), "labelled": self.labelled,
            "ref_top1": 100.0 * self.ref_correct / self.labelled if self.labelled else None,
            "other_top1": 100.0 * self.other_correct / self.labelled if self.labelled else None,
            "right_to_wrong": self.right_to_wrong, "wrong_to_right": self.wrong_to_right,
            "example_top10": [{**e, "ref_label": self.label(e["ref_class"]), "other_label": self.label(e["other_class"])}
                              for e in self.example],
        }

    def label(self, idx: int) -> str:
        if idx < 0:
            return "none (NaN/Inf output)"
        if self.class_names and 0 <= idx < len(self.class_names):
            return f"{idx} {self.class_names[idx]}"
        return str(idx)


@inference_mode
def compare_runners(ref: Runner, other: Runner, dataset: CachedDataset, batch_size: int, rtol: float, atol: float,
                    limit: Optional[int] = None, class_names: Optional[List[str]] = None,
                    progress: bool = True) -> CompareStats:
    """Runs both runners over the same batches and accumulates the statistics."""
    if rtol < 0 or atol < 0:
        raise ArtTRTError(f"-rtol and -atol must not be negative (got rtol={rtol}, atol={atol})")
    stats = CompareStats(rtol, atol, class_names)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    bar = progress_bar(total=math.ceil(n / batch_size), desc=f"{ref.name} vs {other.name}", enabled=progress)
    for images, labels, idx in dataset.batches(batch_size, limit=n):
        outs = []
        for r in (ref, other):
            x = r.normalizer(images)
            if r.fixed_shape and x.shape[0] < batch_size:  # pad, as the timing loop does, and drop the padding
                x = pad_batch(x, batch_size)
            outs.append(r.infer(x)[:len(idx)].float().cpu())
        stats.update(outs[0], outs[1], labels, [dataset.files[i] for i in idx])
        bar.update(1)
    bar.close()
    return stats
