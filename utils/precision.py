"""Precision as ONNX -> ONNX steps that run on the CPU: the precision lives in the file (TensorRT 11's way).

- fp16 / bf16: ModelOpt AutoCast (modelopt.onnx.autocast), I/O kept fp32 unless io_fp16.
- int8 / fp8:  ModelOpt ONNX post-training quantization (explicit Q/DQ nodes), calibrated on real
  images taken from the dataset cache through exactly the validation preprocessing. Where ModelOpt
  cannot run, ONNX Runtime's quantize_static in the form TensorRT's parser accepts (QDQ, symmetric,
  per-channel weights, biases left in float: TensorRT rejects int32 biases).
Every output is cached by (input file hash, settings) with a JSON sidecar naming the tool that made it.
Calibration data is stored under a name that records network, input size, method, size and dataset,
and its key includes the picked files: no cache ever needs deleting by hand.

Usage:
    path, facts = convert_precision(Path("x.onnx"), "int8", net, calib={"method": "entropy", "size": 500,
                                    "dataset": "datasets/imagenet", "seed": 0, "tool": "auto"})
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from utils.errors import ArtTRTError
from utils.fileio import atomic_path, atomic_write_json, cache_key, file_sha256, read_json
from utils.networks import Network

log = logging.getLogger(__name__)

CALIB_METHODS = {"int8": ("max", "entropy"), "fp8": ("max",)}
# ModelOpt's default high-precision dtype (fp16) gives Q/DQ files that ONNX Runtime's CPU provider runs
# silently wrong (its WeightBiasQuantization mis-handles fp16 scales); fp32 is right on ONNX Runtime and
# accepted by TensorRT. See ../shared/docs/dependencies.md.
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
    return autocast, quantization


def calibration_data(net: Network, calib: Dict[str, Any], crop: int, folder: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Picks calib['size'] images of calib['dataset'] with a fixed seed and normalises them as validation does.

    Returns:
        (float32 array N x 3 x crop x crop, facts with the picked files and the cache path).
    """
    import torch

    from utils.datasets import Normalizer, open_dataset

    if not calib.get("dataset"):
        raise ArtTRTError("int8/fp8 need real calibration images: pass --dataset (or --calib_dataset) DIR")
    ds_root = Path(calib["dataset"])
    ds = open_dataset(ds_root, net.preprocess, net.num_classes)
    asked = int(calib.get("size", 500))
    if asked < 1:
        raise ArtTRTError("--calib_size must be at least 1")
    n = min(asked, len(ds))
    if n < asked:
        log.warning("calibration asked for %d images but dataset %s holds %d: using %d", asked, ds_root, len(ds), n)
    rng = np.random.default_rng(int(calib.get("seed", 0)))
    picked = np.sort(rng.choice(len(ds), size=n, replace=False))
    files = [ds.files[i] for i in picked]
    key = cache_key({"dataset_key": ds.meta["key"], "files": files, "preprocess": net.preprocess.as_dict()})
    name = f"{net.name}-{crop}x{crop}-{calib.get('method')}-n{n}-{ds_root.resolve().name}-{key}"
    npy, sidecar = folder / f"{name}.npy", folder / f"{name}.json"
    facts = {"calib_images": n, "calib_asked": asked, "calib_files": files, "calib_data": str(npy),
             "calib_dataset": str(ds_root), "calib_seed": int(calib.get("seed", 0))}
    if npy.is_file() and sidecar.is_file():
        try:
            arr = np.load(npy, mmap_mode="r")
            if arr.shape == (n, 3, crop, crop):
                return np.asarray(arr), facts
        except (OSError, ValueError):
            pass
        log.warning("calibration data %s unreadable: rebuilding", npy)
    norm = Normalizer(net.preprocess, torch.device("cpu"))
    arr = norm(torch.from_numpy(np.array(ds.images[picked]))).numpy().astype(np.float32)
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    atomic_write_json(sidecar, facts)
    return arr, facts


def _quantize_modelopt(src: Path, out: Path, mode: str, method: str, data: np.ndarray) -> None:
    _, quantization = _modelopt_onnx()
    with atomic_path(out) as tmp:
        tmp_onnx = tmp.with_name(tmp.name + ".onnx")
        try:
            quantization.quantize(str(src), quantize_mode=mode, calibration_data=data, calibration_method=method,
                                  calibration_eps=["cpu"], high_precision_dtype=HIGH_PRECISION,
                                  output_path=str(tmp_onnx), log_level="WARNING")
            tmp_onnx.replace(tmp)
        finally:
            tmp_onnx.unlink(missing_ok=True)


