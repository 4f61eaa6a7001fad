"""How often each setup's top-1 class is PyTorch fp32's on the same images. Each accuracy job keeps its predictions
beside its record (predictions/<job key>.npy) and its record is written once: with its agreement where the
reference's predictions exist already (a study runs each network's PyTorch fp32 setup first), else without; a table
drawn later computes the missing ones in memory from the saved predictions (with_agreement), never rewriting a record.

Usage:
    on_result = predictions_saver(output, key, reference)   # reference: the PyTorch fp32 predictions to agree with
    shown = with_agreement(output, records)                 # copies, the missing agreements filled in
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.backends.registry import options_label
from utils.core.confidence import paired_change
from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_path, inside, regular_file
from utils.data.imagenet import readable_class_names
from utils.report.schema import Record
from utils.report.select import images_key, is_reference
from utils.study.plan import JOB_KINDS

log = logging.getLogger(__name__)


Reference = Callable[[Any], Optional[Tuple[np.ndarray, str]]]  # a measurement -> (PyTorch fp32's predictions, key)


def predictions_saver(output: Path, key: str, reference: Optional[Reference] = None,
                      folders: Optional[Sequence[str]] = None) -> Callable[[Any], Dict[str, Any]]:
    """Keeps an accuracy pass's top-1 class per image (predictions/<job key>.npy) and, where `reference` gives the
    PyTorch fp32 predictions of the same images, the agreement with them: fields of the record before it is written."""

    def save(result: Any) -> Dict[str, Any]:
        path = output / "predictions" / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        predictions = np.asarray(result.predictions, dtype=np.int64)
        labels = np.asarray(getattr(result, "labels", np.zeros(0)), dtype=np.int64)
        _save(path, predictions)
        out: Dict[str, Any] = {"predictions_file": str(path.relative_to(output))}
        if labels.shape == predictions.shape and (labels >= 0).any():  # the paired statistics need the labels
            _save(path.with_name(f"{key}.labels.npy"), labels)
            out["labels_file"] = str(path.with_name(f"{key}.labels.npy").relative_to(output))
        ref = reference(result) if reference is not None else None
        agreement = top1_agreement(predictions, ref[0]) if ref is not None else None
        if agreement is not None and ref is not None:
            out.update(agreement, agree_top1_ref_key=ref[1])
            names = readable_class_names(folders)  # the dataset's class folders, as people read them
            if "labels_file" in out and ref[1] != key:  # (the reference against itself: no paired comparison)
                out.update(paired_change(predictions, ref[0], labels, names) or {})
        return out

    return save


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def is_reference_run(spec: Any, sync: bool) -> bool:
    """A spec that runs as the PyTorch fp32 row every other is measured against (utils.report.select.is_reference,
    asked of the record it will write)."""
    return is_reference(Record.model_construct(backend=spec.backend, precision=spec.precision,
                                               options=options_label(spec), cuda_graph=spec.cuda_graph,
                                               mode="sync" if sync else "pipelined", device=spec.device))


def reference_predictions(output: Path, records: Sequence[Record], want: Any
                          ) -> Optional[Tuple[np.ndarray, str]]:
    """The newest PyTorch fp32 predictions among records of images key `want`, with that record's job key."""
    for r in reversed(list(records)):
        if (is_reference(r) and images_key(r) == want and r.predictions_file and not r.error
                and r.role in KEEPS_PREDICTIONS):
            try:
                return load_predictions(output, r.predictions_file), str(r.job_key)
            except (OSError, ValueError, ArtTRTError) as err:
                log.warning("no agreement with %s: %s", r.path, first_line(err))
    return None


def load_predictions(output: Path, name: str) -> np.ndarray:
    """A predictions file a record names: confined to the output folder, a regular file, no pickles."""
    return np.load(regular_file(inside(output, name), "predictions"), allow_pickle=False)


def top1_agreement(a: np.ndarray, ref: np.ndarray) -> Optional[Dict[str, Any]]:
    """The record fields of how often top-1 classes a agree with the reference's: over the images the reference
    ranks; one that a could not rank (-1: NaN/Inf) is a disagreement. None where the two are not comparable."""
    both = (ref >= 0) if a.shape == ref.shape and a.ndim == 1 else np.zeros(0, bool)
    if not both.any():
        return None
    return {"agree_top1_percent": round(100.0 * float((a[both] == ref[both]).mean()), 3),
            "agree_top1_images": int(both.sum())}


KEEPS_PREDICTIONS = [role for role, kind in JOB_KINDS.items() if kind.keeps_predictions]


def with_agreement(output: Path, records: Sequence[Record]) -> List[Record]:
    """records, with a copy in place of each accuracy record whose agreement with PyTorch fp32 (same network, weights
    and images) was not known when it was written, that agreement filled in from the saved predictions; no record
    file is written."""
    refs: Dict[Any, Record] = {}
    for r in records:
        if (r.kind == "validate" and is_reference(r) and not r.error and r.predictions_file
                and r.role in KEEPS_PREDICTIONS):
            refs[images_key(r)] = r
    out = []
    for r in records:
        ref = refs.get(images_key(r))
        if (ref is None or r.kind != "validate" or r.error or not r.predictions_file
                or r.role not in KEEPS_PREDICTIONS or r.agree_top1_ref_key == ref.job_key):
            out.append(r)
            continue
        try:
            mine = load_predictions(output, r.predictions_file)
            theirs = load_predictions(output, ref.predictions_file)
            agreement = top1_agreement(mine, theirs)
            if agreement is not None and r.labels_file:
                agreement.update(paired_change(mine, theirs, load_predictions(output, r.labels_file)) or {})
        except (OSError, ValueError, ArtTRTError) as err:
            log.warning("no agreement for %s: %s", r.path, first_line(err))
            agreement = None
        out.append(r.with_fields(**agreement, agree_top1_ref_key=ref.job_key) if agreement else r)
    return out
