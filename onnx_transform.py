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
import sys
from pathlib import Path
from typing import Optional, Sequence

from utils.core.errors import ArtTRTError, cli_boundary, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", required=True, help="torchvision name, efficientnet_lite0, or YOLOv8-cls .pt/.yaml")
    p.add_argument("--weights", help="a state_dict file (any class count)")
    p.add_argument("--pretrained", action="store_true", help="the framework's published weights (downloads)")
    p.add_argument("--num_classes", type=int, help="class count for random weights")
    p.add_argument("--input_shape", nargs=4, type=int, default=None, metavar=("B", "C", "H", "W"),
                   help="B=-1 for a dynamic batch (default -1 3 crop crop)")
    p.add_argument("--output", help="ONNX file to write (default: the cache under weights/onnx/)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto",
                   help="torch.onnx exporter (auto: dynamo, then the legacy one if dynamo fails)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.models.chain import onnx_for
    from utils.models.networks import load_network
    from utils.models.onnx_export import export_onnx, read_metadata

    args = build_parser().parse_args(argv)
    setup_logging()
    net = load_network(args.network, args.weights, args.pretrained, args.num_classes, args.seed)
    shape = args.input_shape or [-1, 3, net.preprocess.crop, net.preprocess.crop]
    if args.output:
        out = Path(args.output)
        if out.exists() and not out.is_file():
            raise ArtTRTError(f"--output {out} is a folder, not a file")
        if out.exists() and read_metadata(out).get("made_by") != "arttrt onnx_transform":
            raise ArtTRTError(f"--output {out} exists and was not made by ArtTRT: not overwriting it")
        facts = export_onnx(net, out, shape, exporter=args.exporter, seed=args.seed)
    else:
        out, facts = onnx_for(net, shape, exporter=args.exporter)
    print(f"{out}: {facts['nodes']} nodes, opset {facts['opset']} ({facts['exporter']} exporter), "
          f"max |ONNX Runtime - PyTorch| = {facts['max_abs_diff']:.2e} (tolerance {facts['atol']:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(cli_boundary(main))
