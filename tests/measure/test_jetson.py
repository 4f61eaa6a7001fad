"""The Jetson power readers (utils/measure/jetson.py) on the sysfs layout and tegrastats lines NVIDIA documents
(Jetson Linux Developer Guide, "Power Monitor" and "tegrastats Utility"), for Orin and Xavier. Nothing here ran
on a Jetson."""
from __future__ import annotations

import sys
import time

import pytest

from utils.measure import jetson

# tegrastats lines as the guide prints them: Orin Nano/NX (JetPack 6), AGX Orin (JetPack 6), AGX Xavier (JetPack 4)
ORIN_NANO = ("08-23-2024 11:22:01 RAM 2476/7620MB (lfb 3x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729,0%@729,"
             "1%@729,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] NVDEC off NVJPG off NVJPG1 off VIC off OFA off "
             "APE 200 cpu@46.5C soc2@45.2C soc0@45.5C gpu@46.1C tj@46.5C soc1@46.1C VDD_IN 4172mW/4172mW "
             "VDD_CPU_GPU_CV 480mW/480mW VDD_SOC 1361mW/1361mW")
AGX_ORIN = ("RAM 3538/30593MB (lfb 6x4MB) SWAP 0/15296MB (cached 0MB) CPU [2%@729,1%@729] EMC_FREQ 0%@3199 "
            "GR3D_FREQ 45%@[1300,1300] VDD_GPU_SOC 3199mW/3199mW VDD_CPU_CV 799mW/799mW VIN_SYS_5V0 3822mW/3822mW "
            "VDDQ_VDD2_1V8AO 503mW/503mW")
XAVIER_JP4 = ("RAM 1927/31919MB (lfb 6972x4MB) SWAP 0/15959MB (cached 0MB) CPU [1%@1190,0%@1190] EMC_FREQ 0%@2133 "
              "GR3D_FREQ 0%@1377 APE 150 MTS fg 0% bg 0% AO@41C GPU@41.5C Tdiode@44.25C PMIC@100C AUX@41C "
              "CPU@42.5C thermal@41.7C Tboard@42C GPU 0/0 CPU 311/311 SOC 1242/1242 CV 0/0 VDDRQ 155/155 "
              "SYS5V 1967/1967")


@pytest.mark.parametrize("line, rails, total, ram, gr3d", [
    (ORIN_NANO, {"VDD_IN": 4172, "VDD_CPU_GPU_CV": 480, "VDD_SOC": 1361}, 4172.0, (2476, 7620), 0),
    (AGX_ORIN, {"VDD_GPU_SOC": 3199, "VDD_CPU_CV": 799, "VIN_SYS_5V0": 3822, "VDDQ_VDD2_1V8AO": 503}, 3822.0,
     (3538, 30593), 45),
    (XAVIER_JP4, {"GPU": 0, "CPU": 311, "SOC": 1242, "CV": 0, "VDDRQ": 155, "SYS5V": 1967}, 1967.0,
     (1927, 31919), 0),
])
def test_tegrastats_lines(line, rails, total, ram, gr3d):
    got = jetson.parse_tegrastats(line)
    assert got["rails"] == rails and jetson.total_mw(got["rails"]) == total  # the input rail, not a sum
    assert (got["ram_used_mb"], got["ram_total_mb"]) == ram and got["gr3d_percent"] == gr3d


def test_without_an_input_rail_the_rails_are_summed():
    assert jetson.total_mw({"VDD_GPU": 2000, "VDD_CPU": 500}) == 2500.0 and jetson.total_mw({}) is None


def _ina3221(root, address, channels):
    folder = root / "bus/i2c/drivers/ina3221" / address / "hwmon" / "hwmon3"
    folder.mkdir(parents=True)
    for n, (label, mv, ma) in enumerate(channels, start=1):
        (folder / f"in{n}_label").write_text(label + "\n")
        (folder / f"in{n}_input").write_text(f"{mv}\n")
        (folder / f"curr{n}_input").write_text(f"{ma}\n")
    return folder


def test_ina3221_rails_of_an_agx_orin(tmp_path):
    """AGX Orin: two monitors, 1-0040 (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0) and 1-0041 (one channel not connected,
    VDDQ_VDD2_1V8AO); power = mV x mA / 1000."""
    _ina3221(tmp_path, "1-0040", [("VDD_GPU_SOC", 5008, 640), ("VDD_CPU_CV", 5008, 160), ("VIN_SYS_5V0", 5000, 764)])
    _ina3221(tmp_path, "1-0041", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 100)])
    meter = jetson.jetson_meter(str(tmp_path / "bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))
    assert meter is not None and meter.source == "Jetson INA3221 rails (VIN_SYS_5V0)"
    assert meter.read_mw() == 3820.0  # 5000 mV x 764 mA
    rails = jetson.read_hwmon(sorted(str(p) for p in tmp_path.glob("bus/i2c/drivers/ina3221/*/hwmon/hwmon*")))
    assert rails == {"VDD_GPU_SOC": 3205, "VDD_CPU_CV": 801, "VIN_SYS_5V0": 3820, "VDDQ_VDD2_1V8AO": 500}


def test_no_monitor_no_meter(tmp_path):
    assert jetson.jetson_meter(str(tmp_path / "nothing/*"), tegrastats=None) is None
    assert jetson.jetson_meter(str(tmp_path / "nothing/*"), tegrastats=str(tmp_path / "no-such-command")) is None


def test_tegrastats_as_the_source_where_sysfs_has_no_monitor(tmp_path):
    """A stand-in tegrastats that prints the Orin Nano line every 20 ms, as the real one does at --interval 20."""
    fake = tmp_path / "tegrastats"
    fake.write_text(f"#!{sys.executable}\nimport time\nwhile True:\n    print({ORIN_NANO!r}, flush=True)\n"
                    "    time.sleep(0.02)\n")
    fake.chmod(0o755)
    meter = jetson.jetson_meter(str(tmp_path / "nothing/*"), tegrastats=str(fake))
    assert meter is not None and meter.source == "Jetson tegrastats rails (VDD_IN)"
    t0 = time.perf_counter()
    with meter:
        time.sleep(0.3)
    got, elapsed = meter.read_mj(), time.perf_counter() - t0
    assert abs(got - 4172 * elapsed) < 150  # VDD_IN 4,172 mW over the window


def test_power_integrates_into_millijoules():
    """Trapezoids: 4,000 mW then 6,000 mW one second later is 5,000 mJ; then 6,000 mW for 0.5 s adds 3,000."""
    clock, power = iter([0.0, 1.0, 1.5]), iter([4000.0, 6000.0, 6000.0])
    meter = jetson.PowerIntegrator(lambda: next(power), "test", clock=lambda: next(clock))
    meter.sample()
    assert meter.read_mj() == 5000
    assert meter.read_mj() == 8000


def test_a_reading_that_fails_adds_nothing_and_the_thread_samples():
    readings = iter([None, 1000.0, None, 1000.0])
    clock = iter([0.0, 1.0, 2.0, 3.0])
    meter = jetson.PowerIntegrator(lambda: next(readings), "test", clock=lambda: next(clock))
    for _ in range(4):
        meter.sample()
    assert meter._mj == 2000.0  # 1 -> 3 s at 1,000 mW, the missing reading bridged
    live = jetson.PowerIntegrator(lambda: 1000.0, "test", interval_s=0.01)
    t0 = time.perf_counter()
    with live:
        time.sleep(0.2)
    got, elapsed = live.read_mj(), time.perf_counter() - t0
    assert abs(got - 1000 * elapsed) < 30 and live._thread is not None and not live._thread.is_alive()
