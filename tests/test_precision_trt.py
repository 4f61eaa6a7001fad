"""Precision as ONNX -> ONNX on the CPU (AutoCast fp16, ModelOpt / ONNX Runtime int8 Q/DQ on real photos),
cache keys, sidecars, and everything up to the TensorRT call. Only what needs TensorRT itself is skipped."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import build_trt
import main
from utils.artefacts import onnx_for
from utils.datasets import open_dataset
from utils.errors import ArtTRTError, cli_boundary
from utils.measure import MeasureOptions
from utils.pipeline import RunSpec, validate_one
from utils.precision import calibration_data, convert_precision

ROOT = Path(__file__).resolve().parent.parent
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and \
    hasattr(importlib.import_module("tensorrt"), "Builder") if importlib.util.find_spec("tensorrt") else False


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


@pytest.mark.parametrize("method", ["max", "entropy"])
def test_int8_qdq_accuracy_on_real_photos(lite0, lite0_onnx, demo_data, tmp_path, method):
    calib = {"method": method, "size": 500, "dataset": str(demo_data), "seed": 0, "tool": "modelopt"}
    q, facts = convert_precision(lite0_onnx, "int8", lite0, calib=calib)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(q)
    assert facts["tool"] == "modelopt.onnx.quantization" and facts["calib_method"] == method
    assert facts["calib_images"] == 20 and facts["calib_asked"] == 500  # capped by the dataset, recorded
    # TensorRT's parser refuses int32 biases: none of the DequantizeLinear inputs may be int32
    init = {i.name: i for i in onnx.load(str(q)).graph.initializer}
    assert not any(i.data_type == onnx.TensorProto.INT32 for i in init.values())
    ds = open_dataset(demo_data, lite0.preprocess)
    spec = RunSpec("onnxrt", "int8", calib=calib)
    rec, _ = validate_one(spec, lite0, ds, MeasureOptions(batch_size=4, progress=False), tmp_path, 1000)
    assert rec["top1"] >= 80.0 and rec["top5"] >= 90.0  # fp32 is 85 / 95 on these 20 photos
    assert rec["tool"] == "modelopt.onnx.quantization", rec["tool"]
    # ModelOpt keeps fp32 weights behind weight Q/DQ pairs (TensorRT folds them into int8 at build time)
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node) >= 60
    print(f"int8 {method}: top-1 {rec['top1']}%, top-5 {rec['top5']}%, quantization {facts['convert_s']} s")


def test_calibration_cache_is_keyed_not_deleted(lite0, demo_data, tmp_path):
    calib = {"method": "entropy", "size": 8, "dataset": str(demo_data), "seed": 0}
    a, fa = calibration_data(lite0, calib, 224, tmp_path)
    b, fb = calibration_data(lite0, calib, 224, tmp_path)
    assert fa["calib_data"] == fb["calib_data"] and np.array_equal(a, b)
    c, fc = calibration_data(lite0, {**calib, "seed": 1}, 224, tmp_path)
    assert fc["calib_data"] != fa["calib_data"] and fc["calib_files"] != fa["calib_files"]
    name = Path(fa["calib_data"]).name
    assert name.startswith("efficientnet_lite0-224x224-entropy-n8-") and demo_data.name in name
    # the picked images went through exactly the validation preprocessing
    ds = open_dataset(demo_data, lite0.preprocess)
    i = ds.files.index(fa["calib_files"][0])
    expect = (ds.images[i].astype(np.float32) / 255 - 0.5) / 0.5
    assert np.allclose(a[0], expect, atol=1e-6)
    assert len(json.loads(Path(fa["calib_data"]).with_suffix(".json").read_text())["calib_files"]) == 8


def test_ort_quantizer_fallback_is_tensorrt_shaped_and_recorded(lite0, lite0_onnx, demo_data):
    calib = {"method": "max", "size": 20, "dataset": str(demo_data), "seed": 0, "tool": "ort"}
    q, facts = convert_precision(lite0_onnx, "int8", lite0, calib=calib)
    assert facts["tool"] == "onnxruntime.quantization.quantize_static"
    model = onnx.load(str(q))
    init = {i.name: i for i in model.graph.initializer}
    assert not any(i.data_type == onnx.TensorProto.INT32 for i in init.values())  # QuantizeBias False
    zps = [init[n.input[2]] for n in model.graph.node if n.op_type == "DequantizeLinear" and len(n.input) > 2
           and n.input[2] in init]
    assert zps and all(not onnx.numpy_helper.to_array(z).any() for z in zps)  # symmetric
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["arttrt.converted_by"]) == facts["tool"]


def test_fp16_autocast_keeps_fp32_io_and_is_cached(lite0, lite0_onnx, demo_data, tmp_path):
    out, facts = convert_precision(lite0_onnx, "fp16", lite0)
    assert facts["tool"] == "modelopt.onnx.autocast" and facts["io"] == "fp32" and not facts["cached"]
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    again, facts2 = convert_precision(lite0_onnx, "fp16", lite0)
    assert again == out and facts2["cached"]
    io16, _ = convert_precision(lite0_onnx, "fp16", lite0, io_fp16=True)
    assert io16 != out and onnx.load(str(io16)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    bf16, fb = convert_precision(lite0_onnx, "bf16", lite0)
    assert fb["tool"] == "modelopt.onnx.autocast" and bf16 != out
    assert any(i.data_type == onnx.TensorProto.BFLOAT16 for i in onnx.load(str(bf16)).graph.initializer)
    ds = open_dataset(demo_data, lite0.preprocess)
    rec, _ = validate_one(RunSpec("onnxrt", "fp16"), lite0, ds, MeasureOptions(batch_size=4, progress=False), tmp_path, 1000)
    assert rec["top1"] >= 80.0 and "no fp16 Conv kernel" in rec["ort_cpu_note"]


def test_fp8_on_ort_cpu_and_bad_calibration_settings_are_refused(lite0, demo_data, tmp_path, capsys):
    base = ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(demo_data),
            "--backend", "onnxrt", "--output", str(tmp_path), "--quiet"]
    assert cli_boundary(main.main, base + ["--precision", "int8", "--calib_method", "percentile"]) == 2
    assert "not offered for int8" in capsys.readouterr().err
    assert cli_boundary(main.main, base + ["--precision", "fp8"]) == 2
    assert "CUDA GPU" in capsys.readouterr().err


def test_build_trt_without_tensorrt_names_what_to_install(lite0_onnx, capsys):
    if HAS_TRT:
        pytest.skip("TensorRT is installed here")
    assert cli_boundary(build_trt.main, ["--onnx", str(lite0_onnx), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorrt-cu13" in err and "tensorrt-rtx" in err and len(err.strip().splitlines()) == 1
    assert cli_boundary(build_trt.main, ["--onnx", str(lite0_onnx), "--input_shape", "-1", "3", "256", "256"]) == 2
    assert "takes input" in capsys.readouterr().err
    assert cli_boundary(build_trt.main, ["--onnx", str(lite0_onnx), "--fp16", "--int8"]) == 2


def test_engine_shapes_and_sidecar_checks(tmp_path):
    from utils.trt_pipeline import EngineShapes, check_sidecar

    s = EngineShapes.of((-1, 3, 224, 224), None, 32, 256)
    assert s.min == (1, 3, 224, 224) and s.opt[0] == 32 and s.max[0] == 256 and s.tag() == "b1-32-256"
    assert EngineShapes.of((8, 3, 224, 224), None, None, None).tag() == "static8"
    with pytest.raises(ArtTRTError, match="min <= opt <= max"):
        EngineShapes.of((-1, 3, 224, 224), 64, 32, 256)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    env = {"module": "tensorrt", "tensorrt_version": "10.13.0", "gpu": "NVIDIA H200", "compute_capability": "9.0"}
    engine.with_suffix(".json").write_text(json.dumps(env))
    assert check_sidecar(engine, env)["gpu"] == "NVIDIA H200"
    with pytest.raises(ArtTRTError, match="tensorrt_version '10.13.0'.*rebuild it"):
        check_sidecar(engine, {**env, "tensorrt_version": "11.0.0"})
    with pytest.raises(ArtTRTError, match="compute_capability"):
        check_sidecar(engine, {**env, "compute_capability": "8.9"})


def test_fp8_needs_a_gpu_that_has_it():
    from utils.trt_pipeline import check_precision_supported

    ampere = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    with pytest.raises(ArtTRTError, match="fp8 needs a GPU of compute capability 8.9 or newer.*A100.*8.0"):
        check_precision_supported("fp8", ampere)
    check_precision_supported("int8", ampere)
    check_precision_supported("fp8", {"gpu": "NVIDIA H200", "compute_capability": "9.0"})
    check_precision_supported("fp8", {"gpu": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"})


def test_mypy_catches_a_misspelt_tensorrt_attribute(tmp_path):
    """CI's type check is strict enough that a misspelt TensorRT attribute fails it."""
    if subprocess.run([sys.executable, str(ROOT / "tools" / "prepare_trt_stubs.py")]).returncode != 0:
        pytest.fail("tensorrt-stubs is not installed: the TensorRT type check cannot run")
    good = "import tensorrt as trt\n\ndef f(c: trt.IExecutionContext, s: int) -> bool:\n    return c.execute_async_v3(s)\n"
    bad = good.replace("execute_async_v3", "execute_async_v4")
    results = {}
    for name, text in (("good", good), ("bad", bad)):
        f = tmp_path / f"{name}_mod.py"
        f.write_text(text)
        r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
                            str(f)], cwd=ROOT, capture_output=True, text=True)
        results[name] = (r.returncode, r.stdout)
    assert results["good"][0] == 0, results["good"][1]
    assert results["bad"][0] == 1 and "execute_async_v4" in results["bad"][1]


@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (pip install tensorrt-cu13) and an NVIDIA GPU")
def test_tensorrt_engine_builds_and_runs(lite0, demo_data, tmp_path):
    ds = open_dataset(demo_data, lite0.preprocess)
    rec, _ = validate_one(RunSpec("tensorrt", "fp16", device="cuda"), lite0, ds,
                          MeasureOptions(batch_size=4, progress=False), tmp_path, 1000)
    assert rec["top1"] >= 80.0


def test_fp8_on_the_ort_cpu_provider_is_refused_before_calibrating(lite0, tmp_path):
    from utils.pipeline import make_runner

    spec = RunSpec("onnxrt", "fp8", device="cuda", provider="cpu", calib={"dataset": str(tmp_path / "none")})
    with pytest.raises(ArtTRTError, match="no fp8 kernels"):  # not "dataset does not exist": nothing was calibrated
        make_runner(spec, lite0)
