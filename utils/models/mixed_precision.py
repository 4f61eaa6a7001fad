"""Mixed precision within a top-1 budget: which layers to keep out of int8/fp8 so that top-1 stays within
--max_top1_drop points of fp32 (main.py -v --precision int8 --max_top1_drop 1 --mixed_precision).

1. Quantize every layer (k = 0) and measure its top-1 on held-out images: the dataset's images that calibration did
   not pick (all of them where calibration reads another folder), at most 2000 by a seeded pick. fp32's top-1 on
   the same images is the reference; drop = fp32 top-1 - quantized top-1, in points. Within budget: done.
2. Otherwise rank the Q/DQ-fenced layers of the k = 0 file by the error each adds (utils.models.drift, on 8
   calibration images), worst first.
3. Keep the worst k in high precision (the quantizer's nodes_to_exclude) and bisect k for the smallest one within
   budget: k = all ranked layers first (over budget even then: that file, met false, one warning), then halves.

The bisection assumes that keeping more layers out of quantization never lowers top-1. Nothing guarantees it
(quantization noise can flip an image either way, and a few hundred held-out images move top-1 in steps of a
fraction of a point), so every step's measured top-1 is in the result and in its table: a step whose top-1 falls
as k grows shows there, and the k found is then the smallest within budget among the ones tried, not everywhere.

Where TensorRT's builder is installed and a GPU is visible, each step's file is also built into an engine (strongly
typed, at the fixed shape (1, 3, crop, crop)) and, where this runtime loads it, the precision of each engine layer is
read back by the engine inspector: step["engine"]. Without TensorRT no build is tried. That probe is TensorRT's code,
offered by the backends layer (set_engine_probe, from utils.backends.registry), since this layer may not import it.
result["engine_measured"] says which of these were measured; speed never is (run -trt on the final file).

The search is an artefact of utils.core.artefact.cached, keyed by the fp32 file's content, the precision, the
calibration settings, the budget and the held-out files: a rerun finds it and only fetches the final file (itself a
cached artefact of utils.models.precision, named by content like every other).

Usage:
    out, facts = convert_precision(src, "int8", net, CalibOptions(calib_size=4, mixed_precision_budget=1.0), data)
    facts["mixed_precision"]["final_k"], facts["mixed_precision"]["steps"]
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.core.artefact import cached
from utils.core.confidence import paired_change
from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_write_json
from utils.core.predictions import top_classes
from utils.core.top1_budget import INCONCLUSIVE, WITHIN, budget_points, non_inferiority
from utils.data.options import DataOptions
from utils.data.preprocess import Normalizer
from utils.models import drift
from utils.models.onnx_export import import_onnxruntime, session_options

if TYPE_CHECKING:
    import torch

    from utils.models.networks import Network
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)

HELDOUT_CAP = 2000     # held-out images that judge the search, at most (a seeded pick above it)
SMALL_HELDOUT = 100    # below this, one image moves top-1 by more than a point: said once
DRIFT_IMAGES = 8       # calibration images that rank the layers (utils.models.drift)
EVAL_BATCH = 16

SPEED_NOTE = "speed: not measured by the search; run -trt on the final file"

# what each step measures: k -> {"top1": %, "size_mib": ..., "file": ..., and "engine" where TensorRT builds it}
Evaluate = Callable[[int], Dict[str, Any]]


def heldout_pick(val_files: Sequence[Path], calib_files: Sequence[Path], seed: int,
                 cap: int = HELDOUT_CAP) -> np.ndarray:
    """The indices of val_files that are not calibration images (both as resolved paths), sorted, at most `cap` of
    them by a pick seeded with `seed`; an empty array where none is left."""
    return _capped(_not_calibration(val_files, calib_files), seed, cap)


def _not_calibration(val_files: Sequence[Path], calib_files: Sequence[Path]) -> np.ndarray:
    """The indices of val_files that are not calibration images (both as resolved paths), in order."""
    calib = {Path(p).resolve() for p in calib_files}
    return np.array([i for i, p in enumerate(val_files) if Path(p).resolve() not in calib], dtype=np.int64)


def _capped(left: np.ndarray, seed: int, cap: int) -> np.ndarray:
    """`left` itself, or `cap` of its indices by a pick seeded with `seed`, sorted."""
    if len(left) > cap:
        rng = np.random.default_rng(int(seed))
        left = np.sort(rng.choice(left, size=cap, replace=False))
    return left


@dataclass(frozen=True)
class Heldout:
    """The images that judge a search: rows `indices` of the decoded dataset `ds`, normalised by `normalize`."""

    ds: Any
    indices: np.ndarray
    normalize: Callable[[Any], Any]
    facts: Dict[str, Any]


def heldout_images(net: Network, data: DataOptions, calib_facts: Dict[str, Any], seed: int,
                   cap: int = HELDOUT_CAP) -> Heldout:
    """The held-out images of the validation dataset (data.dataset) and the facts that say which.

    Raises:
        ArtTRTError: no labelled dataset, or no image left once calibration took its own.
    """

    if not data.dataset:
        raise ArtTRTError("--mixed_precision measures top-1 on held-out labelled images: pass --dataset DIR")
    ds = data.with_dataset(None).open(net.preprocess, net.num_classes)
    if ds.num_classes is None:
        raise ArtTRTError(f"--mixed_precision measures top-1: {data.dataset} has no labels (class folders)")
    root = Path(data.dataset).resolve()
    calib_root = Path(calib_facts["calib_dataset"]).resolve()
    calib_files = [calib_root / f for f in calib_facts["calib_files"]]
    not_calib = _not_calibration([root / f for f in ds.files], calib_files)
    picked = _capped(not_calib, seed, cap)
    if len(picked) == 0:
        raise ArtTRTError(f"no held-out image is left to judge --mixed_precision: calibration took all {len(ds)} "
                          f"images of {data.dataset}; pass a smaller --calib_size, or --calib_dataset another folder")
    left = len(not_calib)
    rule = (f"the {left} images of {root.name} that calibration did not pick"
            + (f", {len(picked)} of them by a pick seeded with {seed} (at most {cap})" if left > cap else ""))
    if left > cap:
        log.info("mixed precision: %d held-out images judge the search, a pick seeded with %d of the %d that "
                 "calibration left (at most %d)", len(picked), seed, left, cap)
    if len(picked) < SMALL_HELDOUT:
        log.warning("mixed precision: only %d held-out images judge the search: one image is %.2f points of top-1",
                    len(picked), 100.0 / len(picked))
    facts = {"heldout_dataset": str(root), "heldout_dataset_key": ds.meta.get("key"), "heldout_images": len(picked),
             "heldout_rule": rule, "heldout_files": [ds.files[i] for i in picked]}
    return Heldout(ds, picked, Normalizer(net.preprocess, torch.device("cpu")), facts)


def onnx_answers(path: Path, heldout: "Heldout") -> Tuple[np.ndarray, np.ndarray]:
    """(top-1 class per held-out image, its label) of an ONNX file, with ONNX Runtime on the CPU, set as the onnxrt
    backend sets it (Q/DQ int8 kept int8), so the search measures what that backend runs; a batch at a time, so 2000
    images never sit in memory as floats. NaN/Inf or flat outputs: class -1, wrong (utils.core.predictions)."""

    ort = import_onnxruntime()
    opts = session_options(ort)
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ArtTRTError(f"ONNX Runtime cannot load {path.name} to measure its top-1: {first_line(err)}") from err
    name = session.get_inputs()[0].name
    preds, labs = [], []
    for images, labels, _ in heldout.ds.batches(EVAL_BATCH, indices=heldout.indices):
        x = heldout.normalize(images).numpy().astype(np.float32)
        preds.append(top_classes(torch.from_numpy(np.asarray(session.run(None, {name: x})[0])), 1)[:, 0].numpy())
        labs.append(np.asarray(labels))
    return np.concatenate(preds).astype(np.int64), np.concatenate(labs).astype(np.int64)


def top1_of(answers: Tuple[np.ndarray, np.ndarray]) -> float:
    pred, labels = answers
    return 100.0 * float((pred == labels).sum()) / len(labels)


def onnx_top1(path: Path, heldout: "Heldout") -> float:
    """Top-1 (%) of an ONNX file on the held-out images (onnx_answers)."""
    return top1_of(onnx_answers(path, heldout))


def _judge(drop: float, budget: float, fp32_top1: float, got: Dict[str, Any]) -> str:
    """A step as the --max_top1_drop gate judges a row (utils.core.top1_budget.non_inferiority): on the paired
    interval of the change where the step has one (got["paired"]), else the point drop."""
    paired = got.get("paired") or {}
    return non_inferiority(drop, budget_points(budget, fp32_top1), paired.get("paired_low_points"),
                           paired.get("paired_high_points"))


def bisect_keep(evaluate: Evaluate, rank: Callable[[], Sequence[str]], fp32_top1: float,
                budget: float) -> Dict[str, Any]:
    """The smallest k such that keeping the k worst layers out of quantization keeps the top-1 drop within budget.

    k = 0 first; over budget: rank() (once) and k = all ranked layers (over budget still: stop there, met false,
    one warning); then bisection between the largest k over budget and the smallest within it. Assumes top-1 never
    falls as k grows (see the module docstring); every step measured is returned, in the order measured.

    Args:
        evaluate: evaluate(k) -> {"top1": %, and optionally "size_mib", "file", "engine"} of the file with ranked[:k]
            kept ("engine", where given, is copied into the step as it is).
        rank: the layers, worst first (called only where k = 0 is over budget).

    Returns:
        {"steps": [{k, kept, added, top1, drop, size_mib, file, within}], "final_k", "kept", "met"}.
    """
    steps: List[Dict[str, Any]] = []
    ranked: List[str] = []

    def step(k: int) -> bool:
        got = evaluate(k)
        since = max((s["k"] for s in steps if s["k"] < k), default=0)  # the names this step adds to a smaller one
        drop = round(float(fp32_top1) - float(got["top1"]), 6)
        outcome = _judge(drop, budget, fp32_top1, got)
        steps.append({"k": k, "kept": ranked[:k], "added": ranked[since:k], "top1": float(got["top1"]),
                      "drop": drop, "size_mib": got.get("size_mib"), "file": got.get("file"),
                      "within": outcome == WITHIN, "outcome": outcome})
        if got.get("paired"):  # the paired 95 % interval of the drop, points (low..high)
            steps[-1]["drop_interval"] = [round(-float(got["paired"]["paired_high_points"]), 4),
                                          round(-float(got["paired"]["paired_low_points"]), 4)]
        if "engine" in got:
            steps[-1]["engine"] = got["engine"]
        return bool(steps[-1]["within"])

    if step(0):
        return {"steps": steps, "final_k": 0, "kept": [], "met": True}
    ranked.extend(rank())
    n = len(ranked)
    if n == 0 or not step(n):
        last = steps[-1]
        if last["outcome"] == INCONCLUSIVE:
            low, high = last["drop_interval"]
            log.warning("mixed precision: with all %d ranked layers kept out of quantization, top-1 drops %.2f points "
                        "(paired 95 %% interval %.2f..%.2f), which holds --max_top1_drop %s: too few held-out images "
                        "to tell; using that file", n, last["drop"], low, high, f"{budget:g}")
        else:
            log.warning("mixed precision: with all %d ranked layers kept out of quantization top-1 still drops %.2f "
                        "points (more than --max_top1_drop %s): using that file", n, last["drop"], f"{budget:g}")
        return {"steps": steps, "final_k": n, "kept": ranked[:n], "met": False}
    lo, hi = 0, n  # lo over budget, hi within it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if step(mid):
            hi = mid
        else:
            lo = mid
    return {"steps": steps, "final_k": hi, "kept": ranked[:hi], "met": True}


# what measures each step's TensorRT engine: probe(precision, crop) -> (measure(onnx file) -> step["engine"], the
# environment in words), or (None, why no build is tried); set by the backends layer (utils.backends.registry), which
# may import TensorRT's code where this layer may not
EngineProbe = Callable[[str, int], Tuple[Optional[Callable[[Path], Dict[str, Any]]], str]]
_engine_probe: Optional[EngineProbe] = None
NO_PROBE = "no: no TensorRT engine builder was offered to the search (the backends layer offers it)"


def set_engine_probe(probe: Optional[EngineProbe]) -> None:
    """Offers the search a way to build and inspect each step's engine (None: none)."""
    global _engine_probe
    _engine_probe = probe


