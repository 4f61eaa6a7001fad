"""Exports a torchvision classifier, EfficientNet-Lite0, a user's weights or a YOLOv8-cls model to ONNX.

The file is checked (onnx.checker, full check), run with ONNX Runtime against PyTorch on a random
batch (max abs difference printed; above the tolerance the export fails), and carries the network
name, input size, normalisation and class count in its metadata.

Usage:
    python onnx_transform.py --network resnet18 --input_shape -1 3 224 224          # dynamic batch
    python onnx_transform.py --network mobilenet_v2 --weights my.pth --input_shape 32 3 224 224
    python onnx_transform.py --network yolov8n-cls.pt --output weights/yolo.onnx
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.core.errors import ArtTRTError, cli_boundary, setup_logging

log = logging.getLogger("arttrt")


def build_parser() -> argparse.ArgumentParser:
    from utils.core.cli import new_parser

    p = new_parser("onnx_transform.py", __doc__, epilog="Examples: README.md.")
    p.add_argument("--network", help="torchvision name, efficientnet_lite0, or YOLOv8-cls .pt/.yaml "
                                     "(default: the YOLOv8-cls .pt given as --weights)")
    p.add_argument("--weights", help="your state_dict (.pth, any class count), or a YOLOv8-cls .pt")
    p.add_argument("--pretrained", action="store_true", help="the framework's published weights (downloads)")
    p.add_argument("--num_classes", type=int, help="class count for random weights (default 1000)")
    p.add_argument("--input_shape", nargs=4, type=int, default=None, metavar=("B", "C", "H", "W"),
                   help="B=-1 for a dynamic batch (default -1 3 crop crop)")
    p.add_argument("--output", help="ONNX file to write (default: the cache under weights/onnx/, named "
                                    "weights/onnx/<network>.onnx too)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto",
                   help="torch.onnx exporter (auto: dynamo, then the legacy one if dynamo fails)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and of the export check's batch")
    p.add_argument("--verbose", action="store_true", help="the libraries' own messages too")
    return p


def network_name(args: argparse.Namespace) -> str:
    """--network, or the original's form without it: a YOLOv8-cls .pt given as --weights."""
    if args.network:
        return str(args.network)
    if args.weights and args.weights.endswith(".pt"):
        weights, args.weights = args.weights, None
        return str(weights)
    raise ArtTRTError("pass --network NAME, the architecture of your weights, e.g. python onnx_transform.py "
                      f"--network resnet18 --weights {args.weights or 'best.pth'} --input_shape 1 3 224 224")


def name_stably(out: Path, network: str) -> Optional[Path]:
    """weights/onnx/<network>.onnx, a link to the file just exported (the name the README and the original
    use; the file itself is named by its content). A file of the user's under that name is left alone."""
    stable = out.parent / f"{Path(network).stem}.onnx"
    if stable.is_symlink():
        target = os.readlink(stable)
        ours = "/" not in target and (stable.parent / target).with_suffix(".json").is_file()
    else:
        ours = not stable.exists()
    if not ours:  # a file or a link of the user's (or a dangling one): never replaced
        log.warning("%s exists and is not ArtTRT's link: left as it is (the export is %s)", stable, out)
        return None
    tmp = stable.with_name(f".{stable.name}.link")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(out.name)
    os.replace(tmp, stable)
    return stable


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.models.chain import onnx_for
    from utils.models.names import check_network_name
    from utils.models.networks import load_network
    from utils.models.onnx_export import export_onnx, read_metadata

    args = build_parser().parse_args(argv)
    name = network_name(args)
    check_network_name(name)  # a mistyped name is refused now, with the closest names
    setup_logging(quiet=not args.verbose, verbose=args.verbose)  # the line printed below is the answer: said once
    net = load_network(name, args.weights, args.pretrained, args.num_classes, args.seed)
    shape = args.input_shape or [-1, 3, net.preprocess.crop, net.preprocess.crop]
    stable = None
    if args.output:
        out = Path(args.output)
        if out.exists() and not out.is_file():
            raise ArtTRTError(f"--output {out} is a folder, not a file")
        if out.exists() and read_metadata(out).get("made_by") != "arttrt onnx_transform":
            raise ArtTRTError(f"--output {out} exists and was not made by ArtTRT: not overwriting it")
        facts = export_onnx(net, out, shape, exporter=args.exporter, seed=args.seed)
    else:
        out, facts = onnx_for(net, shape, exporter=args.exporter)
        stable = name_stably(out, net.name)
    print(f"{stable or out}: {facts['nodes']} nodes, opset {facts['opset']} ({facts['exporter']} exporter), "
          f"max |ONNX Runtime - PyTorch| = {facts['max_abs_diff']:.2e} (tolerance {facts['tolerance']:.2e})"
          + (f"; the file is {out}" if stable else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
