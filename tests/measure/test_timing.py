"""The one timing loop: images/s over exactly the timed batches in both modes, the short last batch never
distorting a figure (padded for fixed-shape runners, outside the timed region, always counted for accuracy),
the warm-up rule, and accuracy over every image. A runner on a virtual clock makes the figures exact."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torchvision.models  # noqa: F401  (imported at collection: forked mutation runs do not import it again)

import utils.measure.measurement as measurement
import utils.measure.timing as timing
from utils.backends.base import Runner
from utils.backends.torch_eager import TorchRunner
from utils.core.errors import ArtTRTError
from utils.data.cache import CachedDataset, SyntheticDataset
from utils.data.preprocess import Preprocess
from utils.measure.measurement import MeasureOptions
from utils.measure.timing import measure
from utils.models.networks import load_network

CLASSES = 10


class Clock:
    """A virtual perf_counter that only runners move."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Phase:
    """Stands in for telemetry: measure() tags it with the phase it is in."""

    phase = "idle"


class ClockRunner(Runner):
    """Takes exactly `ms_per_image` of virtual time per image it is given (padding included); its logits name
    each image's class, written in the image's first pixel, so accuracy shows which outputs were kept."""

    backend = "clock"

    def __init__(self, clock: Clock, ms_per_image: float, fixed: bool, phase: Phase):
        super().__init__(Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
        self.clock, self.ms, self.fixed, self.phase = clock, ms_per_image, fixed, phase
        self.seen = []  # (batch shape, phase) of every call

    @property
    def fixed_shape(self) -> bool:
        return self.fixed

    def infer(self, x):
        self.seen.append((tuple(x.shape), self.phase.phase))
        self.clock.t += self.ms * x.shape[0] / 1e3
        label = (x[:, 0, 0, 0] * 255).round().long()
        return torch.nn.functional.one_hot(label, CLASSES).float() + 0.01 * torch.arange(CLASSES)


def labelled_dataset(n: int) -> CachedDataset:
    """n tiny images whose first pixel is their label (0..9, class 0 among them)."""
    labels = np.arange(n) % CLASSES
    images = np.zeros((n, 3, 4, 4), np.uint8)
    images[:, 0, 0, 0] = labels
    return CachedDataset(images, labels.astype(np.int64), [f"img{i}" for i in range(n)], {})


def run(monkeypatch, n, bs, sync, fixed, ms=1.0, warmup=0.0):
    clock, phase = Clock(), Phase()
    for module in (timing, measurement):  # the loop and its host timer read one virtual clock
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))
    runner = ClockRunner(clock, ms, fixed, phase)
    res = measure(runner, labelled_dataset(n), MeasureOptions(batch_size=bs, sync=sync, min_warmup_s=0.0,
                                                             warmup_fraction=warmup, progress=False),
                  num_outputs=CLASSES, telemetry=phase)
    return res.summary(), runner.seen


@pytest.mark.parametrize("sync", [True, False])
@pytest.mark.parametrize("fixed", [True, False])
def test_images_per_s_counts_exactly_the_timed_batches(monkeypatch, sync, fixed):
    """1 ms per image: 1000 images/s whether or not a short batch follows, in both modes (the short batch's
    images once counted without its time: 20 images over 16 ms = 1250)."""
    whole, _ = run(monkeypatch, 16, 8, sync, fixed)
    with_short, seen = run(monkeypatch, 20, 8, sync, fixed)
    for s in (whole, with_short):
        assert s["images_per_s"] == pytest.approx(1000.0) and s["timed_images"] == 16
        assert s["latency_model_batches"] == 2 and s["latency_model_mean"] == pytest.approx(8.0)
        assert s["latency_all_mean"] == pytest.approx(8.0) and s["mode"] == ("sync" if sync else "pipelined")
    assert whole["short_batch"] is None
    assert with_short["short_batch"]["images"] == 4
    # every image counts for accuracy, the short batch's too, and only real outputs are kept
    assert with_short["images"] == 20 and with_short["labelled_images"] == 20 and with_short["top1"] == 100.0
    timed_shapes = {shape for shape, phase in seen if phase == "measure"}
    short_shapes = [shape for shape, phase in seen if phase == "short batch"]
    assert timed_shapes == {(8, 3, 4, 4)}  # nothing reshaped inside the timed region
    assert short_shapes == [(8 if fixed else 4, 3, 4, 4)]  # fixed-shape runners get it padded, never reshaped
    assert ("padded" in with_short["short_batch"]["handling"]) == fixed


