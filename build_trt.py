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
import logging
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from utils.core.errors import ArtTRTError, cli_boundary, setup_logging

log = logging.getLogger("arttrt")


def build_parser() -> argparse.ArgumentParser:
    from utils.backends import registry, tensorrt
    from utils.core.cli import new_parser
    from utils.data import options as data_options
    from utils.models import precision

    p = new_parser("build_trt.py", __doc__, epilog="Examples: README.md.")
    p.add_argument("--onnx", help="an ONNX file from onnx_transform.py, fp32 or already at its precision (default: "
                                  "the one weights/onnx/<network>.onnx that onnx_transform.py named)")
    registry.add_precision_args(p, several=False)
    p.add_argument("--input_shape", nargs=4, type=int, metavar=("B", "C", "H", "W"),
                   help="B=-1 for a dynamic batch (default: the ONNX file's own input shape)")
    tensorrt.add_args(p, max_default="256 for a dynamic batch", run=False)
    data_options.add_args(p.add_argument_group("calibration images (int8)"), synthetic=False)
    precision.add_args(p, calib_dataset=False)
    p.add_argument("--seed", type=int, default=0, help="seed that picks the calibration images")
    p.add_argument("--inspect", action="store_true",
                   help="layer tables of the ONNX file and the engine (TensorRT's engine inspector), and an int8/fp8 "
                        "file's per-layer drift from fp32, in a folder beside the engine")
    p.add_argument("--verbose", action="store_true", help="the libraries' own messages too")
    return p


def inspect_built(engine: Path, facts: Dict[str, Any], precision: str, net: Any, shape: Tuple[int, ...]) -> None:
    """--inspect: what the ONNX file and the engine hold, written to <engine>.inspect/ and summarised."""
    from utils.backends.tensorrt.runner import TensorRTRunner
    from utils.study.look_inside import inspect_model, write_engine_inspection

    folder = engine.with_name(engine.stem + ".inspect")
    summary = inspect_model(Path(facts["onnx"]), precision, facts, folder)
    with TensorRTRunner(engine, net.preprocess, precision) as runner:
        info = runner.engine_information(shape)
    if info is not None:
        summary["engine"] = write_engine_inspection(info, engine.stem, folder)
    for what, s in summary.items():
        if isinstance(s, dict):
            counts = ", ".join(f"{p} {n}" for p, n in (s.get("precisions") or {}).items())
            print(f"{what}: {s.get('layers')} layers{' (' + counts + ')' if counts else ''}: {s['table']}")


def default_onnx() -> Path:
    """The original's `build_trt.py --fp16` without --onnx: the one file onnx_transform.py named
    weights/onnx/<network>.onnx, or a sentence that gives the command to type."""
    from utils.models.paths import weights_dir

    named = sorted(p for p in (weights_dir() / "onnx").glob("*.onnx") if p.is_symlink())
    if len(named) == 1:
        log.info("--onnx not given: building %s", named[0])
        return named[0]
    example = named[0] if named else weights_dir() / "onnx" / "resnet18.onnx"
    raise ArtTRTError(("several ONNX files are named: " + ", ".join(p.name for p in named) + "; pass one with --onnx"
                       if named else "pass --onnx FILE (onnx_transform.py --network NAME writes "
                       "weights/onnx/NAME.onnx)") + f", e.g. python build_trt.py --onnx {example} --fp16")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.backends import registry
    from utils.backends.tensorrt.engine import check_precision_supported, engine_for_network, require_tensorrt_and_gpu
    from utils.data.options import DataOptions
    from utils.models.chain import ModelOptions, user_onnx
    from utils.models.onnx_export import network_from_onnx, read_metadata

    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    precision = registry.precisions_asked(args)[0]
    onnx_path = Path(args.onnx) if args.onnx else default_onnx()
    if not onnx_path.is_file():
        raise ArtTRTError(f"ONNX file {onnx_path} does not exist")
    shape = tuple(args.input_shape) if args.input_shape else tuple(read_metadata(onnx_path)["graph_input_shape"])
    net = network_from_onnx(onnx_path)
    model = ModelOptions.from_args(args)
    model = ModelOptions(onnx=str(onnx_path), input_shape=shape, fp16_io=model.fp16_io,  # type: ignore[arg-type]
                         calib=model.calib)
    user_onnx(net, model)  # the input shape is checked before anything else
    check_precision_supported(precision, require_tensorrt_and_gpu())  # before minutes of calibration
    opts = registry.options_from_args("tensorrt", args)
    engine, facts = engine_for_network(net, precision, model, opts, DataOptions.from_args(args),
                                       batch_size=max(1, int(shape[0])), max_batch=256)
    print(f"{engine} ({'reused' if facts.get('cached') else 'built in %.1f s' % facts['build_s']}, "
          f"{facts['route']}, {facts['module']} {facts['tensorrt_version']}, {facts['gpu']})")
    if args.inspect:
        # the engine's largest opt batch (its last profile's), where its kernels were tuned
        opt = int(max(p[1] for p in facts.get("profiles") or [[1, max(1, int(shape[0])), 1]]))
        inspect_built(engine, facts, precision, net, (opt, *shape[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
