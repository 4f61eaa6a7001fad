"""ArtTRT: what do I gain, and what do I lose, by running this image classifier with TensorRT?

Validates (-v), compares (--compare) and times every backend and precision of a network, and writes
records, tables and plots under outputs/.

Usage:
    python main.py --demo
    python main.py -v --batch_size=1 --dataset=datasets/imagenet --network=resnet18 -trt
    python main.py -v --network resnet50 --synthetic 2048 --device cuda --backend torch \
        --precisions fp32 fp16 --batch_sizes 1 32 64 128 256 --telemetry
    python main.py --compare --network resnet18 --backend onnxrt --precision int8 -rtol=1e-2
    python main.py --report outputs
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from utils.cli_args import add_calibration_args, add_engine_args
from utils.errors import ArtTRTError, cli_boundary, setup_logging
from utils.registry import BACKENDS, PRECISIONS

log = logging.getLogger("arttrt")
ROOT = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-v", "--validate", action="store_true", help="validate and time (top-1/top-5, latency)")
    mode.add_argument("--compare", action="store_true", help="compare a runner's outputs with a reference runner")
    mode.add_argument("--demo", action="store_true",
                      help="built-in default: EfficientNet-Lite0 on the 20 photos that ship with foolbox")
    mode.add_argument("--report", metavar="DIR", help="redraw every table and plot from the records under DIR")

    net = p.add_argument_group("network")
    net.add_argument("--network", default="resnet18", help="torchvision name, efficientnet_lite0, or a YOLOv8-cls .pt/.yaml")
    net.add_argument("--weights", help="a state_dict file (any class count; torch.load weights_only=True)")
    net.add_argument("--pretrained", action="store_true", help="the framework's published weights (downloads)")
    net.add_argument("--num_classes", type=int, help="class count for random weights")
    net.add_argument("--seed", type=int, default=0, help="seed for random weights, random inputs and calibration picks")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="class-folder dataset: DIR/<wnid>/<image>")
    data.add_argument("--class_map", help="file naming the class folders in the network's output order")
    data.add_argument("--synthetic", type=int, metavar="N", help="N seeded random images, no labels (timing only)")
    data.add_argument("--limit", type=int, metavar="N", help="use the first N images only")
    data.add_argument("--cache_dir", help="where the decoded dataset cache lives (default datasets/.cache)")
    data.add_argument("--workers", type=int, help="decoding processes for the first pass (default min(16, CPUs))")
    data.add_argument("--gpu_lanes", type=int, help="how many of --workers decode on the GPU (default 2)")
    data.add_argument("--gpu_decode", action=argparse.BooleanOptionalAction, default=None,
                      help="decode JPEGs with nvjpeg on the GPU (default: when a GPU is present)")
    data.add_argument("--gpu_decoder", choices=["auto", "nvimgcodec", "torchvision"], default="auto",
                      help="GPU JPEG decoder: nvImageCodec (hardware JPEG engine) where installed, else torchvision")
    data.add_argument("--strict", action="store_true", help="a corrupt image is fatal instead of skipped")

    run = p.add_argument_group("backend")
    run.add_argument("--backend", choices=list(BACKENDS), default=None, help="default torch (onnxrt with --compare)")
    run.add_argument("--backends", nargs="+", choices=list(BACKENDS), help="several backends in one run")
    run.add_argument("-trt", "--trt", action="store_true", help="the TensorRT backend (same as --backend tensorrt)")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32")
    run.add_argument("--precisions", nargs="+", choices=PRECISIONS, help="several precisions in one run")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda for -trt, else cpu)")
    run.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], help="ONNX Runtime provider")
    run.add_argument("--onnx", help="an existing ONNX file instead of exporting")
    run.add_argument("--engine", help="an existing TensorRT engine file")
    run.add_argument("--input_shape", nargs=4, type=int, metavar=("B", "C", "H", "W"),
                     help="ONNX input shape; B=-1 for a dynamic batch (default -1 3 crop crop)")
    run.add_argument("--cuda_graph", action="store_true",
                     help="replay a CUDA graph per batch shape (torch and TensorRT on CUDA)")
    run.add_argument("--trt_shapes", nargs="+", choices=["dynamic", "static"], default=["dynamic"],
                     help="TensorRT engines with a dynamic-batch profile, static per batch size, or both")
    add_engine_args(run, max_default="the largest batch size asked")
    run.add_argument("--channels_last", action="store_true", help="channels_last memory format (torch)")
    run.add_argument("--compile_mode", default="default",
                     choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    add_calibration_args(run)
    run.add_argument("--calib_dataset", help="dataset for calibration (default --dataset)")

    meas = p.add_argument_group("measurement")
    meas.add_argument("--batch_size", type=int, default=1)
    meas.add_argument("--batch_sizes", nargs="+", type=int, help="a sweep: one measurement per batch size")
    meas.add_argument("--sync", action="store_true", help="synchronise after every batch (default: pipelined)")
    meas.add_argument("--warmup", type=float, default=0.1, help="fraction of batches used as warm-up")
    meas.add_argument("--min_warmup_s", type=float, default=0.2, help="least warm-up time before the first batch")
    meas.add_argument("--telemetry", action="store_true", help="sample GPU memory/SM use with NVML into a CSV")
    meas.add_argument("--telemetry_ms", type=int, default=50)
    meas.add_argument("--output", default=str(ROOT / "outputs"), help="results folder")
    meas.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")

    cmp_ = p.add_argument_group("compare")
    cmp_.add_argument("--reference", default="torch-fp32", help="reference runner as BACKEND-PRECISION")
    cmp_.add_argument("--num_inputs", type=int, default=5000, help="random inputs to compare")
    cmp_.add_argument("-rtol", "--rtol", type=float, default=1e-3)
    cmp_.add_argument("-atol", "--atol", type=float, default=1e-8)
    cmp_.add_argument("--val_dataset", action="store_true", help="compare on --dataset instead of random inputs")
    return p


def _runs(args: argparse.Namespace) -> List[tuple[str, str, str]]:
    """(backend, precision, engine shapes) for every run asked; shapes matter for TensorRT only."""
    backends = args.backends or [("tensorrt" if args.trt else (args.backend or "torch"))]
    precisions = args.precisions or [args.precision]
    out = []
    for b in backends:
        for p in precisions:
            for shapes in (args.trt_shapes if b == "tensorrt" else ["dynamic"]):
                out.append((b, p, shapes))
    return out


def _dataset(args: argparse.Namespace, net, need_labels: bool = True):  # type: ignore[no-untyped-def]
    from utils.datasets import SyntheticDataset, open_dataset

    if args.synthetic:
        return SyntheticDataset(args.synthetic, net.preprocess.crop, seed=args.seed), None
    if not args.dataset:
        raise ArtTRTError("pass --dataset DIR (class folders), or --synthetic N for a timing run on random images")
    ds = open_dataset(Path(args.dataset), net.preprocess, net.num_classes,
                      Path(args.class_map) if args.class_map else None,
                      Path(args.cache_dir) if args.cache_dir else None, args.workers, args.gpu_decode,
                      args.strict, progress=not args.quiet, gpu_decoder=args.gpu_decoder,
                      gpu_lanes=args.gpu_lanes)
    return ds, len(ds.meta["class_names"])


def run_validate(args: argparse.Namespace) -> int:
    from utils.measure import MeasureOptions
    from utils.networks import load_network
    from utils.pipeline import spec_from_args, validate_one
    from utils.tables import percentile_table, results_table

    net = load_network(args.network, args.weights, args.pretrained, args.num_classes, args.seed)
    dataset, n_out = _dataset(args, net)
    output = Path(args.output)
    telemetry = None
    if args.telemetry:
        from utils.telemetry import Telemetry

        telemetry = Telemetry(interval_ms=args.telemetry_ms).start()
    records = []
    batch_sizes = args.batch_sizes or [args.batch_size]
    if args.max_batch is None:
        args.max_batch = max(batch_sizes)
    try:
        for backend, precision, shapes in _runs(args):
            for bs in batch_sizes:
                spec = spec_from_args(args, backend, precision, net)
                if shapes == "static":
                    spec.input_shape = (bs,) + tuple(spec.input_shape[1:])  # type: ignore[assignment]
                opts = MeasureOptions(batch_size=bs, warmup_fraction=args.warmup, min_warmup_s=args.min_warmup_s,
                                      sync=args.sync, limit=args.limit, progress=not args.quiet)
                if telemetry is not None:
                    telemetry.label = f"{backend}-{precision}-bs{bs}"
                rec, _ = validate_one(spec, net, dataset, opts, output, n_out, telemetry)
                records.append(rec)
                log.info("wrote %s", rec.get("_path"))
    finally:
        if telemetry is not None:
            telemetry.stop()
            csv_path = telemetry.save(output / "telemetry", f"{net.name}")
            log.info("GPU telemetry: %s", csv_path)
    print(results_table(records))
    print()
    print(percentile_table(records))
    from utils.report import make_report

    wrote = make_report(output)
    log.info("tables and plots redrawn from the records under %s (%d files)", output, len(wrote))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from utils.demo import run_demo as demo

    return demo(Path(args.output), quiet=args.quiet)


def run_compare(args: argparse.Namespace) -> int:
    from utils.compare import run_compare_cli

    return run_compare_cli(args)


def run_report(args: argparse.Namespace) -> int:
    from utils.report import make_report

    for line in make_report(Path(args.report)):
        print(line)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device is None:
        args.device = "cuda" if (args.trt or args.backend == "tensorrt") else "cpu"
    setup_logging(args.quiet)
    from utils.records import set_command

    set_command("main.py", argv)
    from utils.progress import set_quiet

    set_quiet(args.quiet)
    if args.demo:
        return run_demo(args)
    if args.compare:
        return run_compare(args)
    if args.report:
        return run_report(args)
    if args.validate:
        return run_validate(args)
    build_parser().print_usage()
    print("choose one of -v, --compare, --demo or --report", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