@pytest.mark.parametrize("fixed, expect", [(True, 5 / 8 * 1000), (False, 1000.0)])
def test_a_dataset_smaller_than_one_batch_is_timed_and_says_how(monkeypatch, fixed, expect):
    s, seen = run(monkeypatch, 5, 8, sync=False, fixed=fixed)
    assert s["timed_images"] == 5 and s["images"] == 5 and s["top1"] == 100.0
    assert s["images_per_s"] == pytest.approx(expect)  # padding costs time, only real images count
    assert "timed: the only batch" in s["short_batch"]["handling"]
    assert {shape for shape, phase in seen if phase == "measure"} == {(8 if fixed else 5, 3, 4, 4)}


def test_warmup_batches_count_for_accuracy_not_for_time(monkeypatch):
    s, seen = run(monkeypatch, 40, 4, sync=True, fixed=False, warmup=0.25)  # 10 batches, 2 warm-up
    assert s["warmup_batches"] == 2 and s["latency_all_batches"] == 8 and s["timed_images"] == 32
    assert s["images"] == 40 and s["top1"] == 100.0 and s["images_per_s"] == pytest.approx(1000.0)
    assert [phase for _, phase in seen].count("measure") == 8


@pytest.mark.parametrize("opts, message", [
    (dict(batch_size=0), "--batch_size must be at least 1, not 0"),
    (dict(warmup_fraction=1.0), r"--warmup is the fraction of batches used as warm-up, in \[0, 1\), not 1.0"),
    (dict(limit=0), "--limit must be at least 1, not 0"),
    (dict(min_warmup_s=-0.1), "--min_warmup_s must not be negative, not -0.1"),
    (dict(duration_s=-1), "--duration must not be negative, not -1.0"),
    (dict(iterations=0), "--iterations must be at least 1, not 0"),
])
def test_bad_options_are_one_sentence_where_they_are_made(opts, message):
    with pytest.raises(ArtTRTError, match=message):
        MeasureOptions(**opts)
    with pytest.raises(ArtTRTError, match="no images to measure"):  # the data, not an option: at measure time
        measure(ClockRunner(Clock(), 1.0, False, Phase()), labelled_dataset(0), MeasureOptions())


def test_a_real_network_on_the_cpu():
    net = load_network("resnet18")
    ds = SyntheticDataset(40, 64, seed=0)
    with TorchRunner(net, "cpu") as r:
        res = measure(r, ds, MeasureOptions(batch_size=2, min_warmup_s=0.0, sync=True, progress=False))
    s = res.summary()
    assert s["warmup_batches"] == 2 and s["latency_all_batches"] == 18 and s["images"] == 40
    assert s["timed_images"] == 36 and s["mode"] == "sync" and s["feed"] == "host"
    assert s["images_per_s"] == pytest.approx(36 / (sum(res.latency_all_ms) / 1e3))
    assert all(a >= m for a, m in zip(res.latency_all_ms, res.latency_model_ms))
    assert (res.predictions >= 0).all() and len(res.predictions) == 40


class RankRunner(ClockRunner):
    """Puts each image's true class (first pixel) at the rank written in its second pixel (1 = top), so top-1
    and top-5 differ and each can be checked by hand."""

    def infer(self, x):
        self.seen.append((tuple(x.shape), self.phase.phase))
        self.clock.t += self.ms * x.shape[0] / 1e3
        label = (x[:, 0, 0, 0] * 255).round().long()
        rank = (x[:, 0, 0, 1] * 255).round().long()
        out = torch.zeros(x.shape[0], CLASSES)
        for i in range(x.shape[0]):
            others = [c for c in range(CLASSES) if c != int(label[i])]
            order = others[:int(rank[i]) - 1] + [int(label[i])] + others[int(rank[i]) - 1:]
            out[i, order] = torch.arange(CLASSES, 0, -1, dtype=torch.float32)
        return out


def test_top1_top5_and_predictions_by_hand(monkeypatch):
    """Ten images, true class at ranks 1,1,1,2,2,5,6,10,1,3: top-1 4/10, top-5 8/10; class 0 among them."""
    ranks = [1, 1, 1, 2, 2, 5, 6, 10, 1, 3]
    ds = labelled_dataset(10)
    ds.images[:, 0, 0, 1] = ranks
    clock, phase = Clock(), Phase()
    for module in (timing, measurement):  # the loop and its host timer read one virtual clock
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))
    res = measure(RankRunner(clock, 1.0, False, phase), ds,
                  MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False), num_outputs=CLASSES, telemetry=phase)
    s = res.summary()
    assert s["top1"] == 40.0 and s["top5"] == 80.0 and s["labelled_images"] == 10 and s["images"] == 10
    labels = np.arange(10) % CLASSES
    expected = [int(lab) if r == 1 else [c for c in range(CLASSES) if c != lab][0] for lab, r in zip(labels, ranks)]
    assert res.predictions.dtype == np.int64 and res.predictions.tolist() == expected


