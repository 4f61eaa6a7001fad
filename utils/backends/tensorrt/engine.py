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
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from utils.backends.tensorrt import api, build, weak
from utils.backends.tensorrt.weak import Calibration
from utils.core.artefact import cached, sidecar_of
from utils.core.content import content_key, file_digest
from utils.core.errors import ArtTRTError
from utils.core.fileio import read_json
from utils.core.phases import in_phase
from utils.data.options import DataOptions
from utils.models.chain import ModelOptions, model_file, user_onnx
from utils.models.onnx_export import read_metadata
from utils.models.paths import weights_dir
from utils.models.precision import calibration_data

if TYPE_CHECKING:
    import torch

    from utils.backends.tensorrt import Options
    from utils.models.networks import Network
else:
    from utils.core.deps import torch


log = logging.getLogger(__name__)

FP8_MIN_CAPABILITY = (8, 9)  # Ada, Hopper, Blackwell


@dataclass(frozen=True)
class EngineShapes:
    """The batch profiles of an engine: one (min, opt, max) per optimization profile, and the image shape.

    TensorRT tunes each profile's kernels for its opt batch (NvInferRuntime.h, IOptimizationProfile: "The builder
    selects the kernels that result in the lowest runtime for the optimum input tensor dimensions"), and trtexec runs
    at the opt shapes when no --shapes are given (sampleOptions.cpp: the build's opt shapes are propagated to
    inference). So a dynamic engine of a run gets one profile per batch size the run measures, each covering the
    sizes above the previous one up to its own, with opt at that size: every batch is timed on kernels tuned for it,
    and every size from 1 to the largest is still served. An explicit --min_batch/--opt_batch/--max_batch is one
    profile, as trtexec's --minShapes/--optShapes/--maxShapes. A static engine (a fixed ONNX batch, or --trt_shapes
    static) has one shape."""

    image: Tuple[int, ...]
    profiles: Tuple[Tuple[int, int, int], ...]
    dynamic: bool  # serves a range of batches (False: one shape only)

    @staticmethod
    def of(input_shape: Tuple[int, ...], min_batch: Optional[int], opt_batch: Optional[int],
           max_batch: Optional[int], batch_sizes: Sequence[int] = ()) -> "EngineShapes":
        b, image = int(input_shape[0]), tuple(int(v) for v in input_shape[1:])
        if b != -1:
            return EngineShapes(image, ((b, b, b),), False)
        sizes = sorted({int(v) for v in batch_sizes if int(v) >= 1})
        if min_batch is None and opt_batch is None and sizes:
            if max_batch is not None and max_batch > sizes[-1]:
                sizes.append(max_batch)
            bounds = [0, *sizes]
            return EngineShapes(image, tuple((lo + 1, hi, hi) for lo, hi in zip(bounds, sizes)), True)
        lo, hi = min_batch or 1, max_batch or max([opt_batch or 1, *sizes])
        opt = opt_batch or hi
        if not 1 <= lo <= opt <= hi:
            raise ArtTRTError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
        return EngineShapes(image, ((lo, opt, hi),), True)

    @property
    def max(self) -> int:
        return max(p[2] for p in self.profiles)

    def tag(self) -> str:
        if not self.dynamic:
            return f"static{self.profiles[0][1]}"
        if len(self.profiles) == 1:
            return "b{}-{}-{}".format(*self.profiles[0])
        opts = "-".join(str(p[1]) for p in self.profiles)  # p: one profile per opt batch (b: one profile, min-opt-max)
        return f"p{opts}" if len(opts) <= 24 else f"p{self.profiles[0][1]}-{self.max}-n{len(self.profiles)}-" + \
            content_key({"profiles": self.profiles})[:8]


def family(module: str) -> str:
    """tensorrt and tensorrt_bindings are one TensorRT (the package and its compiled module), as are tensorrt_rtx and
    tensorrt_rtx_bindings: an engine built under one name loads under the other."""
    return module[:-len("_bindings")] if module.endswith("_bindings") else module


def environment_key() -> Dict[str, str]:
    """What an engine or timing cache is only valid for: TensorRT module and version, GPU and capability."""
    module, version = api.load_tensorrt()
    return {"module": family(module), "tensorrt_version": version, **api.gpu_identity()}


