"""The TensorRT command lines end to end on the CPU, with ArtTRT's real TensorRT code against the contract fake
(tests/fakes/tensorrt): main.py -v -trt with dynamic and static engines and a short last batch, --compare -trt, the
serving scenarios with CUDA graphs, --mixed_precision with each step's engine read back, build_trt.py (AutoCast fp16,
Q/DQ int8, TensorRT 10's weak typing, --timing_cache, --inspect). EfficientNet-Lite0 with its ImageNet weights on
foolbox's 20 labelled photos: top-1 through the fake is ONNX Runtime's on the same file, image by image."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch

import build_trt
import main
from tests.conftest import squeeze
from utils.core.errors import cli_boundary

LITE0 = ["--network", "efficientnet_lite0", "--pretrained"]


def records(folder: Path) -> List[Dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))]


def predictions(folder: Path, rec: Dict[str, Any]) -> np.ndarray:
    return np.load(folder / rec["predictions_file"])


@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    from utils.models.chain import onnx_for

    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


@pytest.mark.slow
def test_main_runs_dynamic_and_static_engines_as_onnx_runtime_runs_the_file(fake_tensorrt, demo_data, tmp_path):
    """A study of --trt_shapes dynamic static at batches 4 and 8 over 20 photos (the accuracy pass at 8 leaves a short
    batch of 4): every job measured, the dynamic engine tuned per batch (profiles 1-4 and 5-8), a static engine per
    batch size, the static one's short batch padded, and every image's top-1 ONNX Runtime's on the same fp32 file."""
    out, ort = tmp_path / "trt", tmp_path / "ort"
    base = ["-v", *LITE0, "--dataset", str(demo_data), "--quiet"]
    assert main.main([*base, "-trt", "--batch_sizes", "4", "8", "--trt_shapes", "dynamic", "static",
                      "--output", str(out)]) == 0
    assert main.main([*base, "--backend", "onnxrt", "--batch_size", "8", "--output", str(ort)]) == 0
    recs = records(out)
    assert sorted((r["options"], r["batch_size"], r["role"]) for r in recs) == [
        ("", 4, "timing"), ("", 8, "accuracy"), ("", 8, "timing"), ("static", 4, "timing"), ("static", 8, "accuracy"),
        ("static", 8, "timing")]
    assert all(not r.get("error") for r in recs)
    dynamic = [r for r in recs if r["options"] == ""]
    assert all(r["engine_profiles"] == [[1, 4, 4], [5, 8, 8]] and r["engine_shapes"] == "dynamic" for r in dynamic)
    static = {r["batch_size"]: r for r in recs if r["options"] == "static"}
    assert static[4]["engine_profiles"] == [[4, 4, 4]] and static[8]["engine_profiles"] == [[8, 8, 8]]
    assert "-static4-" in static[4]["engine"] and "-static8-" in static[8]["engine"]
    accuracy = {r["options"]: r for r in recs if r["role"] == "accuracy"}
    assert accuracy["static"]["short_batch"]["handling"].startswith("padded to the full batch")
    assert not accuracy[""]["short_batch"]["handling"].startswith("padded")  # the dynamic engine takes 4 as it is
    reference = next(r for r in records(ort) if r.get("predictions_file"))
    assert reference["top1"] == 85.0
    for r in accuracy.values():
        assert r["top1"] == 85.0 and (predictions(out, r) == predictions(ort, reference)).all()
    # the original's parameter column for TensorRT rows: the network's count (EfficientNet-Lite0: 4,652,008)
    assert {r["params"] for r in recs} == {4_652_008}
    assert all(r["tf32"] is False and "--noTF32" in r["trtexec_build"] for r in recs)


@pytest.mark.slow
def test_what_the_engine_cannot_take_is_refused_before_any_work(fake_tensorrt, demo_data, tmp_path, capsys, lite0):
    """Fault 1: --min_batch/--max_batch narrower than the run's batches failed at run time; fault 2: a static ONNX
    file of another batch was fed anyway. Both are one sentence before any build now."""
    from utils.models.chain import onnx_for

    base = ["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--quiet", "--output", str(tmp_path / "o")]
    assert cli_boundary(main.main, [*base, "--batch_sizes", "4", "8", "--max_batch", "4"]) == 2
    assert "--max_batch 4 does not take batch 8, which this run feeds" in capsys.readouterr().err
    static, _ = onnx_for(lite0, (8, 3, 224, 224))
    assert cli_boundary(main.main, [*base, "--onnx", str(static), "--batch_size", "4"]) == 2
    assert "takes batch 8 only (a static shape) and this run asks for batch 4" in capsys.readouterr().err
    assert not (tmp_path / "o" / "records").exists()
    assert cli_boundary(main.main, ["-v", *LITE0, "--synthetic", "4", "--tf32", "--output", str(tmp_path)]) == 2
    assert "this run is on the CPU" in capsys.readouterr().err