def test_unlabelled_images_count_for_nothing_and_a_class_map_mismatch_is_refused(monkeypatch):
    ds = labelled_dataset(6)
    ds.labels[:] = 0  # every image of class 0: labelled (0 is a class, -1 is none)
    with pytest.raises(ArtTRTError, match=r"^the model has 10 outputs but the dataset's class map has 12$"):
        measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                MeasureOptions(batch_size=2, min_warmup_s=0.0, progress=False), num_outputs=12)
    ds.labels[:] = -1  # no labels (synthetic images): no accuracy, and the class count is not checked
    res = measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                  MeasureOptions(batch_size=2, min_warmup_s=0.0, progress=False), num_outputs=12)
    s = res.summary()
    assert s["top1"] is None and s["top5"] is None and s["labelled_images"] == 0 and s["images"] == 6


def test_one_image_and_the_summary_figures(monkeypatch):
    s, _ = run(monkeypatch, 1, 4, sync=False, fixed=False, ms=0.123456)
    assert s["images"] == 1 and s["timed_images"] == 1 and s["short_batch"]["handling"] == "timed: the only batch"
    assert s["warmup_s"] == 0.0001 and s["feed"] == "host" and s["verified_images"] is None
    fast, _ = run(monkeypatch, 16, 8, sync=True, fixed=False, ms=0.01)  # 0.08 ms per batch: under 1 ms in all
    assert fast["images_per_s"] == pytest.approx(100_000.0)
    still, _ = run(monkeypatch, 16, 8, sync=True, fixed=False, ms=0.0)  # a clock that did not move
    assert still["images_per_s"] is None
    still, _ = run(monkeypatch, 16, 8, sync=False, fixed=False, ms=0.0)
    assert still["images_per_s"] is None
    s, _ = run(monkeypatch, 20, 8, sync=False, fixed=True)
    assert s["short_batch"] == {"images": 4, "handling": "padded to the full batch, run after the timed batches, "
                                                         "for accuracy only"}
    s, _ = run(monkeypatch, 20, 8, sync=False, fixed=False)
    assert s["short_batch"]["handling"] == "run after the timed batches, for accuracy only"
    with pytest.raises(ArtTRTError, match=r"^no images to measure \(an empty dataset, or --limit below 1\)$"):
        measure(ClockRunner(Clock(), 1.0, False, Phase()), labelled_dataset(0), MeasureOptions())
    with pytest.raises(ArtTRTError, match=r"^--limit must be at least 1, not 0$"):  # refused where it is made
        MeasureOptions(limit=0)


def test_unstable_when_either_latency_varies():
    from utils.measure.measurement import MeasureResult

    steady, jumpy = [10.0] * 8, [10.0, 1.0] * 4
    assert MeasureResult(latency_all_ms=steady, latency_model_ms=jumpy).summary()["latency_unstable"] is True
    assert MeasureResult(latency_all_ms=jumpy, latency_model_ms=steady).summary()["latency_unstable"] is True
    assert MeasureResult(latency_all_ms=steady, latency_model_ms=steady).summary()["latency_unstable"] is False


def test_every_image_is_checked_against_the_cache_checksums(monkeypatch):
    from utils.data.checksum import checksums_numpy

    ds = labelled_dataset(10)
    ds.meta["checksums"] = checksums_numpy(ds.images).tolist()
    res = measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                  MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False), num_outputs=CLASSES)
    assert res.summary()["verified_images"] == 10
    off = measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                  MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False, verify=False), num_outputs=CLASSES)
    assert off.summary()["verified_images"] is None
    ds.images[7, 1, 2, 3] ^= 1
    ds.meta.pop("_checksums", None)
    monkeypatch.setattr(type(ds), "invalidate", lambda self, why: None, raising=False)
    with pytest.raises(ArtTRTError, match=r"^1 of 10 images read from the dataset cache differ"):
        measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False), num_outputs=CLASSES)


def test_pad_batch_repeats_the_last_image():
    from utils.measure.measurement import pad_batch

    x = torch.arange(2 * 3).float().view(2, 3, 1, 1)
    y = pad_batch(x, 3)
    assert y.shape == (3, 3, 1, 1) and torch.equal(y[2], x[1]) and torch.equal(y[:2], x)
    assert pad_batch(x, 2) is x and pad_batch(x, 1) is x


