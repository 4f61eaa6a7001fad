"""The timing loop's GPU paths (CUDA events, the copy and verify streams, the page-locked feed, the on-device
checksum, the energy counter), which the CPU suite cannot reach. Skipped without a CUDA GPU; run on the borrowed
H200 (benchmarks/h200_session.sh), where tools/mutation.py's "timing on a GPU" runs them against every mutant of
the loop's steps. The model spins the GPU for a known time (torch.cuda._sleep), so the latencies have a value to
be checked against: the host's own clock around the same spin."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tests.measure.test_timing import CLASSES, labelled_dataset
from utils.backends.base import Runner
from utils.core.errors import ArtTRTError
from utils.data.checksum import checksums_numpy
from utils.data.preprocess import Preprocess
from utils.measure.energy import EnergyMeter
from utils.measure.measurement import MeasureOptions
from utils.measure.timing import measure

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the H200)")


class SpinRunner(Runner):
    """On the GPU: spins `cycles` GPU clock cycles per batch, then names each image's class (its first pixel)."""

    backend = "spin"

    def __init__(self, cycles: int = 0, fixed: bool = False, device: str = "cuda:0"):
        super().__init__(Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
        self.device, self.cycles, self.fixed, self.shapes = torch.device(device), cycles, fixed, []

    @property
    def fixed_shape(self) -> bool:
        return self.fixed

    def infer(self, x):
        self.shapes.append(tuple(x.shape))
        if self.cycles:
            torch.cuda._sleep(self.cycles)
        label = (x[:, 0, 0, 0] * 255).round().long()
        return torch.nn.functional.one_hot(label, CLASSES).float() + 0.01 * torch.arange(CLASSES, device=x.device)


def spin_ms(cycles: int, repeats: int = 5) -> float:
    """The host's clock around one spin of `cycles`, synchronised (the best of `repeats`)."""
    best = float("inf")
    for _ in range(repeats + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.cuda._sleep(cycles)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def checked(n: int):
    ds = labelled_dataset(n)
    ds.meta["checksums"] = checksums_numpy(ds.images).tolist()
    return ds


@pytest.mark.parametrize("sync", [True, False])
@pytest.mark.parametrize("fixed", [True, False])
def test_accuracy_feed_and_checksums_on_the_gpu(sync, fixed):
    runner = SpinRunner(fixed=fixed)
    res = measure(runner, checked(46), MeasureOptions(batch_size=8, sync=sync, min_warmup_s=0.0, progress=False),
                  num_outputs=CLASSES)
    s = res.summary()
    assert s["images"] == 46 and s["top1"] == 100.0 and s["top5"] == 100.0 and s["timed_images"] == 40
    assert res.predictions.tolist() == (np.arange(46) % CLASSES).tolist()  # the short batch's too
    assert s["feed"] in ("page-locked cache (cuMemHostRegister)", "pinned copy per batch")
    assert s["verified_images"] == 46 and s["mode"] == ("sync" if sync else "pipelined")
    assert s["latency_model_batches"] == 5 and all(m > 0 for m in res.latency_model_ms)
    assert all(a >= m for a, m in zip(res.latency_all_ms, res.latency_model_ms))  # the model is inside latency-all
    assert runner.shapes[-1][0] == (8 if fixed else 6)  # the short batch: padded for a fixed-shape runner


@pytest.mark.parametrize("sync", [True, False])
def test_latency_model_is_the_gpu_time_of_the_model(sync):
    cycles = 20_000_000
    host_ms = spin_ms(cycles)  # about 10 ms at the H200's clock
    runner = SpinRunner(cycles=cycles)
    res = measure(runner, checked(24), MeasureOptions(batch_size=4, sync=sync, min_warmup_s=0.0, warmup_fraction=0.2,
                                                      progress=False),
                  num_outputs=CLASSES)
    s = res.summary()
    # the results are read once the batch's copy-out is done: a 10 ms model still gives every image its class
    assert s["top1"] == 100.0 and res.predictions.tolist() == (np.arange(24) % CLASSES).tolist()
    assert s["latency_model_mean"] == pytest.approx(host_ms, rel=0.2), (s["latency_model_mean"], host_ms)
    assert s["latency_all_mean"] == pytest.approx(host_ms, rel=0.3)  # tiny copies beside a 10 ms model
    # 24 images in 6 batches of 4, one warm-up batch not timed: 5 batches of the spin, back to back or waited for
    assert s["timed_images"] == 20 and s["images_per_s"] == pytest.approx(4 / (host_ms / 1e3), rel=0.25)


def test_a_damaged_image_is_found_by_the_gpu_check():
    ds = checked(40)
    ds.images[13, 2, 1, 1] ^= 4
    told = []
    ds.invalidate = told.append  # type: ignore[method-assign]
    with pytest.raises(ArtTRTError, match=r"^1 of 40 images read from the dataset cache differ"):
        measure(SpinRunner(), ds, MeasureOptions(batch_size=8, min_warmup_s=0.0, progress=False), num_outputs=CLASSES)
    assert told == ["changed under this run (1 of 40 images differ from what was written)"]
    ok = measure(SpinRunner(), ds, MeasureOptions(batch_size=8, min_warmup_s=0.0, progress=False, verify=False),
                 num_outputs=CLASSES)
    assert ok.summary()["verified_images"] is None  # --no_verify: nothing checked, nothing refused


def test_bounded_timing_and_energy_on_the_gpu():
    """Replayed batches for at least 1.5 s: the GPU's real energy counter gives a figure, within what a GPU draws."""
    meter = EnergyMeter.for_device(torch.device("cuda:0"))
    runner = SpinRunner(cycles=4_000_000)
    res = measure(runner, checked(32), MeasureOptions(batch_size=8, min_warmup_s=0.0, progress=False,
                                                        duration_s=1.5), num_outputs=CLASSES, energy=meter)
    s = res.summary()
    assert s["timing"] == "bounded" and s["timed_images"] % 8 == 0 and s["verified_images"] == 32
    assert s["latency_model_batches"] * 8 == s["timed_images"] and res.wall_s >= 1.5
    if meter is None:
        pytest.skip("this GPU has no energy counter (said in one line)")
    assert s["energy_window_s"] >= 1.5 and 20.0 < s["power_mean_w"] < 1500.0, s
    assert s["joules_per_image"] == pytest.approx(s["energy_j"] / s["timed_images"])