@pytest.mark.slow
def test_tf32_asked_reaches_the_engine_and_the_row_says_so(fake_tensorrt, demo_data, tmp_path):
    out = tmp_path / "o"
    assert main.main(["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--batch_size", "8", "--tf32", "--quiet",
                      "--output", str(out)]) == 0
    rec = records(out)[0]
    assert rec["tf32"] is True and "--noTF32" not in rec["trtexec_build"] and "-tf32-" in rec["engine"]
    from tests.report import R
    from utils.report.select import row_label

    assert row_label(R(rec)) == "TRT fp32 (TF32)"
    assert main.main(["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--batch_size", "8", "--tf32", "--quiet",
                      "--precision", "fp16", "--output", str(tmp_path / "h")]) == 0
    half = records(tmp_path / "h")[0]  # an fp16 engine's fp32 layers may use TF32 too: said in the row
    assert half["tf32"] is True and row_label(R(half)) == "TRT fp16 (TF32)"


def test_compare_against_tensorrt(fake_tensorrt, demo_data, tmp_path, monkeypatch):
    """--compare -trt --val_dataset: PyTorch fp32 against the engine on the 20 photos (the reference put on the CPU by
    the test, as the engine's buffers are)."""
    from utils.backends import base, torch_eager

    monkeypatch.setattr(base, "resolve_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(torch_eager, "resolve_device", lambda device: torch.device("cpu"))
    out = tmp_path / "o"
    assert main.main(["--compare", "-trt", *LITE0, "--val_dataset", "--dataset", str(demo_data), "--batch_size", "8",
                      "--quiet", "--output", str(out)]) == 0
    rec = next(r for r in records(out) if r.get("kind") == "compare")
    assert rec["backend"] == "tensorrt" and rec["inputs"] == 20 and rec["inputs_source"] == "dataset"
    assert rec["top1_agreement_percent"] == 100.0 and rec["flips"] == 0 and rec["ref_top1"] == rec["other_top1"]
    assert rec["max_abs_error"] < 1e-3 and rec["other_facts"]["engine_profiles"] == [[1, 8, 8]]
    # a comparison names what it measured as every record does (utils/study/identity.py): the weights and images by
    # content, the device it ran on
    assert rec["weights_id"] and rec["dataset_key"] and rec["device"] == "cpu" and rec["dataset_images"] == 20


@pytest.mark.slow
def test_serving_offline_and_server_with_cuda_graphs(fake_tensorrt, demo_data, tmp_path):
    """The serving scenarios on an engine with CUDA graphs: every padded size prepared with its own context and graph
    before LoadGen starts, LoadGen's accuracy run scoring each sample with its own answer (85 % = PyTorch's)."""
    out = tmp_path / "o"
    assert main.main(["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--cuda_graph", "--scenario", "offline",
                      "server", "--target_qps", "20", "--duration", "1", "--max_batch", "8", "--quiet",
                      "--output", str(out)]) == 0
    recs = records(out)
    assert sorted(r["scenario"] for r in recs) == ["offline", "server"]
    for r in recs:
        assert r["cuda_graph"] is True and not r.get("error") and r["top1"] == 85.0, r
        assert r["engine_profiles"] == [[1, 1, 1], [2, 2, 2], [3, 4, 4], [5, 8, 8]]


@pytest.mark.slow
def test_mixed_precision_reads_back_the_steps_engine(fake_tensorrt, demo_data, tmp_path):
    """--mixed_precision with -trt: the search's step is built into an engine (strongly typed, batch 1) and its layer
    precisions read back by the inspector; the engine ArtTRT then measures is the searched file's."""
    out = tmp_path / "o"
    assert main.main(["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--precision", "int8", "--calib_size", "4",
                      "--max_top1_drop", "100", "--mixed_precision", "--batch_size", "8", "--quiet",
                      "--output", str(out)]) == 0
    rec = records(out)[0]
    block = rec["preparation"]["mixed_precision"]
    step = block["steps"][0]
    assert step["k"] == 0 and step["engine"]["built"] is True
    counts = step["engine"]["layer_precisions"]
    assert counts.get("int8", 0) > 0 and "?" not in counts
    assert block["engine_measured"].startswith("yes: engines built for 1 of 1 steps with tensorrt 11.4.0.106 on "
                                               "NVIDIA H100 80GB HBM3")


def test_build_trt_autocast_fp16_and_qdq_int8_with_a_timing_cache_and_inspect(fake_tensorrt, lite0_onnx, demo_data,
                                                                             tmp_path, capsys):
    tc = tmp_path / "timing.cache"
    assert build_trt.main(["--onnx", str(lite0_onnx), "--fp16", "--timing_cache", str(tc)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "strongly typed, tensorrt 11.4.0.106, NVIDIA H100 80GB HBM3" in line and "-fp16-" in line and tc.is_file()
    assert build_trt.main(["--onnx", str(lite0_onnx), "--fp16", "--timing_cache", str(tc), "--force"]) == 0
    engine = Path(capsys.readouterr().out.splitlines()[0].split(" (")[0])
    assert json.loads(engine.with_suffix(".json").read_text())["timing_cache_reused"] is True
    assert build_trt.main(["--onnx", str(lite0_onnx), "--int8", "--dataset", str(demo_data), "--calib_size", "4",
                           "--opt_batch", "8", "--inspect"]) == 0
    out = capsys.readouterr().out.splitlines()
    engine = Path(out[0].split(" (")[0])
    folder = engine.with_name(engine.stem + ".inspect")
    assert any(ln.startswith("onnx: 94 layers (int8 49, fp32 45): ") for ln in out), out
    engine_line = next(ln for ln in out if ln.startswith("engine: "))
    assert "int8" in engine_line and "?" not in engine_line.split(":")[1]
    table = squeeze((folder / f"{engine.stem}.engine-layers.md").read_text())
    assert "| DequantizeLinear | int8 |" in table


@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)
def test_build_trt_weak_typing_on_tensorrt_10(fake_tensorrt, lite0_onnx, demo_data, tmp_path, capsys):
    """TensorRT 10's weak typing from build_trt.py: the fp32 file with the FP16 flag, and int8 with the entropy
    calibrator over the seeded calibration images in whole batches (20 photos at batch 8: 16 images)."""
    assert build_trt.main(["--onnx", str(lite0_onnx), "--fp16", "--weak_typing"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "weak typing (builder flags), tensorrt 10.16.1.11" in line
    assert build_trt.main(["--onnx", str(lite0_onnx), "--int8", "--weak_typing", "--dataset", str(demo_data),
                           "--calib_size", "20", "--opt_batch", "8", "--max_batch", "8"]) == 0
    engine = Path(capsys.readouterr().out.splitlines()[0].split(" (")[0])
    side = json.loads(engine.with_suffix(".json").read_text())
    assert side["route"] == "weak typing (builder flags)" and side["calibrator"] == "IInt8EntropyCalibrator2"
    assert side["calib_images_used"] == 16 and "--int8" in side.get("trtexec_build", "--int8")


@pytest.mark.slow
@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)
def test_weak_typed_int8_from_main_gets_its_calibration_images(fake_tensorrt, demo_data, tmp_path):
    """main.py -v -trt --weak_typing --precision int8: the builder receives the seeded calibration images, in
    batches of exactly the calibration batch (20 photos, batch 8: 2 batches, 16 images), the method asked, and a
    calibration cache named for file, method and batch; another method is another engine."""
    base = ["-v", "-trt", "--weak_typing", "--precision", "int8", *LITE0, "--dataset", str(demo_data),
            "--batch_size", "8", "--quiet"]
    assert main.main([*base, "--output", str(tmp_path / "a")]) == 0
    rec = records(tmp_path / "a")[0]
    prep = rec["preparation"]
    assert prep["calib_images_used"] == 16 and prep["calib_images"] == 20 and prep["calib_method"] == "entropy"
    assert Path(prep["calib_cache"]).name.startswith(Path(prep["source_onnx"]).stem if "source_onnx" in prep else "")
    assert main.main([*base, "--calib_method", "max", "--output", str(tmp_path / "b")]) == 0
    other = records(tmp_path / "b")[0]
    assert other["engine"] != rec["engine"] and other["preparation"]["calib_method"] == "max"
    assert "-fp32-" in Path(rec["preparation"]["calib_cache"]).name  # calibrated on the fp32 file, flag set


@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)
def test_weak_typing_refuses_fp8_and_a_static_batch_without_enough_images(fake_tensorrt, demo_data, tmp_path, capsys):
    base = ["-v", "-trt", "--weak_typing", *LITE0, "--dataset", str(demo_data), "--output", str(tmp_path), "--quiet"]
    assert cli_boundary(main.main, [*base, "--precision", "fp8"]) == 2
    assert "--weak_typing has no fp8 route" in capsys.readouterr().err
    assert cli_boundary(main.main, [*base, "--precision", "int8", "--trt_shapes", "static", "--batch_size", "32"]) == 2
    assert "needs at least 32 calibration images; 20 were found" in capsys.readouterr().err


@pytest.mark.slow
def test_a_given_int8_file_with_weak_typing_is_one_clear_sentence(fake_tensorrt, lite0, demo_data, tmp_path, capsys):
    import shutil

    from utils.data.options import DataOptions
    from utils.models.chain import ModelOptions, model_file
    from utils.models.precision import CalibOptions

    int8, _ = model_file(lite0, "int8", ModelOptions(calib=CalibOptions(calib_size=20)), DataOptions(str(demo_data)))
    given = tmp_path / "q-int8.onnx"
    shutil.copy(int8, given)
    base = ["-v", "-trt", *LITE0, "--dataset", str(demo_data), "--precision", "int8", "--onnx", str(given),
            "--batch_size", "8", "--output", str(tmp_path / "o"), "--quiet"]
    fake_tensorrt._select("10")
    assert cli_boundary(main.main, base + ["--weak_typing"]) == 2
    assert "already carries int8: drop --weak_typing" in capsys.readouterr().err
    assert main.main(base) == 0  # strongly typed: the file as it is
    rec = records(tmp_path / "o")[0]
    assert rec["preparation"]["route"] == "strongly typed" and rec["top1"] >= 80.0
    assert cli_boundary(main.main, base[:1] + ["-trt", "--backend", "onnxrt"] + base[2:]) == 2
    assert "-trt and --backend both given" in capsys.readouterr().err