def engine_measured(steps: Sequence[Dict[str, Any]], probe: Optional[Callable[..., Any]], env: str,
                    crop: int) -> str:
    """What the search measured of each step's engine, in one sentence, speed included (never measured)."""
    if probe is None:
        return f"{env}; {SPEED_NOTE}"
    engines = [s["engine"] for s in steps if isinstance(s.get("engine"), dict)]
    built = sum(1 for e in engines if e["built"])
    read = sum(1 for e in engines if e.get("layer_precisions") is not None)
    return (f"{'yes' if read == len(steps) else 'partly' if built else 'no'}: engines built for {built} of "
            f"{len(steps)} steps with {env}, strongly typed at 1x3x{crop}x{crop}; layer precisions read back by the "
            f"engine inspector for {read} of them (a step's engine 'why' says where not); {SPEED_NOTE}")


def _names(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" (+{len(names) - most} more)" if len(names) > most else "")


def step_lines(result: Dict[str, Any]) -> List[str]:
    """The log's account of a search: one line per step, in the order measured (the table is the report's)."""
    return [f"k={s['k']}: top-1 {s['top1']:.2f} %, drop {s['drop']:.2f} points, "
            f"{'within' if s['within'] else 'over'} budget" + (f"; newly kept {_names(s['added'])}" if s["added"] else "")
            for s in result["steps"]]


