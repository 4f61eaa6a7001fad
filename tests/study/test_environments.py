"""Issue 40, class 1: a record is "done before" only where it was measured in the same environment (the kind of
machine, PyTorch and every library its backend runs, never the host name); a record from elsewhere is kept, the job
is measured again beside it, and the tables say which environment each row was measured with."""
from __future__ import annotations

import json

import pytest

import main
from tests.conftest import unchanged
from tests.report import R
from tests.study.test_study import FAST, records, summary
from utils.report.schema_types import ENV_IDENTITY
from utils.report.select import identity_columns, images_key, latest_per_config


def rec(**over):
    r = {"kind": "validate", "network": "resnet18", "backend": "torch", "precision": "fp32", "options": "",
         "batch_size": 1, "mode": "pipelined", "dataset_key": "k", "weights_id": "w", "images": 20, "top1": 70.0,
         "time": "2026-12-06T10:00:00+00:00", "env": {"host": "a", "cpu": "Xeon", "torch": "2.14.1"}}
    r.update(over)
    return R(r)


def test_records_of_another_library_version_are_kept_apart_and_labelled():
    here = rec()
    old_torch = rec(env={"host": "a", "cpu": "Xeon", "torch": "2.1.0"}, time="2026-01-01T00:00:00+00:00")
    other_host = rec(env={"host": "b", "cpu": "Xeon", "torch": "2.14.1"}, time="2026-12-06T11:00:00+00:00")
    kept = latest_per_config([old_torch, here, other_host])
    assert len(kept) == 2 and old_torch in kept and other_host in kept  # the host name is no identity
    assert images_key(here) != images_key(old_torch) and images_key(here) == images_key(other_host)
    cols = dict(identity_columns([here, old_torch]))
    assert list(cols) == ["measured with"]
    assert cols["measured with"](here) == "torch 2.14.1" and cols["measured with"](old_torch) == "torch 2.1.0"
    assert identity_columns([here, other_host]) == []  # like nodes: no column


# a row that runs each library: TensorRT's rows run ONNX, ONNX Runtime (ModelOpt's calibration), ModelOpt and
# TensorRT(-RTX); a serving row runs LoadGen; torchao's rows torchao
RUNS = {**{k: {"backend": "tensorrt", "precision": "fp16"} for k in ENV_IDENTITY[7:]},
        "loadgen": {"role": "scenario", "scenario": "offline"}, "torchao": {"backend": "torchao", "precision": "int8"}}


@pytest.mark.parametrize("field", ENV_IDENTITY)
def test_every_identity_field_tells_environments_apart(field):
    a, b = rec(env={field: "1"}, **RUNS.get(field, {})), rec(env={field: "2"}, **RUNS.get(field, {}))
    assert len(latest_per_config([a, b])) == 2
    assert dict(identity_columns([a, b]))["measured with"](b).endswith(" 2")


@pytest.mark.parametrize("field", ENV_IDENTITY[7:])
def test_a_library_a_row_does_not_run_is_no_part_of_its_environment(field):
    """The H100 study (2026-12-07): the PyTorch rows ran while onnxruntime 1.30 was importable, the ONNX Runtime rows
    with 1.31.1; every ONNX Runtime row lost its "x Vanilla". A PyTorch row's figures do not depend on ONNX Runtime
    (or TensorRT, ModelOpt, LoadGen): its records are one environment, and the reference of any row."""
    a, b = rec(env={field: "1"}), rec(env={field: "2"}, time="2026-12-06T11:00:00+00:00")
    assert latest_per_config([a, b]) == [b] and identity_columns([a, b]) == []
    other = rec(env={field: "3"}, **RUNS[field])
    assert images_key(other) == images_key(a)  # divided by the PyTorch row measured on this machine and torch
    assert identity_columns([a, other]) == []  # nothing to tell apart: the PyTorch row does not run it
    later = rec(env={field: "4"}, time="2026-12-06T12:00:00+00:00", **RUNS[field])
    assert dict(identity_columns([a, other, later]))["measured with"](later).endswith(" 4")
    assert dict(identity_columns([a, other, later]))["measured with"](a) == ""  # no version said for a row without it


@pytest.mark.slow
def test_a_record_from_another_environment_is_measured_again_and_kept(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "2", "--output", str(out), *FAST]
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (2, 0)  # accuracy + timing
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (0, 2)  # same machine, same libraries: done before
    for p in (out / "records").glob("validate-*.json"):  # as if copied from a machine with another CPU and torch
        r = json.loads(p.read_text())
        r["env"].update(cpu="Some Other CPU", torch="2.1.0", onnxruntime="1.17.0")
        p.write_text(json.dumps(r))
    with unchanged(*(out / "records").glob("validate-*.json")):  # the old records are kept as they were
        assert main.main(argv) == 0
    text = capsys.readouterr().out
    assert summary(text)[1:3] == (2, 0)  # measured again
    recs = records(out)
    assert len(recs) == 4 and sum(r["env"]["torch"] == "2.1.0" for r in recs) == 2  # the old ones kept
    table = (out / "table_outputs" / "resnet18.md").read_text()  # every record of the folder, labelled
    lines = table.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|") and "measured with" in ln)
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines[start:start + 4]]
    col = cells[0].index("measured with")
    env = [f"CPU {r['env']['cpu']}, torch {r['env']['torch']}"  # not ONNX Runtime's: a PyTorch row does not run it
           for r in recs if r["role"] == "timing"]
    assert sorted(row[col] for row in cells[2:]) == sorted(env)
    assert "measured with" in (out / "report.html").read_text()
    assert "Measured in several environments" in table and "Measured on " not in table  # never one machine's name
    pct = lines[next(i for i, ln in enumerate(lines) if "timed batches" in ln)]
    assert "measured with" in pct  # the percentile rows are labelled too


