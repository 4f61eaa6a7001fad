"""Energy per image from NVML's energy counter: the figures by hand, the window they cover (the timed batches only:
no warm-up, no short batch), the cases where there is no figure (a short window, a counter that did not move, no
counter: one line), the GPU found by UUID, and the records and the report that carry them. NVML is a fake here:
the real counter is read on the H200 (benchmarks/h200_session.sh)."""
from __future__ import annotations

import logging
import sys
import time
import types

import pytest
import torch

import utils.measure.energy as energy
import utils.measure.measurement as measurement
import utils.measure.timing as timing
from tests.measure.test_timing import CLASSES, Clock, ClockRunner, Phase, labelled_dataset
from tests.report import as_read
from tests.report.test_tables import cells
from utils.measure.energy import EnergyMeter, energy_fields
from utils.measure.measurement import MeasureOptions
from utils.measure.timing import measure
from utils.report.schema import RecordError, check_record
from utils.report.sections.energy_tables import energy_markdown

energy_markdown = as_read(energy_markdown)

RECORD = {"kind": "validate", "record_version": 2, "network": "resnet50", "backend": "torch", "precision": "fp32",
          "batch_size": 256, "time": "2026-12-03T08:00:00+00:00"}  # what a validation record always names


def test_the_figures_by_hand():
    # 10 J over 2 s (5 W) for 1000 images at 500 images/s: 10 mJ per image, 100 images/s per watt
    f = energy_fields(10_000, 2.0, 1000, 500.0)
    assert f["energy_j"] == 10.0 and f["power_mean_w"] == 5.0 and f["energy_scope"] == "whole GPU"
    assert f["joules_per_image"] == pytest.approx(0.01) and f["images_per_s_per_watt"] == pytest.approx(100.0)
    assert f["energy_window_s"] == 2.0 and "energy_note" not in f
    # over the same window, images/s per watt is images per joule: the two figures are reciprocal
    assert f["images_per_s_per_watt"] == pytest.approx(1 / f["joules_per_image"])


SHORT = "is shorter than 1 s, the least the counter's steps allow"


@pytest.mark.parametrize("delta_mj, window_s, images, why", [
    (10_000, 0.5, 100, "the timed window (0.5 s) " + SHORT),       # the counter's step is too large a share
    (10_000, 0.999, 100, "the timed window (0.999 s) " + SHORT),
    (0, 2.0, 100, "the energy counter did not increase over the window (0 mJ)"),  # stuck: never 0 J, never inf
    (-5_000, 2.0, 100, "the energy counter did not increase over the window (-5000 mJ)"),  # a reset between reads
    (float("nan"), 2.0, 100, "the energy counter did not increase over the window (nan mJ)"),
    (10_000, float("nan"), 100, "the timed window (nan s) " + SHORT),
    (10_000, 2.0, 0, "no image was timed"),
])
def test_no_figure_and_the_reason_where_the_counter_cannot_give_one(delta_mj, window_s, images, why):
    f = energy_fields(delta_mj, window_s, images, 100.0)
    assert f["energy_note"] == why
    assert not {"energy_j", "joules_per_image", "power_mean_w", "images_per_s_per_watt"} & set(f)
    check_record({**RECORD, **f})  # what is written fits the record


def test_the_edges_that_still_give_a_figure_and_the_rounding():
    assert energy_fields(300_000, 1.0, 100, 100.0)["joules_per_image"] == pytest.approx(3.0)  # exactly one second
    one = energy_fields(1, 2.0, 1, None)  # the counter's least step, one image, no images/s
    assert one["energy_j"] == 0.001 and one["joules_per_image"] == 0.001 and one["images_per_s_per_watt"] is None
    f = energy_fields(1234.56789, 2.123456789, 3, 1.0)
    assert f["energy_j"] == 1.2346 and f["energy_window_s"] == 2.1235 and f["power_mean_w"] == 0.58


