"""Cached TensorRT engines: keyed by (ONNX hash, precision, shapes, TensorRT version, GPU and compute
capability), each with a JSON sidecar saying how it was built, reused unless --force.

Usage:
    engine, facts = engine_for(Path("x-int8.onnx"), "int8", EngineShapes.of((-1, 3, 224, 224), 1, 32, 256))
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from utils import trt_build
from utils.errors import ArtTRTError
from utils.fileio import atomic_path, atomic_write_json, cache_key, file_sha256, read_json

if TYPE_CHECKING:
    from utils.networks import Network
    from utils.pipeline import RunSpec
    from utils.runners.trt_runner import TensorRTRunner

log = logging.getLogger(__name__)


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
    module, version = trt_build.load_tensorrt()
    return {"module": module, "tensorrt_version": version, **trt_build.gpu_identity()}


def require_tensorrt_and_gpu() -> Dict[str, str]:
    """One sentence naming everything that is missing for TensorRT here."""
    import torch

    try:
        trt_build.load_tensorrt()
    except ArtTRTError as err:
        if not torch.cuda.is_available():
            raise ArtTRTError(f"{err}; and TensorRT needs an NVIDIA GPU, none is visible here") from err
        raise
    return environment_key()


FP8_MIN_CAPABILITY = (8, 9)  # Ada, Hopper, Blackwell


def check_precision_supported(precision: str, env: Dict[str, str]) -> None:
    """Refuses fp8 on a GPU without fp8 tensor cores, before any conversion or build."""
    major, minor = (int(v) for v in env["compute_capability"].split("."))
    if precision == "fp8" and (major, minor) < FP8_MIN_CAPABILITY:
        raise ArtTRTError(f"fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
                          f"{env['gpu']} is {env['compute_capability']}")


def check_sidecar(engine: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """Refuses, with a sentence, an engine whose sidecar says another TensorRT version or GPU built it."""
    sidecar = engine.with_suffix(".json")
    if not sidecar.is_file():
        log.warning("engine %s has no ArtTRT sidecar: its TensorRT version and GPU cannot be checked", engine)
        return {}
    meta = read_json(sidecar)
    for k in ("module", "tensorrt_version", "gpu", "compute_capability"):
        if meta.get(k) != env.get(k):
            raise ArtTRTError(f"engine {engine.name} was built for {k} {meta.get(k)!r}, this machine has "
                              f"{env.get(k)!r}: rebuild it with build_trt.py --force")
    return dict(meta)


def engine_for(onnx_path: Path, precision: str, shapes: EngineShapes, folder: Path,
               weak_typing: bool = False, workspace_gb: Optional[float] = None,
               timing_cache: Optional[Path] = None, force: bool = False,
               calib: Optional[Tuple[Any, Path]] = None) -> Tuple[Path, Dict[str, Any]]:
    """The engine of an ONNX file at a precision and shapes, built once per TensorRT version and GPU."""
    env = environment_key()
    settings = {"onnx": file_sha256(onnx_path), "precision": precision, "min": shapes.min, "opt": shapes.opt,
                "max": shapes.max, "weak_typing": weak_typing, "workspace_gb": workspace_gb, **env}
    key = cache_key(settings)
    gpu_tag = env["gpu"].replace(" ", "-").lower()
    name = f"{onnx_path.stem}-{precision}-{shapes.tag()}-trt{env['tensorrt_version']}-{gpu_tag}-" \
           f"sm{env['compute_capability'].replace('.', '')}-{key}"
    engine, sidecar = folder / f"{name}.engine", folder / f"{name}.json"
    if engine.is_file() and sidecar.is_file() and not force:
        meta = read_json(sidecar)
        if meta.get("key") == key:
            log.info("reusing engine %s", engine)
            return engine, {**meta, "build_s": 0.0, "cached": True}
    if timing_cache is None:
        timing_cache = folder / f"timing-{env['module']}-{env['tensorrt_version']}-{gpu_tag}.cache"
    calib_data, calib_cache = calib if calib else (None, None)
    s = trt_build.BuildSettings(precision, shapes.min, shapes.opt, shapes.max, weak_typing,
                                int(workspace_gb * 2**30) if workspace_gb else None, timing_cache,
                                calib_data, calib_cache)
    t0 = time.perf_counter()
    plan, facts = trt_build.build_serialized(onnx_path, s)
    with atomic_path(engine) as tmp:
        tmp.write_bytes(plan)
    meta = {**env, **facts, "key": key, "onnx": str(onnx_path), "onnx_sha256": settings["onnx"],
            "precision": precision, "shapes": {"min": shapes.min, "opt": shapes.opt, "max": shapes.max},
            "dynamic": shapes.dynamic, "engine_bytes": len(plan), "prepare_s": round(time.perf_counter() - t0, 3)}
    atomic_write_json(sidecar, meta)
    log.info("built %s (%.1f MB, %s, %.1f s)", engine.name, len(plan) / 1e6, facts["route"], facts["build_s"])
    return engine, {**meta, "cached": False}


def tensorrt_runner(spec: "RunSpec", net: "Network") -> Tuple["TensorRTRunner", Dict[str, Any]]:
    """A TensorRT runner for main.py: the user's engine (checked), or the cached build of the spec."""
    from utils.artefacts import weights_dir
    from utils.pipeline import onnx_model_for
    from utils.runners.trt_runner import TensorRTRunner

    env = require_tensorrt_and_gpu()
    check_precision_supported(spec.precision, env)
    if spec.engine:
        path = Path(spec.engine)
        if not path.is_file():
            raise ArtTRTError(f"engine file {path} does not exist")
        facts: Dict[str, Any] = {**check_sidecar(path, env), "prepare_s": 0.0}
    else:
        weak = bool(spec.trt.get("weak_typing"))
        if weak:
            from utils.artefacts import onnx_for

            onnx_path, onnx_facts = onnx_for(net, spec.input_shape)
        else:
            onnx_path, onnx_facts = onnx_model_for(spec, net)
        shapes = EngineShapes.of(spec.input_shape, spec.trt.get("min_batch"), spec.trt.get("opt_batch"),
                                 spec.trt.get("max_batch"))
        tc = spec.trt.get("timing_cache")
        path, facts = engine_for(onnx_path, spec.precision, shapes, weights_dir() / "engines", weak,
                                 spec.trt.get("workspace_gb"), Path(tc) if tc else None,
                                 bool(spec.trt.get("force")))
        facts["prepare_s"] = round(float(onnx_facts.get("prepare_s") or 0.0) + float(facts.get("prepare_s") or 0), 3)
        facts["engine_shapes"] = "dynamic" if shapes.dynamic else "static"
    return TensorRTRunner(path, net.preprocess, spec.precision, facts, cuda_graph=spec.cuda_graph), facts
