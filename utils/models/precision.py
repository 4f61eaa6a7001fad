"""Precision as ONNX -> ONNX steps that run on the CPU: the precision lives in the file (TensorRT 11's way).

- fp16 / bf16: ModelOpt AutoCast (modelopt.onnx.autocast), I/O kept fp32 unless io_fp16.
- int8 / fp8:  ModelOpt ONNX post-training quantization (explicit Q/DQ nodes), calibrated on real
  images taken from the dataset cache through exactly the validation preprocessing. Where ModelOpt
  cannot run, ONNX Runtime's quantize_static in the form TensorRT's parser accepts (QDQ, symmetric,
  per-channel weights, biases left in float: TensorRT rejects int32 biases).
Every output is an artefact of utils.core.artefact.cached, keyed by (input file hash, settings), with a
sidecar naming the tool that made it. Calibration data is stored under a name that records network, input
size, image count and dataset, and its key includes the picked files: no cache ever needs deleting by hand.

Usage:
    path, facts = convert_precision(Path("x.onnx"), "int8", net, CalibOptions(calib_method="entropy"),
                                    DataOptions(dataset="datasets/imagenet"))
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from utils.core.artefact import cached
from utils.core.content import onnx_files
from utils.core.errors import ArtTRTError, at_least, first_line, library_prints, quiet_libraries
from utils.core.phases import in_phase
from utils.data.options import DataOptions
from utils.data.preprocess import Normalizer
from utils.models import mixed_precision as mp
from utils.models.onnx_export import read_metadata, set_metadata
from utils.models.paths import weights_dir

if TYPE_CHECKING:
    import onnx
    import torch

    from utils.models.networks import Network
else:
    from utils.core.deps import onnx, torch


log = logging.getLogger(__name__)

CALIB_METHODS = {"int8": ("max", "entropy"), "fp8": ("max",)}
# ModelOpt's default high-precision dtype (fp16) gives Q/DQ files that ONNX Runtime's CPU provider runs
# silently wrong (its WeightBiasQuantization mis-handles fp16 scales); fp32 is right on ONNX Runtime and
# accepted by TensorRT (measured on EfficientNet-Lite0: 0 of 20 top-1 with fp16 scales, 17 of 20 with fp32).
HIGH_PRECISION = "fp32"
ORT_FP8_NOTE = ("ONNX Runtime's CPU provider has no fp8 kernels: an fp8 Q/DQ file is validated with -trt "
                "on a GPU with fp8 (compute capability 8.9 or newer)")
ORT_FP16_NOTE = ("ONNX Runtime's CPU provider has no fp16 Conv kernel: it computes in fp32 on fp16-rounded "
                 "weights and activations at the cast boundaries, so this measures fp16 rounding, not fp16 kernels")


def _modelopt_onnx() -> Any:
    try:
        import modelopt.onnx.autocast as autocast
        import modelopt.onnx.quantization as quantization
    except ImportError as err:
        raise ArtTRTError("fp16/bf16/int8/fp8 conversion needs NVIDIA ModelOpt: "
                          "pip install 'nvidia-modelopt[onnx]'") from err
    quiet_libraries()  # ModelOpt sets its own loggers to INFO when imported
    return autocast, quantization


@dataclass(frozen=True)
class CalibOptions:
    """How int8/fp8 files are calibrated (argparse dests of add_args)."""

    calib_method: str = "entropy"
    calib_size: int = 500
    quantizer: str = "auto"                  # who inserts Q/DQ nodes: auto (ModelOpt, else ORT), modelopt, ort
    calib_dataset: Optional[str] = None      # default: the validation dataset
    seed: int = 0                            # picks the calibration images
    exclude: Tuple[str, ...] = ()            # ONNX node names kept out of quantization (in high precision)
    mixed_precision_budget: Optional[float] = None  # top-1 points: search which layers to exclude (mixed_precision)

    def __post_init__(self) -> None:
        """Checked here, the one place that owns it (a --calib_sizes grid makes one per size)."""
        at_least("calib_size", self.calib_size)
        budget = self.mixed_precision_budget
        if budget is not None and not (0 <= budget < float("inf")):
            raise ArtTRTError(f"--max_top1_drop is a number of points, at least 0, not {budget}")


def add_args(g: Any, calib_dataset: bool = True) -> None:
    """How fp16/bf16/int8/fp8 ONNX files are made: calibration method and size, quantizer, I/O type."""
    g.add_argument("--calib_method", default="entropy", choices=sorted({m for ms in CALIB_METHODS.values() for m in ms}),
                   help="int8/fp8 calibration method (fp8: max only)")
    g.add_argument("--calib_size", type=int, default=500, metavar="N",
                   help="calibration images (capped by the dataset)")
    g.add_argument("--quantizer", choices=["auto", "modelopt", "ort"], default="auto", metavar="Q",
                   help="who inserts Q/DQ: auto, modelopt or ort")
    g.add_argument("--fp16_io", action="store_true", help="AutoCast fp16/bf16: make the model's I/O fp16 too")
    if calib_dataset:
        g.add_argument("--calib_dataset", metavar="DIR", help="dataset for calibration (default --dataset)")


def calibration_data(net: Network, calib: CalibOptions, data: DataOptions, folder: Optional[Path] = None,
                     load: bool = True) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """Picks calib.calib_size images of the calibration dataset with a fixed seed, normalised as validation does.

    The images come from the same decoded cache as validation (the same DataOptions: class map, cache
    folder, decoders), so calibrating decodes nothing twice.

    Returns:
        (float32 array N x 3 x crop x crop, or None with load=False; facts with the picked files, the cache
        path and calib_prepare_s, the seconds spent making it now).
    """

    data = data.with_dataset(calib.calib_dataset)
    if not data.dataset:
        raise ArtTRTError("int8/fp8 need real calibration images: pass --dataset (or --calib_dataset) DIR")
    asked = int(calib.calib_size)  # at least 1: CalibOptions checks it
    ds = data.open(net.preprocess, net.num_classes)
    ds_root = Path(data.dataset)
    n = min(asked, len(ds))
    if n < asked:
        log.warning("calibration asked for %d images but dataset %s holds %d: using %d", asked, ds_root, len(ds), n)
    rng = np.random.default_rng(int(calib.seed))
    picked = np.sort(rng.choice(len(ds), size=n, replace=False))
    files = [ds.files[i] for i in picked]
    crop = net.preprocess.crop
    facts: Dict[str, Any] = {"calib_images": n, "calib_asked": asked, "calib_files": files,
                             "calib_dataset": str(ds_root), "calib_seed": int(calib.seed)}

    @in_phase("calibration images")
    def make(tmp: Path) -> Dict[str, Any]:
        norm = Normalizer(net.preprocess, torch.device("cpu"))
        arr = norm(torch.from_numpy(np.array(ds.images[picked]))).numpy().astype(np.float32)
        with open(tmp, "wb") as f:
            np.save(f, arr)
        return facts

    path, made = cached(folder or weights_dir() / "calib", f"{net.name}-{crop}x{crop}-n{n}-{ds_root.resolve().name}",
                        ".npy", {"dataset_key": ds.meta["key"], "files": files, "preprocess": net.preprocess.as_dict()},
                        make)
    arr = np.load(path) if load else None  # allow_pickle stays False: loading never runs code
    return arr, {**facts, "calib_data": str(path), "calib_prepare_s": made["prepare_s"]}


def _quantize_modelopt(src: Path, out: Path, mode: str, method: str, data: np.ndarray,
                       exclude: Tuple[str, ...] = ()) -> None:
    """ModelOpt's ONNX PTQ into `out` (through a name ending in .onnx, which ModelOpt wants); the nodes named in
    `exclude` stay in high precision. ModelOpt reads a private copy of src: it writes its intermediate files
    (shape-inferred and renamed models) beside its input, and has been seen to rewrite the input itself (a cached
    vit_b_16 export grew by 2,070 bytes), which would spoil the cached export every other run reads."""
    _, quantization = _modelopt_onnx()
    tmp_onnx = out.with_name(out.name + ".onnx")
    with tempfile.TemporaryDirectory(prefix="arttrt-modelopt-") as work:
        private = Path(work) / src.name
        for f in onnx_files(src):  # the file and its external data, under the names it refers to them by
            shutil.copyfile(f, Path(work) / f.relative_to(src.parent))
        _run_modelopt_quantize(quantization, private, tmp_onnx, out, mode, method, data, exclude)


def _run_modelopt_quantize(quantization: Any, src: Path, tmp_onnx: Path, out: Path, mode: str, method: str,
                           data: np.ndarray, exclude: Tuple[str, ...]) -> None:
    try:
        with library_prints():  # ONNX Runtime's calibrator prints its progress
            quantization.quantize(str(src), quantize_mode=mode, calibration_data=data, calibration_method=method,
                                  calibration_eps=["cpu"], high_precision_dtype=HIGH_PRECISION,
                                  nodes_to_exclude=list(exclude) or None, output_path=str(tmp_onnx),
                                  log_level="WARNING")
        tmp_onnx.replace(out)
    finally:
        tmp_onnx.unlink(missing_ok=True)


def _quantize_ort(src: Path, out: Path, method: str, data: np.ndarray, exclude: Tuple[str, ...] = ()) -> None:
    """ONNX Runtime's quantizer, in the form TensorRT accepts (QDQ, symmetric, per-channel, float biases); the
    nodes named in `exclude` stay in float (passed as a JSON file).

    It runs in a fresh interpreter: importing ModelOpt patches ONNX Runtime's quantization classes, after
    which quantize_static fails in the same process ("Quantization parameters are not specified").
    """

    with tempfile.TemporaryDirectory() as work:
        npy = Path(work) / "calib.npy"
        np.save(npy, data)
        names = Path(work) / "exclude.json"
        names.write_text(json.dumps(list(exclude)))
        r = subprocess.run([sys.executable, "-m", "utils.models.ort_quantize", str(src), str(out), method, str(npy),
                            work, str(names)], cwd=Path(__file__).resolve().parent.parent.parent, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise ArtTRTError(f"ONNX Runtime's quantizer failed on {src.name}: {last}")


def convert_precision(src: Path, precision: str, net: Network, calib: CalibOptions = CalibOptions(),
                      data: DataOptions = DataOptions(), io_fp16: bool = False,
                      folder: Optional[Path] = None) -> Tuple[Path, Dict[str, Any]]:
    """Converts an fp32 ONNX file to `precision`, once per (input hash, settings); returns (path, facts).

    facts["prepare_s"] is the time spent now: calibration (calibrate_s) plus conversion (convert_s).
    """

    if precision == "fp32":
        return src, {"prepare_s": 0.0}
    if precision in CALIB_METHODS and calib.mixed_precision_budget is not None:
        return _mixed_precision(src, precision, net, calib, data, folder)
    settings: Dict[str, Any] = {"src": src, "precision": precision, "version": 2}  # src: by content, external data too
    calib_facts: Dict[str, Any] = {}
    calibrate_s = 0.0
    if precision in ("fp16", "bf16"):
        settings.update({"io_fp16": io_fp16, "tool": "modelopt.autocast"})
    elif precision in ("int8", "fp8"):
        method = calib.calib_method
        if method not in CALIB_METHODS[precision]:
            raise ArtTRTError(f"--calib_method {method} is not offered for {precision}: "
                              f"one of {', '.join(CALIB_METHODS[precision])}")
        _, calib_facts = calibration_data(net, calib, data, load=False)  # loaded only if quantizing now
        calibrate_s = float(calib_facts["calib_prepare_s"])
        settings.update({"method": method, "calib_data": Path(calib_facts["calib_data"]).name,
                         "tool": calib.quantizer, "high_precision": HIGH_PRECISION})
        if calib.exclude:  # only when asked: the keys of every file made before stay as they were
            settings["exclude"] = list(calib.exclude)
    else:
        raise ArtTRTError(f"unknown precision {precision}")

    @in_phase("convert")
    def make(tmp: Path) -> Dict[str, Any]:
        t0 = time.perf_counter()
        facts: Dict[str, Any] = {"precision": precision, "source_onnx": str(src), **calib_facts}
        if precision in ("fp16", "bf16"):
            autocast, _ = _modelopt_onnx()
            proto = autocast.convert_to_mixed_precision(str(src), low_precision_type=precision,
                                                        keep_io_types=not io_fp16)
            facts.update({"tool": "modelopt.onnx.autocast", "io": "fp16" if io_fp16 else "fp32"})
            if precision == "fp16":
                facts["ort_cpu_note"] = ORT_FP16_NOTE
        else:
            calib_data = np.load(calib_facts["calib_data"])
            tool, method = calib.quantizer, settings["method"]
            made_by = None
            if tool in ("auto", "modelopt"):
                try:
                    _quantize_modelopt(src, tmp, precision, method, calib_data, calib.exclude)
                    made_by = "modelopt.onnx.quantization"
                except ArtTRTError:
                    raise
                except Exception as err:  # ModelOpt raises many types; fall back where allowed
                    if tool == "modelopt" or precision == "fp8":
                        raise ArtTRTError(f"ModelOpt could not quantize {src.name} to {precision}: "
                                          f"{first_line(err)}") from err
                    log.warning("ModelOpt quantization failed (%s): falling back to ONNX Runtime's quantizer", err)
            if made_by is None:
                _quantize_ort(src, tmp, method, calib_data, calib.exclude)
                made_by = "onnxruntime.quantization.quantize_static"
            facts.update({"tool": made_by, "calib_method": method, "high_precision": HIGH_PRECISION})
            if calib.exclude:
                facts["excluded_layers"] = list(calib.exclude)
            if precision == "fp8":
                facts["ort_cpu_note"] = ORT_FP8_NOTE
            proto = onnx.load(str(tmp))
        set_metadata(proto, {**{k: v for k, v in read_metadata(src).items() if k != "graph_input_shape"},
                             "precision": precision, "converted_by": facts["tool"]})
        onnx.save(proto, str(tmp))
        log.info("%s: %s by %s in %.1f s", src.name, precision, facts["tool"], time.perf_counter() - t0)
        return facts

    stem = src.stem.replace("-fp32-", f"-{precision}-") if "-fp32-" in src.stem else f"{src.stem}-{precision}"
    out, facts = cached(folder or weights_dir() / "onnx", stem, ".onnx", settings, make)
    facts["calibrate_s"] = round(calibrate_s, 3)
    facts["convert_s"] = facts["prepare_s"]
    facts["prepare_s"] = round(facts["prepare_s"] + calibrate_s, 3)
    return out, facts


def _mixed_precision(src: Path, precision: str, net: Network, calib: CalibOptions, data: DataOptions,
                     folder: Optional[Path]) -> Tuple[Path, Dict[str, Any]]:
    """The quantized file whose top-1 stays within calib.mixed_precision_budget points of fp32 on held-out images,
    with the fewest layers kept out of quantization (utils.models.mixed_precision); facts["mixed_precision"] holds
    the search, every step's measure included."""

    budget = calib.mixed_precision_budget or 0.0  # points, or a Top1Budget share of fp32's top-1 ("1%")
    plain = dataclasses.replace(calib, mixed_precision_budget=None, exclude=())
    _, calib_facts = calibration_data(net, plain, data, load=False)
    heldout = mp.heldout_images(net, data, calib_facts, plain.seed)
    onnx_folder = folder or weights_dir() / "onnx"

    def convert(exclude: Tuple[str, ...]) -> Tuple[Path, Dict[str, Any]]:
        return convert_precision(src, precision, net, dataclasses.replace(plain, exclude=exclude), data,
                                 folder=onnx_folder)

    settings = {"precision": precision, "method": plain.calib_method, "quantizer": plain.quantizer,
                "calib_data": Path(calib_facts["calib_data"]).name, "high_precision": HIGH_PRECISION,
                "budget": str(budget) if getattr(budget, "relative", False) else float(budget),
                "drift_images": mp.DRIFT_IMAGES, "version": 2}  # 2: steps judged on the paired interval
    result, found = mp.search(src, precision, convert, lambda: np.load(calib_facts["calib_data"]), heldout, budget,
                              settings, onnx_folder, crop=int(net.preprocess.crop))
    out, facts = convert(tuple(result["kept"]))
    block = {**result, "calib_images": int(calib_facts["calib_images"]), "final_onnx": str(out), "cached": found}
    final = result["steps"][[s["k"] for s in result["steps"]].index(result["final_k"])]
    said = (f"{result['final_k']} of {result['ranked_layers']} ranked layers kept out of {precision}: top-1 "
            f"{final['top1']:.2f}% against fp32 {result['fp32_top1']:.2f}% on {result['heldout_images']} held-out images "
            f"(drop {final['drop']:.2f} points, budget {budget:g}{'' if result['met'] else ', NOT met'})")
    if not found:
        for line in mp.step_lines(result):  # a line each (the step table is the report's: mixed-precision.md)
            log.info("mixed precision search of %s: %s", src.name, line)
    log.info("mixed precision%s: %s; the file: %s (build_trt.py --onnx takes it)",
             f", found before in {Path(result['search_file']).name}" if found else "", said, out)
    facts["mixed_precision"] = block
    facts["prepare_s"] = round(float(facts["prepare_s"]) + (0.0 if found else float(result["search_s"])), 3)
    return out, facts