def test_a_library_the_jobs_do_not_run_changing_between_parts_of_a_study_keeps_them_done(tmp_path, capsys,
                                                                                         monkeypatch):
    """The H200 study (2026-12-07, benchmarks/h200_session.sh c1..c5): its PyTorch jobs ran while the machine's CPU
    onnxruntime 1.30.0 was importable; when the study was resumed with onnxruntime-gpu 1.31.1 unpacked beside it,
    every PyTorch job's key changed (the key held every library's version) and each was measured again. A job's
    key holds the versions its figures depend on: the machine and PyTorch, and the libraries its backend runs."""
    from utils.study import identity

    real = identity.environment
    versions = {"onnxruntime": "1.30.0 (onnxruntime)", "torch": None}

    def env(index=None):
        e = dict(real(index))
        e.update({k: v for k, v in versions.items() if v is not None})
        return e

    monkeypatch.setattr(identity, "environment", env)
    out = tmp_path / "o"
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "2", "--output", str(out), *FAST]
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (2, 0)
    versions["onnxruntime"] = "1.31.1 (onnxruntime-gpu)"  # a library a PyTorch job does not run
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (0, 2)  # found done
    versions["torch"] = "2.1.0"  # what it does run
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (2, 0)  # measured again


def test_a_jobs_key_holds_the_versions_of_what_it_runs_and_nothing_else(monkeypatch):
    from utils.backends import onnxrt
    from utils.backends.base import RunSpec
    from utils.study import identity
    from utils.study.plan import Job, Setup

    versions = {k: f"{k}-1" for k in ENV_IDENTITY}
    monkeypatch.setattr(identity, "environment", lambda index=None: dict(versions))

    def key(backend, role, provider=None):
        spec = RunSpec(backend, "int8" if backend == "torchao" else "fp32",
                       options=onnxrt.Options(provider) if provider else None)
        setup = Setup(0, "resnet18", spec, [Job(role, 8)])
        facts = {"weights_id": "w", "images": 4, "dataset_key": "d", "environment": identity.environment_identity(spec)}
        return identity.job_key(setup, setup.jobs[0], facts, {})[1]

    ort_trt = ("onnxrt", "timing", "tensorrt")  # ONNX Runtime's TensorRT provider runs TensorRT
    jobs = [("torch", "accuracy"), ("torch", "scenario"), ("compile", "timing"), ("onnxrt", "timing"),
            ("onnxrt", "scenario"), ort_trt, ("torchao", "timing"), ("tensorrt", "timing")]
    before = {j: key(*j) for j in jobs}
    ort = {("onnxrt", "timing"), ("onnxrt", "scenario"), ort_trt, ("tensorrt", "timing")}
    for field, changed in [("onnxruntime", ort), ("modelopt", ort), ("onnx", ort),
                           ("loadgen", {("torch", "scenario"), ("onnxrt", "scenario")}),
                           ("tensorrt", {ort_trt, ("tensorrt", "timing")}),
                           ("tensorrt_rtx", {("tensorrt", "timing")}),
                           ("torchao", {("torchao", "timing")}),
                           ("torch", set(jobs)), ("gpu", set(jobs)), ("driver", set(jobs))]:
        versions[field] = f"{field}-2"
        now = {j: key(*j) for j in jobs}
        assert {j for j in jobs if now[j] != before[j]} == changed, field
        before = now


def test_a_backend_that_does_not_name_its_libraries_is_keyed_by_every_one(monkeypatch):
    """A backend registered without `libraries` (docs/architecture.md's example): every library's version is in
    its records' environment, the safe side: a change of any measures its jobs again."""
    import dataclasses

    from utils.backends import registry
    from utils.report.select import env_fields

    monkeypatch.setitem(registry.BACKENDS, "export", dataclasses.replace(registry.BACKENDS["torch"], name="export",
                                                                         libraries=None))
    assert env_fields("export") == ENV_IDENTITY
    assert env_fields("torch") == ENV_IDENTITY[:7] and env_fields("torch", scenario=True) == (*ENV_IDENTITY[:7],
                                                                                                "loadgen")


def test_a_folder_of_before_is_found_done_where_its_environment_is_the_same(tmp_path, capsys):
    """Records written before 2026-12-07 were keyed with every importable library's version: a rerun in the same
    environment finds them done (their key as it is now, from the identity they keep), in another measures again."""
    from utils.study.plan import digest

    out = tmp_path / "o"
    argv = ["-v", "--network", "resnet18", "--synthetic", "4", "--batch_sizes", "2", "--output", str(out), *FAST]
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (2, 0)
    for p in (out / "records").glob("validate-*.json"):  # as the code of before wrote them
        r = json.loads(p.read_text())
        r["study_job"]["environment"] = {k: r["env"].get(k) for k in ENV_IDENTITY if k != "torchao"}
        r["study_job"]["environment"]["onnxruntime"] = "1.30.0 (onnxruntime)"
        r["env"]["onnxruntime"] = "1.30.0 (onnxruntime)"
        r["job_key"] = digest(r["study_job"])
        p.write_text(json.dumps(r))
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (0, 2)  # found done: a PyTorch job does not run ONNX Runtime
    for p in (out / "records").glob("validate-*.json"):
        r = json.loads(p.read_text())
        r["study_job"]["environment"]["torch"] = r["env"]["torch"] = "2.1.0"
        r["job_key"] = digest(r["study_job"])
        p.write_text(json.dumps(r))
    assert main.main(argv) == 0
    assert summary(capsys.readouterr().out)[1:3] == (2, 0)  # another torch: measured again
