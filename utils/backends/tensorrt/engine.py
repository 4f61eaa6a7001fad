"""The engine end of the artefact chain: (network, precision, shapes, calibration) -> a cached engine.

`engine_for_network` is the one function that makes an engine; build_trt.py and the TensorRT backend
both call it. It takes the ONNX file from utils.models.chain.model_file (the user's file as it is when it
already carries the precision, else the export converted by AutoCast / ModelOpt), or for TensorRT 10's
weak typing the fp32 file plus calibration images. Engines are artefacts of utils.core.artefact.cached,
keyed by (ONNX hash, precision, shapes, calibration, TensorRT version, GPU and compute capability), with
a sidecar saying how each was built, and reused unless --force.

Usage:
    engine, facts = engine_for_network(net, "int8", ModelOptions(), Options(), DataOptions(dataset="..."),
                                       batch_size=32, max_batch=256)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from utils.backends.tensorrt import api
from utils.core.artefact import cached, sidecar_of
from utils.core.errors import ArtTRTError
from utils.core.content import content_key, file_digest
from utils.core.fileio import read_json
from utils.core.phases import in_phase
from utils.data.options import DataOptions
from utils.models.chain import ModelOptions, model_file
from utils.models.networks import Network
from utils.models.paths import weights_dir

if TYPE_CHECKING:
    from utils.backends.tensorrt import Options
    from utils.backends.tensorrt.weak import Calibration

log = logging.getLogger(__name__)

FP8_MIN_CAPABILITY = (8, 9)  # Ada, Hopper, Blackwell


@dataclass(frozen=True)
class EngineShapes:
    min: Tuple[int, int, int, int]
    opt: Tuple[int, int, int, int]
    max: Tuple[int, int, int, int]
    dynamic: bool

    @staticmethod
    def of(input_shape: Tuple[int, ...], min_batch: Optional[int], opt_batch: Optional[int],
           max_batch: Optional[int]) -> "EngineShapes":
        b, c, h, w = (int(v) for v in input_shape)
        if b != -1:
            s = (b, c, h, w)
            return EngineShapes(s, s, s, False)
        lo, hi = min_batch or 1, max_batch or max(opt_batch or 1, 1)
        opt = opt_batch or hi
        if not 1 <= lo <= opt <= hi:
            raise ArtTRTError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
        return EngineShapes((lo, c, h, w), (opt, c, h, w), (hi, c, h, w), True)

    def tag(self) -> str:
        return f"b{self.min[0]}-{self.opt[0]}-{self.max[0]}" if self.dynamic else f"static{self.min[0]}"


def environment_key() -> Dict[str, str]:
    """What an engine or timing cache is only valid for: TensorRT module and version, GPU and capability."""
    module, version = api.load_tensorrt()
    return {"module": module, "tensorrt_version": version, **api.gpu_identity()}


def require_tensorrt_and_gpu() -> Dict[str, str]:
    """One sentence naming everything that is missing for TensorRT here."""
    import torch

    try:
        api.load_tensorrt()
    except ArtTRTError as err:
        if not torch.cuda.is_available():
            raise ArtTRTError(f"{err}; and TensorRT needs an NVIDIA GPU, none is visible here") from err
        raise
    return environment_key()


def check_precision_supported(precision: str, env: Dict[str, str]) -> None:
    """Refuses fp8 on a GPU without fp8 tensor cores, before any conversion or build."""
    major, minor = (int(v) for v in env["compute_capability"].split("."))
    if precision == "fp8" and (major, minor) < FP8_MIN_CAPABILITY:
        raise ArtTRTError(f"fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
                          f"{env['gpu']} is {env['compute_capability']}")


def check_sidecar(engine: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """Refuses, with a sentence, an engine whose sidecar says another TensorRT version or GPU built it."""
    sidecar = sidecar_of(engine)
    if not sidecar.is_file():
        log.warning("engine %s has no ArtTRT sidecar: its TensorRT version and GPU cannot be checked", engine)
        return {}
    meta = read_json(sidecar, "engine sidecar")
    if not isinstance(meta, dict):
        raise ArtTRTError(f"engine sidecar {sidecar} is not an ArtTRT sidecar (not a JSON object)")
    for k in ("module", "tensorrt_version", "gpu", "compute_capability"):
        if meta.get(k) != env.get(k):
            raise ArtTRTError(f"engine {engine.name} was built for {k} {meta.get(k)!r}, this machine has "
                              f"{env.get(k)!r}: rebuild it with build_trt.py --force")
    return dict(meta)


def engine_for(onnx_path: Path, precision: str, shapes: EngineShapes, folder: Path,
               weak_typing: bool = False, workspace_gb: Optional[float] = None,
               timing_cache: Optional[Path] = None, force: bool = False,
               calibration: Optional["Calibration"] = None) -> Tuple[Path, Dict[str, Any]]:
    """The engine of an ONNX file at a precision and shapes, built once per TensorRT version and GPU."""
    from utils.backends.tensorrt import build

    env = environment_key()
    settings = {"onnx": onnx_path, "precision": precision, "min": shapes.min, "opt": shapes.opt,
                "max": shapes.max, "weak_typing": weak_typing, "workspace_gb": workspace_gb,
                "calibration": calibration.cache.name if calibration else None, "profiling": "detailed", **env}
    gpu_tag = env["gpu"].replace(" ", "-").lower()
    stem = f"{onnx_path.stem}-{precision}-{shapes.tag()}-trt{env['tensorrt_version']}-{gpu_tag}-" \
           f"sm{env['compute_capability'].replace('.', '')}"
    tc = timing_cache or folder / f"timing-{env['module']}-{env['tensorrt_version']}-{gpu_tag}.cache"

    @in_phase("build")
    def make(tmp: Path) -> Dict[str, Any]:
        s = build.BuildSettings(precision, shapes.min, shapes.opt, shapes.max, weak_typing,
                                int(workspace_gb * 2**30) if workspace_gb else None, tc, calibration)
        plan, facts = build.build_serialized(onnx_path, s)
        tmp.write_bytes(plan)
        log.info("built %s (%.1f MiB, %s, %.1f s)", tmp.name, len(plan) / 2**20, facts["route"], facts["build_s"])
        return {**env, **facts, "onnx": str(onnx_path), "onnx_sha256": file_digest(onnx_path), "precision": precision,
                "shapes": {"min": shapes.min, "opt": shapes.opt, "max": shapes.max}, "dynamic": shapes.dynamic,
                "engine_bytes": len(plan)}

    engine, facts = cached(folder, stem, ".engine", settings, make, force=force)
    if facts["cached"]:
        facts["build_s"] = 0.0
    return engine, facts


def weak_calibration(net: Network, onnx_path: Path, model: ModelOptions, data: DataOptions,
                     shapes: EngineShapes) -> Tuple["Calibration", Dict[str, Any]]:
    """Calibration images for TensorRT 10's int8 calibrator: the same seeded images as the Q/DQ route, in
    batches of exactly the calibration batch, with a calibration cache keyed by file, images, method, batch."""
    from utils.backends.tensorrt.weak import Calibration
    from utils.models.precision import calibration_data

    arr, facts = calibration_data(net, model.calib, data)
    assert arr is not None
    batch = min(shapes.opt[0], len(arr)) if shapes.dynamic else shapes.opt[0]
    if len(arr) < batch:
        raise ArtTRTError(f"weak-typed int8 for a static batch of {batch} needs at least {batch} calibration images; "
                          f"{len(arr)} were found: pass --calib_size {batch} or more")
    method = model.calib.calib_method
    key = content_key({"onnx": onnx_path, "images": Path(facts["calib_data"]).name, "method": method,
                     "batch": batch})
    cache = weights_dir() / "calib" / f"{onnx_path.stem}-{method}-b{batch}-{key}.trtcalib"
    calibration = Calibration(arr, method, batch, cache)
    return calibration, {**facts, "calib_method": method, "calib_batch": batch, "calib_images_used": calibration.used,
                         "calib_cache": str(cache)}


def engine_for_network(net: Network, precision: str, model: ModelOptions, opts: "Options", data: DataOptions,
                       batch_size: int, max_batch: int) -> Tuple[Path, Dict[str, Any]]:
    """The one way an engine is made: the ONNX file at the precision (or fp32 + calibrator with weak typing),
    then the cached build for the shapes.

    Args:
        batch_size: the batch a static engine is built for (opts.trt_shapes static).
        max_batch: the profile's maximum for a dynamic engine unless opts.max_batch says otherwise.
    """
    env = require_tensorrt_and_gpu()
    check_precision_supported(precision, env)
    shape = model.shape_for(net)
    if "static" in opts.trt_shapes and shape[0] == -1:
        shape = (batch_size, *shape[1:])
    shapes = EngineShapes.of(shape, opts.min_batch, opts.opt_batch, opts.max_batch or max_batch)
    calibration: Optional["Calibration"] = None
    calib_facts: Dict[str, Any] = {}
    if opts.weak_typing and precision != "fp32":
        from utils.backends.tensorrt import weak

        weak.require(precision)
        if model.onnx:
            from utils.models.chain import user_onnx

            _, carried = user_onnx(net, model)
            if carried != "fp32":
                raise ArtTRTError(f"--weak_typing builds from an fp32 file, and {Path(model.onnx).name} already "
                                  f"carries {carried}: drop --weak_typing to build it strongly typed, as it is")
        onnx_path, onnx_facts = model_file(net, "fp32", model, data)
        if precision == "int8":
            calibration, calib_facts = weak_calibration(net, onnx_path, model, data, shapes)
    else:
        onnx_path, onnx_facts = model_file(net, precision, model, data)
    tc = Path(opts.timing_cache) if opts.timing_cache else None
    engine, facts = engine_for(onnx_path, precision, shapes, weights_dir() / "engines", opts.weak_typing,
                               opts.workspace, tc, opts.force, calibration)
    facts = {**calib_facts, **{k: onnx_facts[k] for k in ("source_onnx", "calib_data") if k in onnx_facts}, **facts}
    facts["prepare_s"] = round(float(onnx_facts.get("prepare_s") or 0.0) + float(facts.get("prepare_s") or 0), 3)
    facts["engine_shapes"] = "dynamic" if shapes.dynamic else "static"
    return engine, facts