def run_with_power(monkeypatch, watts, n, bs, warmup, sync, bounded=False):
    """The timing loop on a virtual clock (100 ms per image) with a counter that rises `watts` per virtual second:
    only the timed window's energy may count."""
    clock, phase = Clock(), Phase()
    for module in (timing, measurement):  # the loop and its host timer read one virtual clock
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))
    meter = EnergyMeter(lambda: int(round(clock.t * watts * 1000)), clock=clock)
    opts = MeasureOptions(batch_size=bs, sync=sync, min_warmup_s=0.0, warmup_fraction=warmup, progress=False,
                          **({"duration_s": 3.0} if bounded else {}))
    res = measure(ClockRunner(clock, 100.0, False, phase), labelled_dataset(n), opts, num_outputs=CLASSES,
                  telemetry=phase, energy=meter)
    return res.summary()


@pytest.mark.parametrize("sync", [True, False])
def test_the_window_is_the_timed_batches_only(monkeypatch, sync):
    s = run_with_power(monkeypatch, 250.0, 46, 4, 0.2, sync)  # 11 full batches (2 warm-up), a short batch of 2
    assert s["timed_images"] == 36 and s["warmup_batches"] == 2 and s["short_batch"]["images"] == 2
    # 250 W x 0.1 s per image: 25 J per image; the warm-up's 8 images and the short batch's 2 (1 s at 250 W) would
    # add 250 J if the window held them
    assert s["energy_j"] == pytest.approx(36 * 25.0) and s["joules_per_image"] == pytest.approx(25.0)
    assert s["energy_window_s"] == pytest.approx(3.6) and s["power_mean_w"] == pytest.approx(250.0)
    assert s["images_per_s"] == pytest.approx(10.0) and s["images_per_s_per_watt"] == pytest.approx(10.0 / 250.0)


def test_bounded_timing_measures_its_replayed_window(monkeypatch):
    s = run_with_power(monkeypatch, 100.0, 8, 4, 0.0, False, bounded=True)  # 0.4 s a batch, replayed until 3 s
    assert s["timing"] == "bounded" and s["timed_images"] == 32  # 8 batches: the first at or past 3 s
    assert s["energy_window_s"] == pytest.approx(3.2) and s["joules_per_image"] == pytest.approx(10.0)


def test_a_short_window_records_why_there_is_no_figure(monkeypatch):
    s = run_with_power(monkeypatch, 250.0, 8, 4, 0.0, False)  # 0.8 s timed
    assert "shorter than 1 s" in s["energy_note"] and "joules_per_image" not in s
    check_record({**RECORD, **{k: v for k, v in s.items() if k.startswith(("energy", "power", "joules"))}})


def test_no_meter_no_energy_fields(monkeypatch):
    clock, phase = Clock(), Phase()
    for module in (timing, measurement):  # the loop and its host timer read one virtual clock
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock))
    s = measure(ClockRunner(clock, 100.0, False, phase), labelled_dataset(20), MeasureOptions(
        batch_size=4, min_warmup_s=0.0, progress=False), num_outputs=CLASSES, telemetry=phase).summary()
    assert not [k for k in s if k.startswith(("energy", "joules", "power"))]  # the CPU: no counter, no fields


class FakeNVML(types.ModuleType):
    """pynvml's few calls the meter makes: GPUs by UUID, each with a counter, or a counter that is not supported."""

    class NVMLError(Exception):
        pass

    def __init__(self, counters, unsupported=()):
        super().__init__("pynvml")
        self.counters, self.unsupported, self.asked = counters, set(unsupported), []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked.append(uuid)
        if uuid not in self.counters:
            raise self.NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle in self.unsupported:
            raise self.NVMLError("Not Supported")
        return self.counters[handle]


@pytest.fixture
def two_gpus(monkeypatch):
    """Two CUDA devices whose UUIDs NVML knows; NVML's index 0 is not the second one."""
    uuids = {0: "aaaaaaaa-0000-0000-0000-000000000000", 1: "bbbbbbbb-1111-1111-1111-111111111111"}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=uuids[i]))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(energy, "_said", set())
    return uuids


