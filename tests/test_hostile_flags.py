"""Issue 40, class 3: every flag is used or refused. A flag the run would not use, or two that say the same thing,
get one sentence and exit 2 before any work, whether or not the value equals the default; --report applies
--max_top1_drop (exit 3), so merged shards are gated as one study is."""
from __future__ import annotations

import json

import pytest

import main
from tests.conftest import unchanged
from tests.report.test_hostile_records import record, write
from utils.core.errors import cli_boundary

V = ["-v", "--synthetic", "4", "--quiet"]


@pytest.mark.parametrize("argv, message", [
    # a value equal to its default is given all the same: nothing dropped without a word
    ([*V, "--network", "resnet18", "--networks", "mobilenet_v2"], "--network and --networks both given"),
    ([*V, "--batch_size", "1", "--batch_sizes", "2"], "--batch_size and --batch_sizes both given"),
    ([*V, "--backend", "torch", "--backends", "onnxrt"], "--backend and --backends both given"),
    ([*V, "--latency_bound_ms", "15"], "--latency_bound_ms is a setting of a serving scenario: add --scenario"),
    ([*V, "--max_queue_delay_us", "0"], "--max_queue_delay_us is a setting of a serving scenario"),
    # options of another kind of run
    ([*V, "--calib_methods", "max"], "--calib_methods is for int8/fp8 rows, and this run asks fp32"),
    ([*V, "--precisions", "fp32", "bf16", "--calib_sizes", "8"], "--calib_sizes is for int8/fp8 rows"),
    ([*V, "--scenario", "offline", "--profile"], "--profile is a rule of the timing jobs"),
    ([*V, "--scenario", "offline", "--inspect"], "--inspect is a rule of the timing jobs"),
    ([*V, "--scenario", "offline", "--iterations", "5"], "--iterations is a rule of the timing jobs"),
    ([*V, "--scenario", "offline", "--sync"], "--sync is a rule of the timing jobs"),
    ([*V, "--scenario", "offline", "--repeats", "3"], "--repeats is a rule of the timing jobs"),
    ([*V, "--repeats", "0"], "--repeats 0: give 1 to 100 whole timed runs"),
    (["--compare", "--synthetic", "4", "--repeats", "3"], "--repeats is an option of a study: add -v"),
    ([*V, "--scenario", "offline", "--warmup", "0.1"], "--warmup is a rule of the timing jobs"),
    ([*V, "-rtol", "0.1"], "--rtol is an option of --compare, which this run is not"),
    ([*V, "--reference", "torch-fp32"], "--reference is an option of --compare"),
    ([*V, "--telemetry_ms", "50"], "--telemetry_ms is the interval of --telemetry, which is not given"),
    (["--report", "R", "--batch_size", "2"], "--batch_size is not used by --report, which redraws the records"),
    (["--report", "R", "--network", "resnet18"], "--network is not used by --report"),
    (["--report", "R", "-trt"], "-trt is not used by --report"),
    (["--report", "R", "--max_top1_drop", "-1"], "--max_top1_drop is a number of points, at least 0"),
    (["--demo", "--network", "resnet18"], "--network is not used by --demo, which is one fixed run"),
    (["--demo", "--batch_size", "1"], "--batch_size is not used by --demo"),
    # found by a hostile pass over the first version of these fixes
    ([*V, "--seed", "-1"], "--seed -1: give 0 to 4294967295"),
    ([*V, "--seed", "99999999999999999999"], "--seed 99999999999999999999: give 0 to 4294967295"),
    ([*V, "--num_classes", "0"], "--num_classes 0: give a class count from 1 to 1000000"),
    ([*V, "--num_classes", "-5"], "--num_classes -5: give a class count"),
    ([*V, "--duration", "nan"], "--duration nan: give a finite number"),
    ([*V, "--duration", "1e20"], "--duration 1e+20 s is more than a day of timing per batch size"),
    ([*V, "--min_warmup_s", "inf"], "--min_warmup_s inf: give a finite number"),
    ([*V, "--warmup", "nan"], "--warmup nan: give a finite number"),
    (["--report", "R", "--max_top1_drop", "nan"], "--max_top1_drop is a number of points, at least 0, not nan"),
    ([*V, "--calib_size", "10"], "--calib_size is for int8/fp8 rows, and this run asks fp32"),
    ([*V, "--calib_method", "max"], "--calib_method is for int8/fp8 rows"),
    ([*V, "--quantizer", "ort"], "--quantizer is for int8/fp8 rows"),
    ([*V, "--fp16_io"], "--fp16_io makes an fp16/bf16 file's inputs and outputs fp16, and this run asks fp32"),
    ([*V, "--class_map", "classes.txt"], "--class_map is about reading a dataset, and --synthetic makes random images"),
    ([*V, "--cache_dir", "c"], "--cache_dir is about reading a dataset"),
    ([*V, "--strict"], "--strict is about reading a dataset"),
    ([*V, "--max_top1_drop", "1"], "--max_top1_drop judges top-1 on labelled images, and --synthetic images have no"),
    ([*V, "--cuda_graph"], "--cuda_graph replays a CUDA graph on a GPU, and this run is on cpu"),
    ([*V, "--claims", ""], "--claims is empty: give a folder"),
    (["--compare", "-rtol", "nan"], "--rtol nan: give a finite number"),
])
def test_a_flag_the_run_would_not_use_is_refused_in_one_sentence(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "R").mkdir()
    with unchanged(tmp_path):
        rc = cli_boundary(main.main, [*argv, "--output", str(tmp_path / "out")] if argv[0] in ("-v", "--compare")
                          else argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def request(argv):
    from utils.study.request import request_from_args

    parser = main.build_parser()
    return request_from_args(parser.parse_args(argv), parser, argv)


def test_an_explicit_batch_size_beside_a_scenario_asks_for_timing_jobs_too():
    assert request([*V, "--scenario", "offline"]).timing_jobs is False
    assert request([*V, "--scenario", "offline", "--batch_size", "1"]).timing_jobs is True  # 1 is the default
    assert request([*V, "--scenario", "offline", "--batch_size", "1", "--sync"]).measure.sync is True
    assert request(["--report", "R", "--max_top1_drop", "2"]).max_top1_drop == 2.0


def test_report_applies_the_top1_gate_to_merged_records(tmp_path, capsys):
    out = tmp_path / "merged"
    write(out, "ref.json", record(top1=70.0, role="accuracy", images=50000))
    write(out, "int8.json", record(backend="onnxrt", precision="int8", top1=5.0, role="accuracy", images=50000,
                                   time="2026-12-02T10:01:00+00:00"))
    names = sorted(p.name for p in (out / "records").iterdir())
    assert cli_boundary(main.main, ["--report", str(out), "--quiet"]) == 0  # no budget: no gate
    capsys.readouterr()
    assert cli_boundary(main.main, ["--report", str(out), "--max_top1_drop", "66", "--quiet"]) == 0  # 65 points
    assert "top-1 gate" not in capsys.readouterr().err
    assert cli_boundary(main.main, ["--report", str(out), "--max_top1_drop", "1", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "top-1 gate: resnet18 ONNX Runtime int8 is 65.00 points below Vanilla (more than --max_top1_drop 1)" \
        in err
    assert sorted(p.name for p in (out / "records").iterdir()) == names  # --report never writes a record
    assert json.loads((out / "records" / "int8.json").read_text())["top1"] == 5.0


def test_an_empty_output_is_refused_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with unchanged(tmp_path):
        rc = cli_boundary(main.main, [*V, "--output", ""])
    assert rc == 2 and capsys.readouterr().err.strip() == "error: --output is empty: give a folder"