def _quantize_ort(src: Path, out: Path, method: str, data: np.ndarray) -> None:
    """ONNX Runtime's quantizer, in the form TensorRT accepts (QDQ, symmetric, per-channel, float biases).

    It runs in a fresh interpreter: importing ModelOpt patches ONNX Runtime's quantization classes, after
    which quantize_static fails in the same process ("Quantization parameters are not specified").
    """
    import subprocess
    import sys
    import tempfile

    with atomic_path(out) as tmp, tempfile.TemporaryDirectory() as work:
        npy = Path(work) / "calib.npy"
        np.save(npy, data)
        r = subprocess.run([sys.executable, "-m", "utils.ort_quantize", str(src), str(tmp), method, str(npy), work],
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise ArtTRTError(f"ONNX Runtime's quantizer failed on {src.name}: {last}")


def convert_precision(src: Path, precision: str, net: Network, calib: Optional[Dict[str, Any]] = None,
                      io_fp16: bool = False, folder: Optional[Path] = None) -> Tuple[Path, Dict[str, Any]]:
    """Converts an fp32 ONNX file to `precision`, once per (input hash, settings); returns (path, facts)."""
    import onnx

    from utils.artefacts import weights_dir
    from utils.onnx_export import read_metadata, set_metadata

    if precision == "fp32":
        return src, {}
    folder = folder or weights_dir() / "onnx"
    calib = dict(calib or {})
    meta = read_metadata(src)
    crop = int(meta["graph_input_shape"][2]) if len(meta["graph_input_shape"]) == 4 else net.preprocess.crop
    settings: Dict[str, Any] = {"src": file_sha256(src), "precision": precision, "version": 1}
    calib_data: Optional[np.ndarray] = None
    calib_facts: Dict[str, Any] = {}
    t_cal = time.perf_counter()
    if precision in ("fp16", "bf16"):
        settings.update({"io_fp16": io_fp16, "tool": "modelopt.autocast"})
    elif precision in ("int8", "fp8"):
        method = calib.get("method", "entropy")
        if method not in CALIB_METHODS[precision]:
            raise ArtTRTError(f"--calib_method {method} is not offered for {precision}: "
                              f"one of {', '.join(CALIB_METHODS[precision])}")
        calib_data, calib_facts = calibration_data(net, calib, crop, weights_dir() / "calib")
        settings.update({"method": method, "calib_key": Path(calib_facts["calib_data"]).stem,
                         "tool": calib.get("tool", "auto"), "high_precision": HIGH_PRECISION})
    else:
        raise ArtTRTError(f"unknown precision {precision}")
    calibrate_s = time.perf_counter() - t_cal
    key = cache_key(settings)
    out = folder / f"{src.stem.replace('-fp32-', f'-{precision}-')}-{key}.onnx"
    sidecar = out.with_suffix(".json")
    if out.is_file() and sidecar.is_file():
        facts = read_json(sidecar)
        return out, {**facts, "cached": True, "convert_s": 0.0, "calibrate_s": 0.0}

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
        tool = calib.get("tool", "auto")
        method = settings["method"]
        made_by = None
        assert calib_data is not None
        if tool in ("auto", "modelopt"):
            try:
                _quantize_modelopt(src, out, precision, method, calib_data)
                made_by = "modelopt.onnx.quantization"
            except ArtTRTError:
                raise
            except Exception as err:  # ModelOpt raises many types; fall back where allowed
                if tool == "modelopt" or precision == "fp8":
                    raise ArtTRTError(f"ModelOpt could not quantize {src.name} to {precision}: "
                                      f"{str(err).splitlines()[0]}") from err
                log.warning("ModelOpt quantization failed (%s): falling back to ONNX Runtime's quantizer", err)
        if made_by is None:
            _quantize_ort(src, out, method, calib_data)
            made_by = "onnxruntime.quantization.quantize_static"
        facts.update({"tool": made_by, "calib_method": method, "high_precision": HIGH_PRECISION})
        if precision == "fp8":
            facts["ort_cpu_note"] = ORT_FP8_NOTE
        proto = onnx.load(str(out))
    facts["convert_s"] = round(time.perf_counter() - t0, 3)
    facts["calibrate_s"] = round(calibrate_s, 3)
    set_metadata(proto, {**{k: v for k, v in read_metadata(src).items() if k != "graph_input_shape"},
                         "precision": precision, "converted_by": facts["tool"]})
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    atomic_write_json(sidecar, facts)
    log.info("%s: %s by %s in %.1f s", out.name, precision, facts["tool"], facts["convert_s"])
    return out, {**facts, "cached": False}