def test_the_counter_of_the_gpu_that_ran_the_batches(monkeypatch, two_gpus):
    nvml = FakeNVML({f"GPU-{two_gpus[0]}": 5_000, f"GPU-{two_gpus[1]}": 900_000})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert EnergyMeter.for_device(torch.device("cpu")) is None
    assert EnergyMeter.for_device(torch.device("cuda:1")).read()[0] == 900_000
    assert EnergyMeter.for_device(torch.device("cuda")).read()[0] == 5_000  # cuda: the current device
    assert nvml.asked == [f"GPU-{two_gpus[1]}", f"GPU-{two_gpus[0]}"]


@pytest.mark.parametrize("uuid", ["GPU-cccccccc-2222", "MIG-dddddddd-3333"])
def test_a_uuid_that_already_names_its_kind_is_asked_as_it_is(monkeypatch, uuid):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=uuid))
    nvml = FakeNVML({uuid: 7})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert EnergyMeter.for_device(torch.device("cuda:0")).read()[0] == 7 and nvml.asked == [uuid]


def test_a_gpu_without_the_counter_says_so_once(monkeypatch, two_gpus, caplog):
    nvml = FakeNVML({f"GPU-{two_gpus[0]}": 0}, unsupported=[f"GPU-{two_gpus[0]}"])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with caplog.at_level(logging.WARNING):
        assert EnergyMeter.for_device(torch.device("cuda:0")) is None
        assert EnergyMeter.for_device(torch.device("cuda:0")) is None
    lines = [r.getMessage() for r in caplog.records if "energy" in r.getMessage()]
    assert lines == ["no energy figures on cuda:0: NVML's energy counter cannot be read there (Not Supported)"]
    nvml.NVMLError = type("NVMLError_NoPermission", (Exception,), {})  # an error with no message: named by its type
    nvml.nvmlInit = lambda: (_ for _ in ()).throw(nvml.NVMLError())
    with caplog.at_level(logging.WARNING):
        assert EnergyMeter.for_device(torch.device("cuda:1")) is None
    assert caplog.records[-1].getMessage().endswith("cannot be read there (NVMLError_NoPermission)")


def test_records_refuse_energy_that_is_not_a_number():
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(RecordError, match="joules_per_image"):
            check_record({**RECORD, "joules_per_image": bad})


def test_the_energy_table():
    rows = [
        {"kind": "validate", "network": "resnet50", "backend": "torch", "precision": "fp16", "batch_size": 256,
         "mode": "pipelined", "images_per_s": 9000.0, **energy_fields(1_200_000, 2.0, 18000, 9000.0)},
        {"kind": "validate", "network": "resnet50", "backend": "torch", "precision": "fp32", "batch_size": 1,
         "mode": "pipelined", "images_per_s": 800.0, **energy_fields(1000, 0.5, 400, 800.0)},
        {"kind": "validate", "network": "resnet50", "backend": "onnxrt", "precision": "fp32", "batch_size": 1,
         "mode": "pipelined", "images_per_s": 50.0},  # a CPU row: not in the table
    ]
    text = str(energy_markdown(rows))
    table = cells(text)
    assert table[0][:3] == ["runner", "batch", "mode"] and len(table) == 3  # one network: no network column
    assert table[1][:8] == ["Vanilla", "1", "pipelined", "800.0", "-", "-", "-", "0.50"]  # the registry's order
    assert table[1][8].startswith("the timed window (0.5 s) is shorter than 1 s")
    # 1200 J over 2 s: 600 W; 1200 J / 18000 images = 0.06667 J; 9000 images/s / 600 W = 15
    assert table[2] == ["Vanilla fp16", "256", "pipelined", "9000.0", "600.0", "0.06667", "15.00", "2.00", ""]
    assert str(energy_markdown(rows[2:])) == ""


