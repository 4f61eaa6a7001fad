"""Builds a TensorRT engine from an ONNX file, with the precision carried in the file (TensorRT 11's way).

fp16/bf16 go through ModelOpt AutoCast, int8/fp8 through ModelOpt Q/DQ quantization calibrated on real
images (--dataset), then a strongly typed build. --weak_typing uses TensorRT 10's builder flags and an
entropy calibrator instead, where the installed TensorRT still has them. Engines are cached under
weights/engines/ by (ONNX hash, precision, shapes, TensorRT version, GPU) and reused unless --force.

Usage:
    python build_trt.py --onnx weights/onnx/resnet18.onnx --fp16
    python build_trt.py --onnx x.onnx --precision int8 --dataset datasets/imagenet --calib_method entropy \
        --input_shape -1 3 224 224 --min_batch 1 --opt_batch 32 --max_batch 256
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.cli_args import add_calibration_args, add_engine_args
from utils.errors import ArtTRTError, cli_boundary, setup_logging
from utils.registry import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, help="an fp32 ONNX file from onnx_transform.py (or one that carries its precision)")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    for prec in PRECISIONS[1:]:
        p.add_argument(f"--{prec}", action="store_true", help=f"same as --precision {prec}")
    p.add_argument("--input_shape", nargs=4, type=int, metavar=("B", "C", "H", "W"),
                   help="B=-1 for a dynamic batch (default: the ONNX file's own input shape)")
    add_engine_args(p, max_default="256 for a dynamic batch")
    p.add_argument("--dataset", help="calibration images for int8/fp8 (class folders)")
    add_calibration_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed that picks the calibration images")
    return p


def network_from_onnx(path: Path):  # type: ignore[no-untyped-def]
    """The name, preprocessing and class count recorded in an ArtTRT ONNX file (no weights needed)."""
    import torch

    from utils.networks import Network, Preprocess
    from utils.onnx_export import read_metadata

    meta = read_metadata(path)
    if "network" not in meta:
        raise ArtTRTError(f"{path} carries no ArtTRT metadata (network, preprocessing): export it with onnx_transform.py")
    pp = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocess"].items()})
    return Network(meta["network"], torch.nn.Identity(), pp, int(meta["num_classes"]), str(meta.get("weights")))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.artefacts import weights_dir
    from utils.onnx_export import check_input_shape, read_metadata
    from utils.precision import calibration_data, convert_precision
    from utils.trt_pipeline import EngineShapes, check_precision_supported, engine_for, require_tensorrt_and_gpu

    args = build_parser().parse_args(argv)
    setup_logging()
    flags = [p for p in PRECISIONS[1:] if getattr(args, p)]
    if len(flags) > 1 or (flags and args.precision and args.precision != flags[0]):
        raise ArtTRTError("give one precision: --precision P or one of --fp16/--bf16/--int8/--fp8")
    precision = args.precision or (flags[0] if flags else "fp32")
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise ArtTRTError(f"ONNX file {onnx_path} does not exist")
    meta = read_metadata(onnx_path)
    shape = tuple(args.input_shape) if args.input_shape else tuple(meta["graph_input_shape"])
    check_input_shape(onnx_path, shape)
    check_precision_supported(precision, require_tensorrt_and_gpu())  # before minutes of calibration
    calib = {"method": args.calib_method, "size": args.calib_size, "dataset": args.dataset, "seed": args.seed,
             "tool": args.quantizer}
    carried = meta.get("precision", "fp32")
    calib_for_weak = None
    if args.weak_typing or carried == precision:
        src = onnx_path
        if args.weak_typing and precision == "int8":
            data, facts = calibration_data(network_from_onnx(onnx_path), calib, int(shape[2]), weights_dir() / "calib")
            cache = Path(facts["calib_data"]).with_suffix(".trtcalib")
            calib_for_weak = (data, cache)
    else:
        if carried != "fp32":
            raise ArtTRTError(f"{onnx_path.name} already carries {carried}; pass the fp32 export to convert it to {precision}")
        src, _ = convert_precision(onnx_path, precision, network_from_onnx(onnx_path), calib=calib, io_fp16=args.fp16_io)
    shapes = EngineShapes.of(shape, args.min_batch, args.opt_batch, args.max_batch or (256 if shape[0] == -1 else None))
    engine, facts = engine_for(src, precision, shapes, weights_dir() / "engines", args.weak_typing, args.workspace,
                               Path(args.timing_cache) if args.timing_cache else None, args.force, calib_for_weak)
    print(f"{engine} ({'reused' if facts.get('cached') else 'built in %.1f s' % facts['build_s']}, "
          f"{facts['route']}, {facts['module']} {facts['tensorrt_version']}, {facts['gpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