def search(src: Path, precision: str, convert: Callable[[Tuple[str, ...]], Tuple[Path, Dict[str, Any]]],
           calib_images: Callable[[], np.ndarray], heldout: Heldout, budget: float, settings: Dict[str, Any],
           folder: Path, crop: int = 224) -> Tuple[Dict[str, Any], bool]:
    """The search for `src` at `precision` (cached): returns (its result, whether it was found done before).

    Args:
        convert: convert(names kept out of quantization) -> (quantized file, its facts).
        calib_images: loads the calibration images (normalised), the first DRIFT_IMAGES of which rank the layers.
        heldout: the images that judge each step.
        settings: what the result depends on besides src and the held-out files (precision, calibration, budget).
        crop: the network's input side: each step's engine (where TensorRT builds one) takes (1, 3, crop, crop).
    """

    facts = heldout.facts
    probe, env = _engine_probe(precision, crop) if _engine_probe is not None else (None, NO_PROBE)

    def make(tmp: Path) -> Dict[str, Any]:
        t0 = time.perf_counter()
        ref = onnx_answers(src, heldout)
        fp32_top1 = top1_of(ref)
        quantized: Dict[int, Path] = {}
        ranked: List[str] = []

        def evaluate(k: int) -> Dict[str, Any]:
            path, _ = convert(tuple(ranked[:k]))
            quantized[k] = path
            answers = onnx_answers(path, heldout)
            top1 = top1_of(answers)
            log.info("mixed precision: %d layers kept out of %s: top-1 %.2f%% (fp32 %.2f%%)", k, precision, top1,
                     fp32_top1)
            got = {"top1": top1, "size_mib": round(path.stat().st_size / 2**20, 3), "file": path.name,
                   "paired": paired_change(answers[0], ref[0], ref[1])}
            if probe is not None:
                got["engine"] = probe(path)
            return got

        def rank() -> List[str]:  # from the k = 0 file: the layers that add the most error first
            rows = drift.layer_drift(src, quantized[0], calib_images()[:DRIFT_IMAGES])
            ranked.extend(r["name"] for r in drift.top_drift(rows, top=len(rows), key="added_error"))
            return ranked

        result = bisect_keep(evaluate, rank, fp32_top1, budget)
        out = {"budget": float(budget), "budget_rule": str(budget), "precision": precision, "fp32_top1": fp32_top1,
               "ranked_layers": len(ranked), **facts, **result, "search_s": round(time.perf_counter() - t0, 3),
               "engine_measured": engine_measured(result["steps"], probe, env, crop)}
        atomic_write_json(tmp, out)
        return {}

    stem = src.stem.replace("-fp32-", f"-{precision}-mixed-") if "-fp32-" in src.stem else f"{src.stem}-{precision}-mixed"
    path, made = cached(folder, stem, ".search.json",
                        {**settings, "src": src, "heldout": facts["heldout_files"],
                         "heldout_dataset_key": facts.get("heldout_dataset_key"),
                         **({"engine": [env, crop]} if probe is not None else {})}, make)
    result = json.loads(path.read_text())
    return {**result, "search_file": str(path)}, bool(made["cached"])