def require_tensorrt_and_gpu() -> Dict[str, str]:
    """One sentence naming everything that is missing for TensorRT here."""

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
        theirs, ours = meta.get(k), env.get(k)
        if k == "module" and isinstance(theirs, str) and isinstance(ours, str):
            theirs, ours = family(theirs), family(ours)
        if theirs != ours:
            raise ArtTRTError(f"engine {engine.name} was built for {k} {meta.get(k)!r}, this machine has "
                              f"{env.get(k)!r}: rebuild it with build_trt.py --force")
    return dict(meta)


def trtexec_build(onnx: Path, engine: Path, input_name: str, onnx_dynamic: bool, shapes: EngineShapes, precision: str,
                  tf32: bool, weak_typing: bool, workspace_gb: Optional[float], timing_cache: Path, version: str,
                  calib_cache: Optional[str] = None) -> str:
    """The trtexec command that builds this engine as ArtTRT does (trtexec's options in samples/common/
    sampleOptions.cpp): one --profile=k with --minShapes/--optShapes/--maxShapes per profile where the ONNX input is
    dynamic (a static input takes no shapes), --noTF32 unless TF32 was kept, the precision flag only for TensorRT 10's weak typing (strongly typed
    builds take the precision from the file), detailed profiling verbosity as ArtTRT builds."""
    parts = ["trtexec", f"--onnx={onnx}"]
    if onnx_dynamic:
        def spec(b: int) -> str:
            return f"{input_name}:" + "x".join(str(v) for v in (b, *shapes.image))

        for k, (lo, opt, hi) in enumerate(shapes.profiles):
            if len(shapes.profiles) > 1:
                parts.append(f"--profile={k}")
            parts += [f"--minShapes={spec(lo)}", f"--optShapes={spec(opt)}", f"--maxShapes={spec(hi)}"]
    if not tf32:
        parts.append("--noTF32")
    if weak_typing and precision != "fp32":
        parts.append(f"--{precision}")
        if calib_cache:
            parts.append(f"--calib={calib_cache}")
    elif version.startswith(("8.", "9.", "10.")):
        parts.append("--stronglyTyped")
    if workspace_gb:
        parts.append(f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M")
    parts += ["--profilingVerbosity=detailed", f"--timingCacheFile={timing_cache}", f"--saveEngine={engine}"]
    return " ".join(parts)


def engine_for(onnx_path: Path, precision: str, shapes: EngineShapes, folder: Path,
               weak_typing: bool = False, workspace_gb: Optional[float] = None,
               timing_cache: Optional[Path] = None, force: bool = False,
               calibration: Optional["Calibration"] = None, tf32: bool = False) -> Tuple[Path, Dict[str, Any]]:
    """The engine of an ONNX file at a precision and profiles, built once per TensorRT version and GPU."""

    env = environment_key()
    settings = {"onnx": onnx_path, "precision": precision, "image": shapes.image, "profiles": shapes.profiles,
                "weak_typing": weak_typing, "workspace_gb": workspace_gb, "tf32": tf32,
                "calibration": calibration.cache.name if calibration else None, "profiling": "detailed", **env}
    gpu_tag = env["gpu"].replace(" ", "-").lower()
    stem = f"{onnx_path.stem}-{precision}-{shapes.tag()}{'-tf32' if tf32 else ''}-" \
           f"trt{env['tensorrt_version']}-{gpu_tag}-sm{env['compute_capability'].replace('.', '')}"
    tc = timing_cache or folder / f"timing-{env['module']}-{env['tensorrt_version']}-{gpu_tag}.cache"

    @in_phase("build")
    def make(tmp: Path) -> Dict[str, Any]:
        s = build.BuildSettings(precision, shapes.profiles, shapes.image, weak_typing,
                                int(workspace_gb * 2**30) if workspace_gb else None, tc, calibration, tf32)
        plan, facts = build.build_serialized(onnx_path, s)
        tmp.write_bytes(plan)
        log.info("built %s (%.1f MiB, %s, %.1f s)", tmp.name, len(plan) / 2**20, facts["route"], facts["build_s"])
        return {**env, **facts, "onnx": str(onnx_path), "onnx_sha256": file_digest(onnx_path), "precision": precision,
                "dynamic": shapes.dynamic, "engine_bytes": len(plan)}

    engine, facts = cached(folder, stem, ".engine", settings, make, force=force)
    if facts["cached"]:
        facts["build_s"] = 0.0
    if "input_name" in facts and env["module"] == "tensorrt":  # TensorRT-RTX has its own tool, not trtexec
        facts["trtexec_build"] = trtexec_build(onnx_path, engine, str(facts["input_name"]),
                                               -1 in facts.get("onnx_input_shape", [-1]), shapes, precision, tf32,
                                               weak_typing, workspace_gb, tc, env["tensorrt_version"],
                                               str(calibration.cache) if calibration else None)
    return engine, facts


def weak_calibration(net: Network, onnx_path: Path, model: ModelOptions, data: DataOptions,
                     shapes: EngineShapes) -> Tuple["Calibration", Dict[str, Any]]:
    """Calibration images for TensorRT 10's int8 calibrator: the same seeded images as the Q/DQ route, in
    batches of exactly the calibration batch (the largest profile batch, at most the images there are), with a
    calibration cache keyed by file, images, method and batch."""

    arr, facts = calibration_data(net, model.calib, data)
    if arr is None:
        raise ArtTRTError("weak-typed int8 needs calibration images: pass --dataset")
    batch = min(shapes.max, len(arr)) if shapes.dynamic else shapes.profiles[0][1]
    if len(arr) < batch:
        raise ArtTRTError(f"weak-typed int8 for a static batch of {batch} needs at least {batch} calibration images; "
                          f"{len(arr)} were found: pass --calib_size {batch} or more")
    method = model.calib.calib_method
    key = content_key({"onnx": onnx_path, "images": Path(facts["calib_data"]).name, "method": method,
                       "batch": batch})
    cache = weights_dir() / "calib" / f"{onnx_path.stem}-{method}-b{batch}-{key}.trtcalib"
    calibration = Calibration(arr, method, batch, cache, device=str(api.run_device()))
    return calibration, {**facts, "calib_method": method, "calib_batch": batch, "calib_images_used": calibration.used,
                         "calib_cache": str(cache)}


def engine_for_network(net: Network, precision: str, model: ModelOptions, opts: "Options", data: DataOptions,
                       batch_size: int, max_batch: int, batch_sizes: Sequence[int] = (),
                       tf32: bool = False) -> Tuple[Path, Dict[str, Any]]:
    """The one way an engine is made: the ONNX file at the precision (or fp32 + calibrator with weak typing),
    then the cached build for the profiles.

    Args:
        batch_size: the job's batch: a static engine is built for it (opts.trt_shapes static).
        max_batch: the largest batch of the run (the profiles reach it unless opts.max_batch says otherwise).
        batch_sizes: every batch size the run measures: a dynamic engine gets a profile tuned for each (none given,
            as build_trt.py: one profile, min 1, opt and max the largest, unless --min/--opt/--max_batch say otherwise).
        tf32: keep TensorRT's TF32 (--tf32) for the engine's fp32 layers; cleared otherwise, as trtexec --noTF32.
    """
    env = require_tensorrt_and_gpu()
    check_precision_supported(precision, env)
    shape = model.shape_for(net)
    if model.onnx and model.input_shape is None:  # the given file's own batch (read, not assumed dynamic)

        given = int(read_metadata(model.onnx)["graph_input_shape"][0])
        shape = (given, *shape[1:]) if given > 0 else shape
    if shape[0] != -1 and batch_size != shape[0]:
        raise ArtTRTError(f"the ONNX input takes batch {shape[0]} only (a static shape) and this run asks for "
                          f"batch {batch_size}: run --batch_size {shape[0]}, or export with a dynamic batch "
                          "(onnx_transform.py --input_shape -1 3 H W)")
    if "static" in opts.trt_shapes and shape[0] == -1:
        shape = (batch_size, *shape[1:])
    sizes = [b for b in batch_sizes if b <= (opts.max_batch or max_batch)]
    shapes = EngineShapes.of(shape, opts.min_batch, opts.opt_batch, opts.max_batch or max_batch, sizes)
    calibration: Optional["Calibration"] = None
    calib_facts: Dict[str, Any] = {}
    if opts.weak_typing and precision != "fp32":
        weak.require(precision)
        if model.onnx:
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
                               opts.workspace, tc, opts.force, calibration, tf32=tf32)
    # what made the ONNX file (conversion, calibration, a --mixed_precision search) and then what built the engine
    facts = {**{k: v for k, v in onnx_facts.items() if k not in ("prepare_s", "cached")}, **calib_facts, **facts}
    facts["prepare_s"] = round(float(onnx_facts.get("prepare_s") or 0.0) + float(facts.get("prepare_s") or 0), 3)
    facts["engine_shapes"] = "dynamic" if shapes.dynamic else "static"
    if isinstance(facts.get("cached"), bool):  # the engine's artefact: found built, or built now
        facts["engine_cached"] = facts["cached"]
    return engine, facts
