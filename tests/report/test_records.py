"""Records value by value: the command line, the environment (a stand-in GPU and NVML), names that say what a
record holds and never collide, the fallback folder, and which files count as records."""
from __future__ import annotations

import json
import platform
import re
import sys
import types
from pathlib import Path

import pytest
import torch

import utils.report.records as records
from utils.core.cli import command_line
from utils.report.records import (Recorder, environment, gpu_facts, load_records, make_record, record_folders,
                                  record_name, write_record)


def test_command_line_quotes_what_a_shell_would_need(monkeypatch):
    assert command_line("main.py", ["-v", "--dataset", "my photos"]) == "python main.py -v --dataset 'my photos'"
    monkeypatch.setattr(sys, "argv", ["main.py", "--demo"])
    assert command_line("main.py", None) == "python main.py --demo"
    assert command_line("main.py", []) == "python main.py"


def test_versions_and_cpu_name(monkeypatch):
    import numpy

    assert records._version("numpy") == numpy.__version__ and records._version("no-such-package-x") is None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        if names:
            assert records._cpu_name() == names[0]

    class FakeProc:
        def __init__(self, *a):
            pass

        def read_text(self):
            return "processor\t: 0\nmodel name\t: Intel(R) Xeon(R): Platinum 8480C\nmodel name\t: other\n"

    monkeypatch.setattr(records, "Path", FakeProc)
    assert records._cpu_name() == "Intel(R) Xeon(R): Platinum 8480C"  # a colon in the name is kept

    class NoProc(FakeProc):
        def read_text(self):
            raise OSError("no /proc here")

    monkeypatch.setattr(records, "Path", NoProc)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert records._cpu_name() == platform.machine()
    monkeypatch.setattr(platform, "processor", lambda: "Xeon")
    assert records._cpu_name() == "Xeon"


@pytest.fixture
def fake_gpu(monkeypatch):
    """Two stand-in GPUs (the current one is 1) and an NVML that answers per index."""
    props = {0: types.SimpleNamespace(name="NVIDIA H100", major=9, minor=0, total_memory=80 * 2**30),
             1: types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=int(139.8375 * 2**30))}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    nvml = types.SimpleNamespace(NVML_CLOCK_SM=1, nvmlInit=lambda: None,
                                 nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
                                 nvmlSystemGetDriverVersion=lambda: "580.65",
                                 nvmlDeviceGetClockInfo=lambda h, kind: {"h0": 1755, "h1": 1980}[h] * (kind == 1))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    records.environment.cache_clear()
    yield
    records.environment.cache_clear()


def test_gpu_facts_of_the_gpu_it_ran_on(fake_gpu):
    assert gpu_facts() == {"gpu": "NVIDIA H200", "compute_capability": "9.0", "cuda": "13.0",
                           "gpu_memory_gb": 139.8, "integrated_gpu": False, "driver": "580.65",
                           "sm_clock_mhz": 1980}  # GiB, 1 decimal
    assert gpu_facts(0)["gpu"] == "NVIDIA H100" and gpu_facts(0)["sm_clock_mhz"] == 1755
    env = environment(0)
    assert env["gpu"] == "NVIDIA H100" and env["gpu_memory_gb"] == 80.0 and "sm_clock_mhz" not in env
    assert env["torch"] == torch.__version__ and env["python"] == platform.python_version()


def test_nvml_refusing_leaves_out_only_its_facts(fake_gpu, monkeypatch):
    def refuse():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlInit", refuse)
    assert gpu_facts() == {"gpu": "NVIDIA H200", "compute_capability": "9.0", "cuda": "13.0", "gpu_memory_gb": 139.8,
                           "integrated_gpu": False}


def test_an_integrated_gpu_is_named(fake_gpu, monkeypatch):
    orin = types.SimpleNamespace(name="Orin", major=8, minor=7, total_memory=7 * 2**30, is_integrated=True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: orin)
    assert gpu_facts()["integrated_gpu"] is True and gpu_facts()["compute_capability"] == "8.7"


def test_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_facts() == {"gpu": None}


def test_a_record_names_the_gpu_it_ran_on(fake_gpu):
    assert make_record("validate", "c", device_index=0)["env"]["gpu"] == "NVIDIA H100"
    assert make_record("validate", "c")["env"]["gpu"] == "NVIDIA H200"  # the current device