def test_the_report_shows_the_energy_table_of_gpu_rows_only(tmp_path):
    from utils.report.report import make_report

    gpu = {**RECORD, "images_per_s": 9000.0, "mode": "pipelined", "env": {"gpu": "H200"},
           **energy_fields(1_200_000, 2.0, 18000, 9000.0)}
    wrote = make_report(tmp_path, records=[gpu, {**RECORD, "backend": "onnxrt", "images_per_s": 10.0, "env": {"cpu": "x"}}])
    assert str(tmp_path / "table_outputs" / "energy.md") in wrote
    assert "| 0.06667 " in (tmp_path / "table_outputs" / "energy.md").read_text()
    assert "Energy per image" in (tmp_path / "report.html").read_text()
    cpu_only = tmp_path / "cpu"
    cpu_only.mkdir()
    make_report(cpu_only, records=[{**RECORD, "images_per_s": 10.0, "env": {"cpu": "x"}}])
    assert not (cpu_only / "table_outputs" / "energy.md").exists()
    assert "Energy per image" not in (cpu_only / "report.html").read_text()


def test_the_worth_it_table_shows_joules_per_image_where_a_gpu_gave_them():
    from utils.report.sections.worth_it_tables import worth_it_markdown
    worth_it_markdown = as_read(worth_it_markdown)

    def rec(backend, bs, ips, **extra):
        return {**RECORD, "backend": backend, "precision": "fp32", "batch_size": bs, "images_per_s": ips,
                "mode": "pipelined", "top1": 70.0, "latency_model_p50": 1.0, "device": "cuda", **extra}

    gpu = [rec("torch", 1, 100.0), rec("torch", 256, 9000.0, **energy_fields(1_200_000, 2.0, 18000, 9000.0)),
           rec("compile", 256, 12000.0, **energy_fields(1_000, 0.5, 100, 12000.0))]  # a short window: no figure
    rows = cells(str(worth_it_markdown(gpu)))
    assert rows[0][-1] == "J / image @ largest batch"
    assert [row[-1] for row in rows[1:]] == ["0.06667", "-"]  # Vanilla's at batch 256; compile's window too short
    plain = str(worth_it_markdown([{k: v for k, v in r.items() if not k.startswith(("energy", "joules", "power",
                                                                                     "images_per_s_per"))}
                                   for r in gpu]))
    assert "J / image" not in plain  # no GPU counter (the CPU): the table as before


def test_a_jetson_reads_its_power_rails_where_nvml_has_no_counter(monkeypatch, tmp_path):
    """An integrated GPU (torch: is_integrated) whose NVML counter is not supported: the INA3221 rails under /sys,
    integrated over the window, with the record saying which source gave the figure."""
    from tests.measure.test_jetson import _ina3221
    from utils.measure import jetson

    uuid = "eeeeeeee-4444-4444-4444-444444444444"
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: asked.append(i) or types.SimpleNamespace(uuid=uuid, is_integrated=True))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(energy, "_said", set())
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML({f"GPU-{uuid}": 0}, unsupported=[f"GPU-{uuid}"]))
    _ina3221(tmp_path, "1-0040", [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 200), ("VDD_SOC", 5000, 300)])
    monkeypatch.setattr(energy, "jetson_meter",
                        lambda: jetson.jetson_meter(str(tmp_path / "bus/i2c/drivers/ina3221/*/hwmon/hwmon*")))
    meter = EnergyMeter.for_device(torch.device("cuda:0"))
    try:
        assert meter is not None and meter.scope == "Jetson INA3221 rails (VDD_IN)"
        assert asked == [0]  # the device described once
        mj0, t0 = meter.read()
        time.sleep(0.3)
        mj1, t1 = meter.read()
    finally:
        meter.close()
    assert abs((mj1 - mj0) - 5000 * (t1 - t0)) < 50  # 5,000 mV x 1,000 mA = 5 W on the input rail
    fields = energy_fields(mj1 - mj0, 1.0, 10, 10.0, meter.scope)
    assert fields["energy_scope"] == "Jetson INA3221 rails (VDD_IN)"
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(uuid=uuid, is_integrated=False))  # a discrete GPU: no rails
    assert EnergyMeter.for_device(torch.device("cuda:0")) is None
