"""The normaliser and the batched GPU form of the transform, against the one-by-one CPU transform."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.data.decode import decode_pil
from utils.data.preprocess import Normalizer, Preprocess, transform_uint8
from utils.models.networks import LITE_PREPROCESS

PP = Preprocess(resize=64, crop=56)


def test_normalizer_matches_the_formula():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    y = Normalizer(LITE_PREPROCESS, torch.device("cpu"))(x)
    assert torch.allclose(y, x.float() / 127.5 - 1.0, atol=1e-6)
    assert float(y.min()) >= -1.0 - 1e-6 and float(y.max()) <= 1.0 + 1e-6


def test_imagenet_statistics_per_channel_in_rgb_order():
    """A torchvision network's mean/std differ per channel: R is (x/255 - 0.485)/0.229, B (x/255 - 0.406)/0.225.
    One value per channel catches statistics applied in BGR order (EfficientNet-Lite0's 0.5s cannot)."""
    from utils.models.networks import load_network

    pp = load_network("resnet18").preprocess
    assert pp.mean == pytest.approx((0.485, 0.456, 0.406)) and pp.std == pytest.approx((0.229, 0.224, 0.225))
    x = torch.zeros((1, 3, 2, 2), dtype=torch.uint8)
    x[0, 0], x[0, 1], x[0, 2] = 200, 100, 50
    y = Normalizer(pp, torch.device("cpu"))(x)
    for c, value in enumerate((200, 100, 50)):
        assert torch.allclose(y[0, c], torch.tensor((value / 255 - pp.mean[c]) / pp.std[c]), atol=1e-6)
    half = Normalizer(pp, torch.device("cpu"), torch.float16)(x)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), y, atol=1e-2)


def _photo_crops(foolbox_dir, n=24):
    """Real photos cut to many different sizes (the mix a batch of ImageNet files has)."""
    photos = [decode_pil(p.read_bytes()) for p in sorted(foolbox_dir.glob("imagenet_*.jpg"))[:4]]
    rng = np.random.default_rng(0)
    crops = []
    for k in range(n):
        src = photos[k % len(photos)]
        h, w = int(rng.integers(60, src.shape[1] + 1)), int(rng.integers(60, src.shape[2] + 1))
        crops.append(src[:, :h, :w].contiguous())
    return crops


@pytest.mark.parametrize("pp", [PP, Preprocess(), Preprocess(resize=232, crop=224),
                                Preprocess(resize=248, crop=224, interpolation="bicubic")])  # timm's ViTs
def test_batched_matrix_transform_matches_the_one_by_one_transform(foolbox_dir, pp):
    from utils.data.resample import transform_padded

    crops = _photo_crops(foolbox_dir)
    one_by_one = torch.stack([transform_uint8(im, pp) for im in crops]).int()
    batched = transform_padded(crops, pp)
    diff = (batched.int() - one_by_one).abs()
    # torch's uint8 resize keeps 16-bit weights, this one float32: off by one at most, and rarely (bicubic: torch's
    # own is up to 2 off PIL's on 10 of these 3.6 million values, this one at most 1 (measured): 2 against torch's)
    assert batched.shape == (len(crops), 3, pp.crop, pp.crop)
    assert int(diff.max()) <= (2 if pp.interpolation == "bicubic" else 1)
    assert float((diff > 0).float().mean()) < 0.005
    hwc = transform_padded([im.permute(1, 2, 0).contiguous() for im in crops], pp, hwc=True)
    assert torch.equal(hwc, batched)