class SlowSyncRunner(ClockRunner):
    """Normalising costs 0.5 ms and each synchronise 2 ms of virtual time (a GPU catching up)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        inner = self.normalizer

        def normalise(x):
            self.clock.t += 0.5e-3
            return inner(x)

        self._normalizer = normalise  # what the normalizer property hands out

    def synchronize(self):
        self.clock.t += 2e-3


def test_what_each_latency_holds(monkeypatch):
    """latency-model is the model alone (8 ms for 8 images); latency-all adds normalising (0.5 ms) and picking the
    top classes (0.25 ms); in sync mode
    latency-all is the host's wall time of the batch, the synchronise after it included (2 ms)."""
    real_topk = torch.Tensor.topk

    for sync, expect_all in ((False, 8.75), (True, 10.75)):
        clock, phase = Clock(), Phase()
        for module in (timing, measurement):  # the loop and its host timer read one virtual clock
            monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))

        def slow_topk(self, *a, clock=clock, **kw):  # picking the top 5 costs 0.25 ms: part of latency-all only
            clock.t += 0.25e-3
            return real_topk(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, "topk", slow_topk)
        res = measure(SlowSyncRunner(clock, 1.0, False, phase), labelled_dataset(16),
                      MeasureOptions(batch_size=8, sync=sync, min_warmup_s=0.0, progress=False), telemetry=phase)
        assert res.latency_model_ms == pytest.approx([8.0, 8.0]) and res.latency_all_ms == pytest.approx(
            [expect_all] * 2), sync


def test_limit_warm_up_time_phases_and_the_progress_bar(monkeypatch):
    clock, phase = Clock(), Phase()
    for module in (timing, measurement):  # the loop and its host timer read one virtual clock
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))
    marks, bars = [], []

    class Marks:
        def enter(self, name):
            marks.append(name)

        def close(self):
            marks.append("close")

    class Bar:
        def __init__(self, **kw):
            bars.append(kw)
            self.updates = []

        def update(self, k):
            self.updates.append(k)

        def close(self):
            bars.append(sum(self.updates))

    monkeypatch.setattr(timing, "PhaseMarks", Marks)
    monkeypatch.setattr(timing, "progress_bar", lambda **kw: Bar(**kw))
    runner = ClockRunner(clock, 1.0, False, phase)
    res = measure(runner, labelled_dataset(40), MeasureOptions(batch_size=2, limit=7, min_warmup_s=0.005,
                                                                progress=True), num_outputs=CLASSES, telemetry=phase)
    s = res.summary()
    assert s["images"] == 7 and s["timed_images"] == 6 and len(res.predictions) == 7  # the first 7 only
    warm = [shape for shape, p in runner.seen if p == "warm-up"]
    assert len(warm) == 3 and s["warmup_s"] == 0.006  # 2 ms a run: until 5 ms have passed, then no more
    assert marks == ["warm-up", "measure", "short batch", "close", "close"] and phase.phase == "done"
    assert bars == [{"total": 4, "desc": runner.name, "enabled": True}, 4] and runner.name == "clock-fp32"


def test_many_batches_in_flight_and_a_model_that_returns_the_wrong_shape(monkeypatch):
    s, seen = run(monkeypatch, 64, 2, sync=False, fixed=False)  # 32 batches through a 3-deep pipeline
    assert s["timed_images"] == 64 and s["images_per_s"] == pytest.approx(1000.0) and s["top1"] == 100.0

    class Flat(ClockRunner):
        def infer(self, x):
            return torch.zeros(x.shape[0] * CLASSES)

    with pytest.raises(ArtTRTError, match=r"^the model returned shape \(20,\), not \(batch, classes\)$"):
        measure(Flat(Clock(), 1.0, False, Phase()), labelled_dataset(4), MeasureOptions(batch_size=2, progress=False))


def test_a_damaged_first_image_is_counted_once_and_the_cache_is_told(monkeypatch):
    from utils.data.checksum import checksums_numpy

    ds = labelled_dataset(10)
    ds.meta["checksums"] = checksums_numpy(ds.images).tolist()
    ds.images[0, 1, 2, 3] ^= 1  # in the batch the warm-up also runs: checked once, when it runs for real
    told = []
    monkeypatch.setattr(type(ds), "invalidate", lambda self, why: told.append(why), raising=False)
    with pytest.raises(ArtTRTError) as err:
        measure(ClockRunner(Clock(), 1.0, False, Phase()), ds,
                MeasureOptions(batch_size=4, min_warmup_s=0.0, progress=False), num_outputs=CLASSES)
    assert str(err.value) == ("1 of 10 images read from the dataset cache differ from what was written (the cache "
                              "file was damaged or changed): no figure of this run was kept; run again to rebuild "
                              "the cache")
    assert told == ["changed under this run (1 of 10 images differ from what was written)"]