def test_a_record_is_flat_with_its_environment(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["main.py", "-v"])
    rec = make_record("validate", None, network="resnet18", top1=69.758)
    assert rec["record_version"] == 2 and rec["kind"] == "validate" and rec["error"] is None
    assert rec["command"] == "main.py -v" and rec["network"] == "resnet18" and rec["top1"] == 69.758
    assert rec["time"].endswith("+00:00") and len(rec["time"]) == 25  # seconds, UTC
    assert rec["env"] == environment(None)
    rec["env"]["gpu"] = "changed"
    assert environment(None)["gpu"] != "changed"  # each record has its own copy
    assert make_record("compare", "python main.py --compare")["command"] == "python main.py --compare"


def test_record_names_say_what_they_hold(monkeypatch):
    monkeypatch.setattr(records.secrets, "token_hex", lambda n: "abc123")
    rec = {"kind": "validate", "network": "resnet18", "backend": "torch", "precision": "fp16",
           "options": "channels_last", "batch_size": 8, "mode": "sync", "env": {"gpu": "NVIDIA H200"},
           "time": "2026-11-29T04:00:00+00:00"}
    assert record_name(rec) == "validate-resnet18-torch-fp16-channels_last-bs8-sync-nvidia-h200-2026-11-29T040000Z-abc123.json"
    bare = {"time": "2026-11-29T04:00:00+00:00", "options": "a/b c"}
    assert re.fullmatch(r"record-net-a_b_c-[0-9a-f]{8}-cpu-2026-11-29T040000Z-abc123\.json", record_name(bare))
    assert record_name({"time": "2026-11-29T04:00:00+00:00"}) == "record-net-cpu-2026-11-29T040000Z-abc123.json"


def test_the_random_tag_is_six_hex_digits():
    import re

    name = record_name({"time": "2026-11-29T04:00:00+00:00"})
    assert re.fullmatch(r"record-net-cpu-2026-11-29T040000Z-[0-9a-f]{6}\.json", name), name


def test_records_never_share_a_name_and_come_back_whole(tmp_path, monkeypatch):
    tags = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(records.secrets, "token_hex", lambda n: next(tags))
    rec = {"kind": "validate", "time": "2026-11-29T04:00:00+00:00", "record_version": 1, "top1": 50.0}
    first = write_record(rec, tmp_path)
    second = write_record(rec, tmp_path)  # the same tag comes up again: another is drawn
    assert first.name.endswith("aaaaaa.json") and second.name.endswith("bbbbbb.json")
    assert json.loads(second.read_text()) == rec


def test_the_recorder_keeps_a_record_when_its_folder_refuses(tmp_path, monkeypatch, caplog):
    assert Recorder(None).write({"time": "t", "kind": "validate"}).path is None
    ok = Recorder(tmp_path / "out").write({"time": "2026-11-29T04:00:00+00:00", "kind": "validate"})
    assert Path(ok.path).parent == tmp_path / "out" / "records" and Path(ok.path).is_file()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    rec = Recorder(blocked).write({"time": "2026-11-29T04:00:00+00:00", "kind": "validate"})
    assert Path(rec.path).parent == tmp_path / "tmp" / "arttrt-records" and Path(rec.path).is_file()
    import re

    message = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()][-1]
    assert re.fullmatch(rf"could not write the record under {re.escape(str(blocked))} \((.+)\): it is in "
                        rf"{re.escape(str(rec.path))}", message) and "(None)" not in message


