"""The other processes' CPU use during a timed window (utils/measure/hostload.py), read as proc(5) documents
/proc/stat, and the unstable mark that reads it instead of the 1-minute load average."""
from __future__ import annotations

import subprocess
import sys

from tests.report import as_read
from utils.measure import hostload
from utils.report.sections.cells import unstable_footnote
from utils.report.select import unstable_reason

unstable_footnote, unstable_reason = (as_read(unstable_footnote), as_read(unstable_reason))

# proc(5)'s example of the first line: user nice system idle iowait irq softirq steal guest guest_nice, in USER_HZ
PROC5 = ("cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n"
         "cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n")


def test_busy_seconds_reads_the_cpu_line(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(PROC5)
    monkeypatch.setattr(hostload.os, "sysconf", lambda name: 100)
    assert hostload.busy_seconds(str(stat)) == (10132153 + 290696 + 3084719 + 25195) / 100  # idle, iowait left out
    assert hostload.busy_seconds(str(tmp_path / "missing")) is None
    stat.write_text("intr 1 2 3\n")
    assert hostload.busy_seconds(str(stat)) is None


def test_other_load_is_the_hosts_busy_time_less_our_own(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 0 0 5000 0 0 0 0\n")
    monkeypatch.setattr(hostload.os, "sysconf", lambda name: 100)
    clock, own = iter([10.0, 12.0]), iter([5.0, 6.0])
    monkeypatch.setattr(hostload, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(hostload, "own_seconds", lambda: next(own))
    with hostload.OtherLoad(str(stat)) as others:
        stat.write_text("cpu  1200 50 50 5200 0 0 0 0\n")  # 3 s busy in 2 s of wall time, 1 s of it ours
    assert others.cores == 1.0
    monkeypatch.undo()
    with hostload.OtherLoad(str(tmp_path / "missing")) as none:
        pass
    assert none.cores is None


def test_a_process_burning_a_core_beside_us_is_counted():
    burn = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 1.5: pass\n"
    with hostload.OtherLoad() as others:
        subprocess.run([sys.executable, "-c", burn], check=True)
    assert others.cores is not None and others.cores > 0.5


def test_the_unstable_mark_reads_the_timed_window_not_the_load_before():
    rec = {"host_cores": 2, "host_load_1m": 5.0, "host_others_cores": 0.2, "latency_all_cv_percent": 1.0}
    assert unstable_reason(rec, []) is None  # a load average left by an install before the run does not count
    busy = {**rec, "host_others_cores": 1.3}
    assert unstable_reason(busy, []) == "host busy: other processes kept 1.3 of 2 cores busy while it was timed"
    legacy = {"host_cores": 2, "host_load_1m": 5.0, "latency_all_cv_percent": 1.0}
    assert unstable_reason(legacy, []) == "host loaded (load average 5.0 on 2 cores)"


def test_the_note_says_each_marked_rows_reason():
    def rec(backend, others, cv):
        return {"network": "resnet50", "backend": backend, "precision": "fp32", "batch_size": 1, "host_cores": 2,
                "host_others_cores": others, "latency_all_cv_percent": cv}

    calm = [rec("torch", 0.1, 1.0), rec("compile", 0.1, 1.2)]
    assert str(unstable_footnote(calm)) == ""  # no row marked: no note
    note = str(unstable_footnote([*calm, rec("onnxrt", 1.4, 1.1)])).rstrip("\n")
    assert note.endswith(" Here: resnet50 ONNX Runtime fp32 bs1: host busy: other processes kept 1.4 of 2 cores busy "
                         "while it was timed.")
