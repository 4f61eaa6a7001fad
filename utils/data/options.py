"""The one set of data options, made from the arguments once and carried everywhere a dataset is opened:
validation, comparison and calibration all decode through the same cache with the same settings.

Usage:
    data = DataOptions.from_args(args)            # or DataOptions(dataset="datasets/demo")
    ds = data.open(net.preprocess, net.num_classes)
    calib = data.with_dataset(args.calib_dataset)  # the same options, real images (calibration)
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from utils.core.errors import ArtTRTError, at_least
from utils.core.namespace import from_args
from utils.data.cache import CachedDataset, SyntheticDataset, open_dataset
from utils.data.decode import GPU_DECODERS
from utils.data.preprocess import Preprocess


@dataclass(frozen=True)
class DataOptions:
    """Where the images come from and how the first pass decodes them (argparse dests of add_args)."""

    dataset: Optional[str] = None          # class folders DIR/<wnid>/<image>
    synthetic: Optional[int] = None        # N seeded random images, no labels
    class_map: Optional[str] = None
    cache_dir: Optional[str] = None
    workers: Optional[int] = None
    gpu_lanes: Optional[int] = None
    gpu_decode: Optional[bool] = None
    gpu_decoder: str = "auto"
    strict: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        """Each of these options is checked here, the one place that owns it."""
        at_least("synthetic", self.synthetic)
        at_least("workers", self.workers)
        at_least("gpu_lanes", self.gpu_lanes, 0)

    @staticmethod
    def from_args(args: argparse.Namespace) -> "DataOptions":
        return from_args(DataOptions, args, progress=not getattr(args, "quiet", False))

    def with_dataset(self, dataset: Optional[str]) -> "DataOptions":
        """The same decoding options for real images of `dataset` (None: this one's --dataset), never --synthetic's
        random ones: calibration images come from here, also when the run itself times random images."""
        return dataclasses.replace(self, dataset=dataset or self.dataset, synthetic=None)

    def open(self, pp: Preprocess, num_classes: int) -> CachedDataset:
        """The decoded dataset (or the seeded random images of --synthetic) for a network's preprocessing."""
        if self.synthetic is not None:
            return SyntheticDataset(self.synthetic, pp.crop, seed=self.seed)
        if not self.dataset:
            raise ArtTRTError("pass --dataset DIR (class folders), or --synthetic N for a timing run on random images")
        return open_dataset(Path(self.dataset), pp, num_classes, Path(self.class_map) if self.class_map else None,
                            Path(self.cache_dir) if self.cache_dir else None, self.workers, self.gpu_decode,
                            self.strict, progress=self.progress, gpu_decoder=self.gpu_decoder,
                            gpu_lanes=self.gpu_lanes)


def add_args(g: Any, synthetic: bool = True) -> None:
    """The data arguments (an ArgumentParser or an argument group)."""
    g.add_argument("--dataset", metavar="DIR", help="class-folder dataset: DIR/<wnid>/<image>")
    g.add_argument("--class_map", metavar="FILE", help="file naming the class folders in the network's output order")
    if synthetic:
        g.add_argument("--synthetic", type=int, metavar="N", help="N seeded random images, no labels (timing only)")
    g.add_argument("--cache_dir", metavar="DIR", help="where the decoded dataset cache lives (default datasets/.cache)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="decoding processes for the first pass (default min(16, CPUs))")
    g.add_argument("--gpu_lanes", type=int, metavar="N", help="how many of --workers decode on the GPU (default 2)")
    g.add_argument("--gpu_decode", action=argparse.BooleanOptionalAction, default=None,
                   help="decode JPEGs with nvjpeg on the GPU (default: when a GPU is present)")
    g.add_argument("--gpu_decoder", choices=GPU_DECODERS, default="auto",
                   help="GPU JPEG decoder: nvImageCodec (hardware JPEG engine) where installed, else torchvision")
    g.add_argument("--strict", action="store_true", help="a corrupt image is fatal instead of skipped")
