"""TensorRT 10's weak typing, kept apart and named for what it is: an fp32 network plus
BuilderFlag.FP16/BF16/INT8 and, for int8, a calibrator fed with ArtTRT's calibration images.
TensorRT 11 and TensorRT-RTX removed all of it (the precision flags, the calibrator classes,
int8_calibrator): `require` refuses it there with a sentence. fp8 never had a weak-typing route.

Calibration follows TensorRT's rules for dynamic shapes: a calibration profile of its own with
min = opt = max = the calibration batch, every batch exactly that size (the images that do not fill a
last batch are left out, and the facts say how many were used), the calibrator class of --calib_method
(entropy: IInt8EntropyCalibrator2, max: IInt8MinMaxCalibrator), and a calibration cache whose name is
keyed by the ONNX file, the images, the method and the batch (made in engine.py).

Usage:
    require("int8")
    calibrator, facts = configure(builder, config, "input", True, "int8", Calibration(data, "entropy", 32, cache))
    ...build...; facts.update(check_calibrated(calibrator))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_path

if TYPE_CHECKING:
    import tensorrt as trt
    import torch
else:
    from utils.backends.tensorrt.api import trt
    from utils.core.deps import torch

FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}
CALIBRATORS = {"entropy": "IInt8EntropyCalibrator2", "max": "IInt8MinMaxCalibrator"}


@dataclass
class Calibration:
    data: np.ndarray   # N x 3 x H x W float32, normalised exactly as validation does
    method: str        # "entropy" or "max"
    batch: int         # every calibration batch holds exactly this many images
    cache: Path        # TensorRT's calibration cache (the scales)
    device: str = "cuda"  # where the batches are handed to TensorRT (the run's current GPU)

    @property
    def used(self) -> int:
        """Images that fill whole batches: the ones TensorRT sees."""
        return len(self.data) // self.batch * self.batch


def has_weak_typing() -> bool:
    """TensorRT 10.x keeps BuilderFlag.FP16/INT8 and the calibrators; TensorRT 11 and TensorRT-RTX do not."""
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt, "IInt8EntropyCalibrator2")


def check_route(precision: str) -> None:
    """Refuses a precision weak typing never had (fp8), without loading TensorRT."""
    if precision not in FLAGS:
        raise ArtTRTError(f"--weak_typing has no {precision} route (TensorRT never had an {precision} builder flag "
                          "with a calibrator): build from a Q/DQ file that carries it, without --weak_typing")


def require(precision: str) -> None:
    """Refuses, in one sentence, what weak typing cannot build with the installed TensorRT."""
    check_route(precision)
    if not has_weak_typing():
        raise ArtTRTError(f"{trt.__name__} {trt.__version__} has no weak typing (BuilderFlag.{FLAGS[precision]} "
                          "and the calibrators were removed in TensorRT 11): build from an ONNX file that carries "
                          "its precision (the default, without --weak_typing)")


def make_calibrator(c: Calibration) -> trt.IInt8Calibrator:
    """The calibrator of c.method, handing TensorRT c.used images in batches of exactly c.batch, and keeping what
    ArtTRT asks of it after the build: the images it really handed (handed), whether the scales came from the
    calibration cache (from_cache), and the error that stopped it (error). TensorRT 10's Python trampoline catches an
    exception raised in get_batch, prints it to stderr and treats it as the end of the data (python/src/infer/
    pyInt8.cpp, getBatch: catch ... return false), so an out-of-memory there would calibrate on fewer images without a
    word: get_batch keeps the error instead, and check_calibrated raises it."""

    if c.method not in CALIBRATORS:
        raise ArtTRTError(f"--calib_method {c.method} has no TensorRT calibrator: one of {', '.join(CALIBRATORS)}")
    base: Any = getattr(trt, CALIBRATORS[c.method])

    class TheCalibrator(base):  # type: ignore[misc]
        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.handed = 0
            self.from_cache = False
            self.error: Optional[BaseException] = None
            self.current: Optional[torch.Tensor] = None

        def get_batch_size(self) -> int:
            return c.batch

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.error is not None or self.index + c.batch > c.used:
                return None  # the documented end of data
            try:
                chunk = c.data[self.index:self.index + c.batch]
                # alive until the next batch: TensorRT reads it after get_batch returns
                self.current = torch.from_numpy(np.ascontiguousarray(chunk)).to(c.device)
            except BaseException as err:  # kept, and raised after the build (the trampoline would swallow it)
                self.error = err
                return None
            self.index += c.batch
            self.handed += c.batch
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> Optional[bytes]:
            if c.cache.is_file():
                self.from_cache = True
                return c.cache.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.error is not None:  # scales of the batches before the failure: never kept for a later build
                return
            try:
                with atomic_path(c.cache) as tmp:
                    tmp.write_bytes(bytes(cache))
            except BaseException as err:
                self.error = err

    calibrator: trt.IInt8Calibrator = TheCalibrator()
    return calibrator


def check_calibrated(calibrator: Any) -> Dict[str, Any]:
    """After the build: the error the calibrator kept, raised as one sentence; else the images TensorRT really saw."""
    err = calibrator.error
    if err is not None:
        if isinstance(err, KeyboardInterrupt):
            raise err
        raise ArtTRTError(f"int8 calibration stopped after {calibrator.handed} images: {first_line(err)}; the engine "
                          "was not kept (TensorRT would have calibrated on fewer images than the record says)") from err
    if calibrator.from_cache:
        return {"calib_from_cache": True}
    return {"calib_images_used": calibrator.handed}


def configure(builder: trt.Builder, config: trt.IBuilderConfig, input_name: str, dynamic: bool, precision: str,
              calibration: Optional[Calibration]) -> Tuple[Optional[Any], Dict[str, Any]]:
    """Sets the precision flag and, for int8, the calibrator and its profile; returns (the calibrator, facts)."""
    config.set_flag(getattr(trt.BuilderFlag, FLAGS[precision]))
    if precision != "int8":
        return None, {}
    if calibration is None or calibration.used == 0:
        raise ArtTRTError("weak-typed int8 needs calibration images (at least one full calibration batch): "
                          "pass --dataset")
    calibrator = make_calibrator(calibration)
    config.int8_calibrator = calibrator
    if dynamic:
        shape = trt.Dims([calibration.batch, *calibration.data.shape[1:]])
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, shape, shape, shape)
        config.set_calibration_profile(profile)
    return calibrator, {"calibrator": CALIBRATORS[calibration.method]}
