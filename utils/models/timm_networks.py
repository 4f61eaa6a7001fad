"""timm's image classifiers (`--network timm:NAME`): built by timm.create_model, fed as timm feeds them (its own data
config for that model: input size, crop share, interpolation, mean and std, as timm's resolve_model_data_config
gives them), published weights through timm's own hub download (--pretrained), random weights otherwise.

The prefix keeps timm's names apart from torchvision's: both have a resnet50 and a convnext_tiny, built and
preprocessed differently (torchvision: bilinear to 232 or 256; timm: bicubic, crop share per model).

Usage:
    model, pp, source = build_timm("timm:vit_tiny_patch16_224", pretrained=False, num_classes=1000)
"""
from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any, Callable, Tuple

from utils.core.errors import ArtTRTError, first_line
from utils.data.preprocess import INTERPOLATIONS, Preprocess

if TYPE_CHECKING:
    from torch import nn

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm() -> Any:
    try:
        import timm
    except ImportError as err:
        raise ArtTRTError("timm networks need the package timm (pip install timm)") from err
    return timm


def timm_name(name: str) -> str:
    """The timm model name of `timm:NAME`, checked against timm's list (with the closest names where it is not)."""
    timm = _timm()
    bare = name[len(PREFIX):]
    if not bare or not timm.is_model(bare):
        near = difflib.get_close_matches(bare, timm.list_models(), n=3, cutoff=0.6)
        raise ArtTRTError(f"timm has no model {bare!r}" + (f": did you mean {', '.join(PREFIX + n for n in near)}?"
                                                          if near else " (timm.list_models() names them)"))
    return str(bare)


def timm_preprocess(model: "nn.Module") -> Preprocess:
    """timm's eval transform for this model in ArtTRT's terms: the shorter side to floor(size / crop_pct) with the
    model's interpolation, a centre crop of `size`, its mean and std (timm.data.transforms_factory's eval path)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    _, h, w = cfg["input_size"]
    if h != w:
        raise ArtTRTError(f"this timm model takes {h}x{w} images: ArtTRT feeds square crops only")
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bicubic"  # timm's "random" (training) and others: timm's own eval default
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    return Preprocess(resize=int(math.floor(h / crop_pct)), crop=int(h), mean=tuple(cfg["mean"]),
                      std=tuple(cfg["std"]), interpolation=interpolation)


def build_timm(name: str, pretrained: bool, num_classes: int) -> Tuple["nn.Module", Preprocess, str]:
    """(model in eval mode, its preprocessing, the weights' source) of `timm:NAME`; --pretrained through timm's
    own hub download, one sentence where it fails (offline, or no published weights)."""
    timm = _timm()
    bare = timm_name(name)
    if pretrained:
        try:
            model = timm.create_model(bare, pretrained=True)
        except Exception as err:  # huggingface_hub and urllib raise many types for a failed download
            raise ArtTRTError(f"timm could not fetch the pretrained weights of {name} ({type(err).__name__}: "
                              f"{first_line(err)}): check the network, or pass --weights FILE") from err
        source = f"pretrained:{PREFIX}{model.pretrained_cfg.get('hf_hub_id') or bare}"
    else:
        model = timm.create_model(bare, pretrained=False, num_classes=num_classes)
        source = "random"
    return model.eval(), timm_preprocess(model), source


def timm_builder(name: str) -> Callable[[int], "nn.Module"]:
    """k -> the model with k classes and random weights (a user's --weights are loaded into it)."""
    timm, bare = _timm(), timm_name(name)
    return lambda k: timm.create_model(bare, pretrained=False, num_classes=k)