def test_which_files_are_records(tmp_path):
    def put(rel, obj):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, dict) and obj.get("kind") in ("validate", "compare"):  # what a row must name
            obj = {"network": "n", "backend": "torch", "precision": "fp32", "batch_size": 1, "reference": "r", **obj}
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return p

    late = put("records/a/late.json", {"record_version": 1, "kind": "validate", "time": "2026-11-29T05:00:00+00:00"})
    early = put("records/b/early.json", {"record_version": 1, "kind": "validate", "time": "2026-11-29T04:00:00+00:00"})
    cmp_ = put("records/c.json", {"record_version": 1, "kind": "compare", "time": "2026-11-29T04:30:00+00:00"})
    put("records/foreign.json", {"name": "not ours"})
    put("records/list.json", [1, 2])
    put("records/old.json", {"record_version": 0, "kind": "validate", "time": "x"})
    put("records/inspect/layers.json", {"record_version": 1, "kind": "validate", "time": "y"})
    put("records/profiles/trace.json", {"record_version": 1, "kind": "validate", "time": "z"})
    after = put("records/z/after.json", {"record_version": 1, "kind": "validate", "time": "2026-11-29T06:00:00+00:00"})
    untimed = put("records/z/untimed.json", {"record_version": 1, "kind": "validate"})
    beside = put("sidecar.json", {"record_version": 1, "kind": "validate", "time": "2026-11-29T07:00:00+00:00"})
    demo = put("demo/records/d.json", {"record_version": 1, "kind": "validate", "time": "2026-11-29T08:00:00+00:00"})
    everything = load_records(tmp_path)  # the folder's own records only: not another run's folder below it
    assert [r.path for r in everything] == [str(untimed), str(early), str(cmp_), str(late), str(after)]
    assert [r.path for r in load_records(tmp_path, "validate")] == [str(untimed), str(early), str(late),
                                                                        str(after)]
    assert load_records(tmp_path, "inspect") == []
    assert [r.path for r in load_records(tmp_path / "records")] == [r.path for r in everything]
    merged = load_records(tmp_path, nested=True)  # --report DIR: every records/ folder under it
    assert [r.path for r in merged] == [r.path for r in everything] + [str(demo)]
    assert str(beside) not in [r.path for r in merged]
    assert record_folders(merged) == {str(tmp_path / "records"): 1, str(tmp_path / "records" / "a"): 1,
                                      str(tmp_path / "records" / "b"): 1, str(tmp_path / "records" / "z"): 2,
                                      str(tmp_path / "demo" / "records"): 1}


def test_a_record_that_cannot_be_read_gets_the_one_warning(tmp_path, caplog):
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "bad-utf8.json").write_bytes(b'{"record_version": 2, "kind": "validate", "network": "\xff"}')
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "cut.json").write_text('{"record_version": 2, "kind": "valid')
    (tmp_path / "foreign.json").write_text("{not json")  # not in a records folder: someone else's, quietly
    with caplog.at_level("WARNING"):
        assert load_records(tmp_path) == []
        load_records(tmp_path)  # once per file, however often the folder is read
    lines = [r.getMessage() for r in caplog.records]
    assert sorted(lines) == sorted([f"skipped {folder / 'bad-utf8.json'}: a record that cannot be read (not UTF-8)",
                                    f"skipped {folder / 'deep.json'}: a record that cannot be read (nested too deep)",
                                    next(m for m in lines if "cut.json" in m)])
    assert "a record that cannot be read" in next(m for m in lines if "cut.json" in m)


def test_the_onnxruntime_that_is_imported_is_the_one_recorded(tmp_path, monkeypatch):
    """A GPU build earlier on sys.path than a CPU build: the record names the one `import onnxruntime` loads."""
    import sys

    from utils.report.records import imported_version

    for root, dist, version in ((tmp_path / "gpu", "onnxruntime_gpu", "9.9.1"), (tmp_path / "cpu", "onnxruntime", "1.0")):
        (root / "fakeort").mkdir(parents=True)
        (root / "fakeort" / "__init__.py").write_text("")
        (root / f"{dist}-{version}.dist-info").mkdir()
        (root / f"{dist}-{version}.dist-info" / "METADATA").write_text(f"Name: {dist}\nVersion: {version}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "gpu"), str(tmp_path / "cpu"), *sys.path])
    assert imported_version("fakeort", ("onnxruntime", "onnxruntime-gpu")) == "9.9.1 (onnxruntime-gpu)"
    monkeypatch.setattr(sys, "path", [str(tmp_path / "cpu"), str(tmp_path / "gpu"), *sys.path[2:]])
    assert imported_version("fakeort", ("onnxruntime", "onnxruntime-gpu")) == "1.0 (onnxruntime)"
    assert imported_version("no_such_module_here", ("x",)) is None
    assert imported_version("", ("x",)) is None  # a name importlib refuses (ValueError): nothing, not a traceback
