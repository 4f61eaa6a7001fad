"""A setup run in a process of its own (what a study does on a GPU for ONNX Runtime, whose CUDA runtime use
must not share PyTorch's process): the child runs that setup only, and its records come back as outcomes."""
from __future__ import annotations

import json

import pytest

import main
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.report.records import Recorder
from utils.study.study import REUSED, StudyContext, _run_in_child, run_setups
from utils.study.workers import outcomes_of


def _plan(argv):
    """The study's request and its plan, as main.py makes them (a child is handed both)."""
    from utils.study.request import request_from_args
    from utils.study.run import plan_of_request

    parser = main.build_parser()
    request = request_from_args(parser.parse_args(argv), parser, argv)
    return request, plan_of_request(request, {})


@pytest.mark.slow
def test_a_setup_in_a_child_process_runs_alone_and_reports_back(tmp_path):
    argv = ["-v", "--networks", "resnet18", "mobilenet_v3_small", "--backends", "torch", "onnxrt", "--synthetic", "6",
            "--batch_sizes", "2", "3", "--duration", "0", "--iterations", "2", "--min_warmup_s", "0", "--device", "cpu",
            "--output", str(tmp_path), "--quiet"]
    request, plan = _plan(argv)
    assert [s.label for s in plan.setups] == ["resnet18 torch fp32", "resnet18 onnxrt fp32 (cpu)",
                                              "mobilenet_v3_small torch fp32", "mobilenet_v3_small onnxrt fp32 (cpu)"]
    target = plan.setups[3]

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    parent = tmp_path / "claims-of-a-gpu-worker"  # as a worker of --gpus runs it: outcomes go on to its parent
    parent.mkdir()
    ctx = StudyContext(tmp_path, Recorder(tmp_path, "test"), DataOptions(synthetic=6),
                       MeasureOptions(duration_s=0, iterations=2, min_warmup_s=0), lambda n: None, hand_over=(request, plan),
                       claims=parent)
    bar = Bar()
    outcomes = _run_in_child(target, ctx, bar)
    assert [line["status"] for line in outcomes_of(parent)] == ["measured"] * 3
    ctx.claims = None
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    # the child ran the one setup: its accuracy pass and both timings, nothing of the other three
    assert sorted((r["network"], r["backend"], r["role"], r["batch_size"]) for r in recs) == [
        ("mobilenet_v3_small", "onnxrt", "accuracy", 3), ("mobilenet_v3_small", "onnxrt", "timing", 2),
        ("mobilenet_v3_small", "onnxrt", "timing", 3)]
    assert [(o.status, o.job.role, o.job.batch_size) for o in outcomes] == [
        ("measured", "accuracy", 3), ("measured", "timing", 2), ("measured", "timing", 3)]
    assert all(o.record.path for o in outcomes) and bar.n == 3
    assert not list(tmp_path.glob(".claims-*"))  # its claim folder is removed
    # the same setup run in this process now finds every job done: the child's job keys are this process's
    import utils.models.networks as nets

    ctx.load_network = lambda name: nets.load_network(name)
    again = run_setups([target], ctx)
    assert [o.status for o in again] == [REUSED] * 3


@pytest.mark.slow
def test_a_study_sends_such_setups_to_children_and_a_rerun_spawns_none(tmp_path, monkeypatch, capsys):
    import utils.study.study as st

    # on a GPU, onnxrt setups go to a process of their own; here on the CPU the same path, asked for by hand
    monkeypatch.setattr(st, "_own_process", lambda setup, ctx: ctx.hand_over is not None and setup.skipped is None
                        and setup.spec.backend == "onnxrt")
    spawned = []
    real = st._run_in_child
    monkeypatch.setattr(st, "_run_in_child", lambda s, c, b: spawned.append(s.label) or real(s, c, b))
    argv = ["-v", "--network", "resnet18", "--backends", "torch", "onnxrt", "--synthetic", "6", "--batch_sizes", "2",
            "3", "--duration", "0", "--iterations", "2", "--min_warmup_s", "0", "--output", str(tmp_path), "--quiet"]
    assert main.main(argv) == 0
    assert spawned == ["resnet18 onnxrt fp32 (cpu)"]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert sorted((r["backend"], r["role"], r["batch_size"]) for r in recs) == [
        (b, role, bs) for b in ("onnxrt", "torch") for role, bs in (("accuracy", 3), ("timing", 2), ("timing", 3))]
    assert "study: 6 jobs (6 measured, 0 found done before" in capsys.readouterr().out
    spawned.clear()
    assert main.main(argv) == 0
    assert spawned == []  # every job of the setup found done: no process started for nothing
    assert "study: 6 jobs (0 measured, 6 found done before" in capsys.readouterr().out


@pytest.mark.slow
def test_gpus_runs_one_worker_per_gpu_and_draws_one_set_of_tables(tmp_path, monkeypatch, capsys):
    """--gpus 0 1 on a machine with two GPUs: two workers over one plan, each setup measured once, the parent's
    tables and counts over both (here the two "GPUs" are CPU workers: the parent's path is the same)."""
    import utils.study.gpus as gpus

    monkeypatch.setattr(gpus, "gpu_indices", lambda values: [0, 1])
    monkeypatch.setattr(gpus, "device_of", lambda g: "cpu")
    monkeypatch.setattr(gpus, "model_of", lambda g: "one model")
    argv = ["-v", "--networks", "resnet18", "mobilenet_v3_small", "--backends", "torch", "onnxrt", "--synthetic", "6",
            "--batch_sizes", "2", "3", "--duration", "0", "--iterations", "2", "--min_warmup_s", "0", "--gpus", "0", "1", "--device", "cpu",
            "--output", str(tmp_path), "--quiet"]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    keys = [r["job_key"] for r in recs]
    assert len(recs) == 12 and len(set(keys)) == 12  # 4 setups x 3 jobs, none twice
    assert all("--claims" in r["command"] for r in recs)  # measured by the workers
    assert "study: 12 jobs (12 measured, 0 found done before, 0 skipped, 0 failed)" in out
    assert "# Is TensorRT worth it? Every network" in out and (tmp_path / "report.html").is_file()
    assert not list(tmp_path.glob(".claims-*"))  # the parent's claim folder is removed
