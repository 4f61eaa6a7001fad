"""The validation transform (shorter side to `resize`, bilinear or bicubic with antialiasing, centre crop) for a
whole batch of differently sized images at once, as two batched matrix products.

PIL's and torchvision's antialiased bilinear resize is separable: each output row is a weighted sum of
input rows with a triangle filter stretched by the scale factor, and the same for columns. A centre crop
of the resized image only keeps some of those output rows and columns. So for image n:

    crop_n = round(Wy_n @ round(X_n @ Wx_n^T))

with Wy_n (crop x H_n) and Wx_n (crop x W_n) the filter weights of the kept rows and columns. Padding
every image of a batch to the largest H and W (zero weights there) turns the whole batch into two
`torch.matmul` calls, whatever the mix of sizes: on a GPU that replaces one resize kernel per distinct
size (the cost of `transform_grouped` on ImageNet's many sizes) with two matrix products.

The weights follow PIL's `precompute_coeffs` (Resample.c), horizontal pass first with the intermediate
rounded to 8 bits as PIL does; the sizes follow torchvision's `resize` and `center_crop`. Tests compare
it with `utils.data.preprocess.transform_uint8` on the CPU.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Tuple

from utils.data.preprocess import Preprocess

if TYPE_CHECKING:
    import torch
else:
    from utils.core.deps import torch


def resize_plan(h: int, w: int, pp: Preprocess) -> Tuple[int, int, int, int]:
    """(resized height, resized width, crop top, crop left), as torchvision's resize + center_crop."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = pp.resize, int(pp.resize * long / short)
    new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
    # center_crop: int(round(...)) (Python's round); a crop larger than the image is not supported here
    return new_h, new_w, int(round((new_h - pp.crop) / 2.0)), int(round((new_w - pp.crop) / 2.0))


def _cubic(d: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """PIL's bicubic filter (Keys, a = -0.5; Resample.c's bicubic_filter), support 2."""
    d = d.abs()
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    far = (((d - 5.0) * d + 8.0) * d - 4.0) * a
    return torch.where(d < 1.0, near, torch.where(d < 2.0, far, torch.zeros_like(d)))


def aa_weights(in_size: torch.Tensor, full_size: torch.Tensor, offset: torch.Tensor, out: int,
               max_in: int, interpolation: str = "bilinear") -> torch.Tensor:
    """(N, out, max_in) float32 weights of output samples offset..offset+out of a resize in_size -> full_size.

    Triangle filter of support 1 (PIL's bilinear), or Keys' cubic of support 2 (PIL's bicubic), stretched by the
    downscale factor (antialiasing), normalised per output sample; zero beyond each image's own in_size.
    """
    dev = in_size.device
    in_f, full_f = in_size.double(), full_size.double()
    scale = in_f / full_f                                    # (N,)
    fscale = scale.clamp(min=1.0)
    o = torch.arange(out, device=dev, dtype=torch.float64)[None, :] + offset.double()[:, None]
    center = (o + 0.5) * scale[:, None]                      # (N, out)
    x = torch.arange(max_in, device=dev, dtype=torch.float64)
    d = (x[None, None, :] + 0.5 - center[:, :, None]) / fscale[:, None, None]
    kernel = _cubic(d) if interpolation == "bicubic" else (1.0 - d.abs()).clamp(min=0.0)
    w = kernel * (x[None, None, :] < in_f[:, None, None])
    return (w / w.sum(-1, keepdim=True)).float()


def transform_padded(images: List[torch.Tensor], pp: Preprocess, hwc: bool = False) -> torch.Tensor:
    """transform_uint8 over a list of uint8 images (CHW, or HWC with hwc=True) of any sizes, on their
    device, in two batched matrix products; returns uint8 (N, 3, crop, crop)."""
    if not images:
        return torch.empty(0, 3, pp.crop, pp.crop, dtype=torch.uint8)
    dev = images[0].device
    sizes = [(int(im.shape[0]), int(im.shape[1])) if hwc else (int(im.shape[1]), int(im.shape[2]))
             for im in images]
    plans = [resize_plan(h, w, pp) for h, w in sizes]
    hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
    n = len(images)
    padded = torch.zeros((n, hmax, wmax, 3) if hwc else (n, 3, hmax, wmax), dtype=torch.uint8, device=dev)
    for k, (im, (h, w)) in enumerate(zip(images, sizes)):
        if hwc:
            padded[k, :h, :w] = im
        else:
            padded[k, :, :h, :w] = im
    meta = torch.tensor([[h, w, p[0], p[1], p[2], p[3]] for (h, w), p in zip(sizes, plans)], dtype=torch.int64)
    meta = meta.to(dev, non_blocking=True)
    wy = aa_weights(meta[:, 0], meta[:, 2], meta[:, 4], pp.crop, hmax, pp.interpolation)  # (N, crop, H)
    wx = aa_weights(meta[:, 1], meta[:, 3], meta[:, 5], pp.crop, wmax, pp.interpolation)  # (N, crop, W)
    x = (padded.permute(0, 3, 1, 2) if hwc else padded).float()                          # (N, 3, H, W)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32's 10-bit mantissa would move pixels
    try:
        t = torch.matmul(x, wx.transpose(1, 2)[:, None])                                 # (N, 3, H, crop)
        t = t.add_(0.5).floor_().clamp_(0, 255)  # PIL keeps the horizontal pass in 8 bits
        y = torch.matmul(wy[:, None], t)                                                 # (N, 3, crop, crop)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return y.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)
