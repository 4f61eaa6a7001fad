"""The one timing loop: the warm-up rule, accuracy over every image, latency over the timed batches."""
from __future__ import annotations

import pytest

from utils.backends.torch_eager import TorchRunner
from utils.data.cache import SyntheticDataset
from utils.measure.timing import MeasureOptions, measure
from utils.models.networks import load_network


def test_warmup_is_ten_percent_and_accuracy_counts_every_image():
    net = load_network("resnet18")
    ds = SyntheticDataset(40, 64, seed=0)
    with TorchRunner(net, "cpu") as r:
        res = measure(r, ds, MeasureOptions(batch_size=2, min_warmup_s=0.0, progress=False))
    s = res.summary()
    assert s["warmup_batches"] == 2 and s["latency_all_batches"] == 18 and s["images"] == 40
    assert s["timed_images"] == 36 and s["mode"] == "sync"
    assert s["images_per_s"] == pytest.approx(36 / (sum(res.latency_all_ms) / 1e3))
    assert all(a >= m for a, m in zip(res.latency_all_ms, res.latency_model_ms))
