"""How often each setup's top-1 class is PyTorch fp32's on the same images: each accuracy job keeps its predictions
beside its record, and the share that agrees with the reference's is filled into the record once both exist.

Usage:
    fill_agreement(output, records)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_path, atomic_write_json, inside, regular_file
from utils.report.records import load_records
from utils.report.select import images_key, is_reference
from utils.study.plan import JOB_KINDS

log = logging.getLogger(__name__)


def predictions_saver(output: Path, key: str) -> Callable[[Any], Dict[str, Any]]:
    """Keeps an accuracy pass's top-1 class per image (predictions/<job key>.npy): the agreement of every setup
    with PyTorch fp32 is computed from these."""

    def save(result: Any) -> Dict[str, Any]:
        path = output / "predictions" / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(result.predictions, dtype=np.int64), allow_pickle=False)
        return {"predictions_file": str(path.relative_to(output))}

    return save


def top1_agreement(a: np.ndarray, ref: np.ndarray) -> Optional[Dict[str, Any]]:
    """The record fields of how often top-1 classes a agree with the reference's: over the images the reference
    ranks; one that a could not rank (-1: NaN/Inf) is a disagreement. None where the two are not comparable."""
    both = (ref >= 0) if a.shape == ref.shape and a.ndim == 1 else np.zeros(0, bool)
    if not both.any():
        return None
    return {"agree_top1_percent": round(100.0 * float((a[both] == ref[both]).mean()), 3),
            "agree_top1_images": int(both.sum())}


KEEPS_PREDICTIONS = [role for role, kind in JOB_KINDS.items() if kind.keeps_predictions]


def fill_agreement(output: Path, records: Optional[Sequence[Dict[str, Any]]] = None) -> int:
    """For every accuracy record under output with saved predictions: the share of images whose top-1 class is
    PyTorch fp32's (same network, weights and dataset), written into the record; returns how many it wrote."""
    recs = [r for r in (load_records(output, "validate") if records is None else records)
            if r.get("kind") == "validate" and not r.get("error") and r.get("predictions_file")
            and r.get("role") in KEEPS_PREDICTIONS]
    refs = {images_key(r): r for r in recs if is_reference(r)}
    wrote = 0
    for r in recs:
        ref = refs.get(images_key(r))
        if ref is None or r.get("agree_top1_ref_key") == ref.get("job_key"):
            continue
        try:  # files named by records: confined to the output folder, regular files, no pickles
            a = np.load(regular_file(inside(output, r["predictions_file"]), "predictions"), allow_pickle=False)
            b = np.load(regular_file(inside(output, ref["predictions_file"]), "predictions"), allow_pickle=False)
        except (OSError, ValueError, ArtTRTError) as err:
            log.warning("no agreement for %s: %s", r.get("_path"), first_line(err))
            continue
        agreement = top1_agreement(a, b)
        if agreement is None:
            continue
        r.update(agreement)
        r["agree_top1_ref_key"] = ref.get("job_key")
        atomic_write_json(Path(r["_path"]), {k: v for k, v in r.items() if k != "_path"})  # in memory too
        wrote += 1
    return wrote
