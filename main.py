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
import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.backends import registry
from utils.core.errors import cli_boundary
from utils.core.top1_budget import Top1Budget
from utils.measure.scenarios import SCENARIOS
from utils.study.request import DEFAULT_DURATION_S, DEFAULT_ITERATIONS

ROOT = Path(__file__).resolve().parent


def top1_budget(text: str) -> Top1Budget:
    """--max_top1_drop's value: points ("1") or a share of PyTorch fp32's top-1 ("1%")."""
    try:
        return Top1Budget.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give points of top-1 (1) or a share of Vanilla's top-1 "
                                         "(1%, MLPerf's 99 % rule)") from None


def build_parser() -> argparse.ArgumentParser:
    from utils.core.cli import new_parser
    from utils.data import options as data_options
    from utils.models import chain, precision

    p = new_parser("main.py", __doc__, epilog="Examples of every command: README.md.",
                   usage="main.py (-v | --compare | --demo | --report DIR) [options]")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-v", "--validate", action="store_true", help="validate and time (top-1/top-5, latency)")
    mode.add_argument("--compare", action="store_true", help="compare outputs with a reference runner")
    mode.add_argument("--demo", action="store_true", help="the built-in default: EfficientNet-Lite0, 20 photos")
    mode.add_argument("--report", metavar="DIR", help="redraw every table, plot and report from DIR's records")
    p.add_argument("--baseline", metavar="DIR", help="with --report: each row against DIR's row of its setup")
    p.add_argument("--max_regression", type=float, metavar="PCT", help="with --baseline: exit 4 past PCT %% slower")

    net = p.add_argument_group("network")
    net.add_argument("--network", default="resnet18", metavar="NAME",
                     help="torchvision name, efficientnet_lite0, or a YOLOv8-cls .pt/.yaml")
    net.add_argument("--networks", nargs="+", metavar="NAME", help="several networks in one study (with -v)")
    net.add_argument("--weights", metavar="FILE",
                     help="your state_dict (.pth, any class count), or with --network yolo a .pt")
    net.add_argument("--pretrained", action="store_true", help="the framework's published weights (downloads)")
    net.add_argument("--num_classes", type=int, metavar="N", help="class count for random weights (default 1000)")
    net.add_argument("--seed", type=int, default=0, metavar="N",
                     help="seed of random weights, random images, calibration picks")

    data_options.add_args(p.add_argument_group("data"))

    run = p.add_argument_group("backend and precision")
    run.add_argument("--backend", choices=list(registry.BACKENDS), default=None, metavar="B",
                     help=f"one of {', '.join(registry.BACKENDS)} (default torch; onnxrt with --compare)")
    run.add_argument("--backends", nargs="+", choices=list(registry.BACKENDS), metavar="B",
                     help="several backends in one run")
    run.add_argument("-trt", "--trt", dest="trt_backend", action="store_const", const="tensorrt",
                     help="the TensorRT backend (same as --backend tensorrt)")
    registry.add_precision_args(run)
    run.add_argument("--device", default=None, metavar="DEV",
                     help="cpu, cuda or cuda:N (default: cuda for -trt, else cpu)")
    run.add_argument("--cuda_graph", action="store_true", help="replay a CUDA graph per batch shape")
    run.add_argument("--tf32", action="store_true",
                     help="fp32 on a GPU may use TF32, in every backend alike (default: strict fp32)")
    chain.add_args(run)
    precision.add_args(run)
    registry.add_args(p)

    meas = p.add_argument_group("measurement")
    meas.add_argument("--batch_size", type=int, default=1, metavar="N", help="images per batch")
    meas.add_argument("--batch_sizes", nargs="+", type=int, metavar="N", help="a sweep: one measurement per batch size")
    meas.add_argument("--limit", type=int, metavar="N", help="the first N images only")
    meas.add_argument("--sync", action="store_true", help="synchronise after every batch (default: pipelined)")
    meas.add_argument("--warmup", type=float, default=0.1, metavar="F", help="fraction of the batches run as warm-up")
    meas.add_argument("--min_warmup_s", type=float, default=0.2, metavar="S", help="least warm-up time, seconds")
    meas.add_argument("--duration", type=float, metavar="S",
                      help="bounded timing: at least S seconds of timed batches per batch size (trtexec's rule: "
                           f"with --iterations, whichever is reached last; default {DEFAULT_DURATION_S:g} in a sweep)")
    meas.add_argument("--iterations", type=int, metavar="N",
                      help=f"bounded timing: at least N timed batches (default {DEFAULT_ITERATIONS} in a sweep)")
    meas.add_argument("--repeats", type=int, default=1, metavar="N",
                      help="N timed runs per batch size: mean, 95 %% interval across runs")
    meas.add_argument("--full_passes", action="store_true",
                      help="time every batch size over the whole dataset (the original's way; accuracy at each) "
                           "instead of one accuracy pass and bounded timing")
    meas.add_argument("--telemetry", action="store_true", help="sample GPU memory and SM use with NVML")
    meas.add_argument("--telemetry_ms", type=int, default=50, metavar="MS", help="telemetry sampling interval, ms")
    meas.add_argument("--output", default=str(ROOT / "outputs"), metavar="DIR",
                      help="results folder (default: outputs/ beside main.py)")
    talk = meas.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    talk.add_argument("--verbose", action="store_true", help="the libraries' own messages too")

    study = p.add_argument_group("study (with -v)")
    study.add_argument("--gpus", nargs="+", metavar="N",
                       help="GPU indices (or all): one process per GPU, each taking the plan's next setup")
    study.add_argument("--shard", metavar="K/N", help="only the K-th of N shares of the plan (--report merges "
                       "them)")
    study.add_argument("--claims", metavar="DIR", help="claim files shared by one study's processes (--gpus sets "
                       "it)")
    study.add_argument("--calib_methods", nargs="+", metavar="M", help="int8/fp8 rows for each calibration method")
    study.add_argument("--calib_sizes", nargs="+", type=int, metavar="N", help="int8/fp8 rows for each calibration "
                       "image count (the same seeded images)")
    study.add_argument("--max_top1_drop", type=top1_budget, metavar="POINTS",
                       help="exit 3 on rows over POINTS of top-1 below Vanilla (1%%: MLPerf's rule)")
    study.add_argument("--mixed_precision", action="store_true",
                       help="int8/fp8: keep the fewest layers in fp32 for top-1 within --max_top1_drop")

    serve = p.add_argument_group("serving under MLPerf LoadGen (with -v; --duration per run, default 10 s)")
    serve.add_argument("--scenario", nargs="+", choices=list(SCENARIOS), metavar="S",
                       help=f"{' '.join(SCENARIOS)} (alone: no timing jobs)")
    serve.add_argument("--max_queue_delay_us", type=int, default=0, metavar="US", help="batcher's wait for more")
    serve.add_argument("--target_qps", type=float, metavar="QPS", help="server: the Poisson arrival rate")
    serve.add_argument("--latency_bound_ms", type=float, default=15.0, metavar="MS", help="server: latency bound")
    serve.add_argument("--percentile", type=float, default=99.0, metavar="P", help="server: percentile held to it")
    serve.add_argument("--find_peak", action="store_true", help="server: bisect the highest QPS within the bound")

    look = p.add_argument_group("look inside (with -v)")
    look.add_argument("--inspect", action="store_true",
                      help="layer tables of the ONNX file and the TensorRT engine, and a quantized file's per-layer "
                           "drift from fp32 (outputs/inspect/)")
    look.add_argument("--profile", action="store_true",
                      help="a few batches under the PyTorch profiler after the timed ones (Chrome trace in "
                           "outputs/profiles/, top operators in the report)")

    cmp_ = p.add_argument_group("compare")
    cmp_.add_argument("--reference", default="torch-fp32", metavar="B-P", help="reference runner, BACKEND-PRECISION")
    cmp_.add_argument("--num_inputs", type=int, default=5000, metavar="N",
                      help="random inputs to compare; with --val_dataset the most images compared")
    cmp_.add_argument("-rtol", "--rtol", type=float, default=1e-3, metavar="X",
                      help="relative tolerance of the isclose table")
    cmp_.add_argument("-atol", "--atol", type=float, default=1e-8, metavar="X",
                      help="absolute tolerance of the isclose table")
    cmp_.add_argument("--val_dataset", action="store_true", help="compare on --dataset, not random inputs")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses the command line into one typed request and runs it (utils/study/request.py, utils/study/run.py)."""
    from utils.study.request import request_from_args

    parser = build_parser()
    request = request_from_args(parser.parse_args(argv), parser, argv)  # every refusal before the heavy libraries
    from utils.study.run import run

    return run(request)


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
