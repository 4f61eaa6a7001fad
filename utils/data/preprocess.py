"""The validation preprocessing, defined once: the network's numbers (`Preprocess`), the uint8 transform
applied when a dataset is decoded (`transform_uint8`; its batched GPU form is `utils.data.resample`), and
the normalisation that every runner applies on its own device (`Normalizer`, the copy-in step).

Usage:
    pp = Preprocess(resize=256, crop=224)
    crop_u8 = transform_uint8(decode_pil(data), pp)
    x = Normalizer(pp, torch.device("cuda"), torch.float16)(batch_u8)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize` (bilinear or bicubic, antialiased as PIL), centre-crop `crop`, scale to
    [0,1], then (x-mean)/std."""

    resize: int = 256
    crop: int = 224
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # or "bicubic" (timm's ViTs, ConvNeXts, EfficientNets...)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r}: one of {', '.join(INTERPOLATIONS)}")

    def as_dict(self) -> Dict[str, Any]:
        """The numbers (keys of caches and exports): bilinear, the default, left out, so keys made before
        interpolation was a setting stand."""
        out = dataclasses.asdict(self)
        if self.interpolation == "bilinear":
            out.pop("interpolation")
        return out


INTERPOLATIONS = ("bilinear", "bicubic")


def transform_uint8(img: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """Resize the shorter side to pp.resize (pp.interpolation, antialiased) and centre-crop pp.crop; uint8 CHW in and
    out."""
    from torchvision.transforms.v2 import functional as F

    mode = F.InterpolationMode.BICUBIC if pp.interpolation == "bicubic" else F.InterpolationMode.BILINEAR
    img = F.resize(img, [pp.resize], interpolation=mode, antialias=True)
    return F.center_crop(img, [pp.crop, pp.crop])



class Normalizer:
    """uint8 NCHW -> (x/255 - mean)/std on `device`, in `dtype`; the copy-in of every runner."""

    def __init__(self, pp: Preprocess, device: torch.device, dtype: Optional[torch.dtype] = None):
        dtype = dtype or torch.float32
        mean = torch.tensor(pp.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(pp.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(device)
        self.bias = (-mean / std).to(device)
        self.device, self.dtype = device, dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        y = torch.addcmul(self.bias, x.float(), self.scale)
        return y if self.dtype == torch.float32 else y.to(self.dtype)
