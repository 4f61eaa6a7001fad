"""The model half of the artefact chain: network -> ONNX -> ONNX at a precision, each step a cached artefact
(utils.core.artefact.cached) keyed by what made it. The engine step is the TensorRT backend's
(utils.backends.tensorrt.engine), and it starts from `model_file` like every ONNX-based backend.

A user's --onnx file is used as it is when it already carries the precision asked (its metadata says
which: ArtTRT writes it when converting), converted when it is fp32, and refused otherwise.

Usage:
    model = ModelOptions(input_shape=(-1, 3, 224, 224))
    path, facts = model_file(net, "int8", model, DataOptions(dataset="datasets/demo"))
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from utils.core.artefact import cached
from utils.core.errors import ArtTRTError
from utils.core.fileio import regular_file
from utils.core.namespace import from_args
from utils.core.phases import in_phase
from utils.data.options import DataOptions
from utils.models.onnx_export import OPSET, check_input_shape, export_onnx
from utils.models.paths import weights_dir
from utils.models.precision import CalibOptions, convert_precision

if TYPE_CHECKING:
    from utils.models.networks import Network

Shape = Tuple[int, int, int, int]


@dataclass(frozen=True)
class ModelOptions:
    """Which ONNX file a backend runs, and how it is made (argparse dests of add_args)."""

    onnx: Optional[str] = None            # a user's file instead of the export
    input_shape: Optional[Shape] = None   # default (-1, 3, crop, crop): a dynamic batch
    fp16_io: bool = False                 # AutoCast: the model's inputs and outputs in fp16 too
    calib: CalibOptions = field(default_factory=CalibOptions)

    @staticmethod
    def from_args(args: argparse.Namespace) -> "ModelOptions":
        budget = getattr(args, "max_top1_drop", None) if getattr(args, "mixed_precision", False) else None
        return from_args(ModelOptions, args, calib=from_args(CalibOptions, args, mixed_precision_budget=budget))

    def shape_for(self, net: Network) -> Shape:
        if self.input_shape is not None:
            b, c, h, w = (int(v) for v in self.input_shape)
            return b, c, h, w
        return -1, 3, net.preprocess.crop, net.preprocess.crop


def add_args(g: Any) -> None:
    """--onnx and --input_shape (calibration: utils.models.precision.add_args)."""
    g.add_argument("--onnx", metavar="FILE", help="an existing ONNX file instead of exporting (one that already "
                                                 "carries the precision asked is used as it is)")
    g.add_argument("--input_shape", nargs=4, type=int, metavar=("B", "C", "H", "W"),
                   help="ONNX input shape; B=-1 for a dynamic batch (default -1 3 crop crop)")


def onnx_for(net: Network, input_shape: Sequence[int], exporter: str = "auto",
             folder: Optional[Path] = None) -> Tuple[Path, Dict[str, Any]]:
    """The exported fp32 ONNX file of `net` at `input_shape`, exported once and reused.

    Returns:
        (path, facts) where facts holds the export facts and prepare_s, the seconds spent now (0 when cached).
    """

    b = "dyn" if int(input_shape[0]) == -1 else f"b{int(input_shape[0])}"
    settings = {"model": net, "network": net.name, "weights": net.weights, "shape": [int(v) for v in input_shape],
                "exporter": exporter, "opset": OPSET, "num_classes": net.num_classes}  # model: by content

    @in_phase("export")
    def make(tmp: Path) -> Dict[str, Any]:
        facts = export_onnx(net, tmp, input_shape, exporter=exporter, shown_as=f"{tmp.parent}{os.sep}")
        return {**facts, "network": net.name, "weights": net.weights, "input_shape": list(input_shape)}

    return cached(folder or weights_dir() / "onnx", f"{net.name}-{b}-{input_shape[2]}x{input_shape[3]}-fp32", ".onnx",
                  settings, make)


def user_onnx(net: Network, model: ModelOptions) -> Tuple[Path, str]:
    """The user's --onnx file, checked against the input shape and the network's classes; (path, its precision)."""

    assert model.onnx is not None
    path = regular_file(model.onnx, "ONNX file")
    meta = check_input_shape(path, model.shape_for(net))
    if meta.get("num_classes") not in (None, net.num_classes):
        raise ArtTRTError(f"ONNX file {path} has {meta['num_classes']} classes, the network {net.num_classes}")
    if meta.get("network") not in (None, net.name):
        raise ArtTRTError(f"ONNX file {path} was exported from network {meta['network']}, not {net.name}: pass "
                          f"--network {meta['network']} (its records would carry the wrong name otherwise)")
    return path, str(meta.get("precision", "fp32"))


def model_file(net: Network, precision: str, model: ModelOptions,
               data: DataOptions = DataOptions()) -> Tuple[Path, Dict[str, Any]]:
    """The ONNX file that runs `net` at `precision`: the user's or the cached export, converted if needed.

    Returns:
        (path, facts): facts["prepare_s"] is export plus conversion time spent now.
    """
    if model.onnx:
        path, carried = user_onnx(net, model)
        if carried == precision:
            return path, {"prepare_s": 0.0, "onnx_given": str(path), "precision_source": "the given ONNX file"}
        if carried != "fp32":
            raise ArtTRTError(f"{path.name} already carries {carried}, not {precision}: ask --precision {carried}, "
                              f"or pass the fp32 export to convert it to {precision}")
        export: Dict[str, Any] = {"prepare_s": 0.0, "onnx_given": str(path)}
    else:
        path, export = onnx_for(net, model.shape_for(net))
    cached = {"export_cached": export["cached"]} if "cached" in export else {}  # the cold start names it
    if precision == "fp32":
        return path, {"export_s": export["prepare_s"], "prepare_s": export["prepare_s"], **cached,
                      **({"onnx_given": export["onnx_given"]} if "onnx_given" in export else {})}
    out, conv = convert_precision(path, precision, net, model.calib, data, io_fp16=model.fp16_io)
    conv.update(cached)
    if "cached" in conv:
        conv["convert_cached"] = conv["cached"]
    conv["export_s"] = export["prepare_s"]
    conv["prepare_s"] = round(float(export["prepare_s"]) + float(conv["prepare_s"]), 3)
    return out, conv


def check_input_size(net: Network, model: ModelOptions) -> None:
    """--input_shape's image size is the network's crop (what the dataset is cut to): one sentence otherwise, before
    any work (onnx_transform.py exports other sizes)."""
    shape = model.shape_for(net)
    if tuple(shape[2:]) != (net.preprocess.crop, net.preprocess.crop):
        raise ArtTRTError(f"--input_shape asks {shape[2]}x{shape[3]} images, but {net.name}'s preprocessing crops "
                          f"{net.preprocess.crop}x{net.preprocess.crop}: the images fed would not fit the model (export "
                          "other sizes with onnx_transform.py)")
