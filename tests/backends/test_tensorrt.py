"""The TensorRT backend up to the TensorRT call: engine shapes, sidecars, fp8 and weak-typing refusals, the
type check against TensorRT's stubs, and the calibration images that reach the builder from main.py (the
builder itself replaced by a stand-in that records what it was given). Only running an engine is skipped."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import build_trt
import main
from utils.backends.base import Runner
from utils.core.errors import ArtTRTError, cli_boundary
from utils.models.chain import onnx_for

ROOT = Path(__file__).resolve().parent.parent.parent
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and \
    hasattr(importlib.import_module("tensorrt"), "Builder") if importlib.util.find_spec("tensorrt") else False
ENV = {"module": "tensorrt", "tensorrt_version": "10.13.0", "gpu": "NVIDIA H200", "compute_capability": "9.0"}


@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


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
    from utils.backends.tensorrt.engine import EngineShapes, check_sidecar

    s = EngineShapes.of((-1, 3, 224, 224), None, 32, 256)
    assert s.min == (1, 3, 224, 224) and s.opt[0] == 32 and s.max[0] == 256 and s.tag() == "b1-32-256"
    assert EngineShapes.of((8, 3, 224, 224), None, None, None).tag() == "static8"
    with pytest.raises(ArtTRTError, match="min <= opt <= max"):
        EngineShapes.of((-1, 3, 224, 224), 64, 32, 256)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    env = dict(ENV)
    engine.with_suffix(".json").write_text(json.dumps(env))
    assert check_sidecar(engine, env)["gpu"] == "NVIDIA H200"
    with pytest.raises(ArtTRTError, match="tensorrt_version '10.13.0'.*rebuild it"):
        check_sidecar(engine, {**env, "tensorrt_version": "11.0.0"})
    with pytest.raises(ArtTRTError, match="compute_capability"):
        check_sidecar(engine, {**env, "compute_capability": "8.9"})


def test_fp8_needs_a_gpu_that_has_it():
    from utils.backends.tensorrt.engine import check_precision_supported

    ampere = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    with pytest.raises(ArtTRTError, match="fp8 needs a GPU of compute capability 8.9 or newer.*A100.*8.0"):
        check_precision_supported("fp8", ampere)
    check_precision_supported("int8", ampere)
    check_precision_supported("fp8", {"gpu": "NVIDIA H200", "compute_capability": "9.0"})
    check_precision_supported("fp8", {"gpu": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"})


def test_mypy_catches_a_misspelt_or_removed_tensorrt_name(tmp_path):
    """The type check against NVIDIA's bindings fails a misspelt name under both versions, and a name TensorRT 11
    removed (BuilderFlag.INT8) under 11 only."""
    if subprocess.run([sys.executable, str(ROOT / "tools" / "make_trt_stubs.py")]).returncode != 0:
        pytest.fail("the TensorRT stubs could not be made: the TensorRT type check cannot run")
    good = "import tensorrt as trt\n\ndef f(c: trt.IExecutionContext, s: int) -> bool:\n    return c.execute_async_v3(s)\n"
    cases = {"good": good, "misspelt": good.replace("execute_async_v3", "execute_async_v4"),
             "removed": good + "\n\ndef g(config: trt.IBuilderConfig) -> None:\n    config.set_flag(trt.BuilderFlag.INT8)\n"}
    results = {}
    for name, text in cases.items():
        f = tmp_path / f"{name}_mod.py"
        f.write_text(text)
        for version in ("11", "10"):
            r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                                "--cache-dir", str(tmp_path / f"cache{version}"), str(f)], cwd=ROOT,
                               capture_output=True, text=True,
                               env={**os.environ, "MYPYPATH": str(ROOT / ".mypy_stubs" / f"trt{version}")})
            results[(name, version)] = (r.returncode, r.stdout)
    assert results[("good", "11")][0] == 0 and results[("good", "10")][0] == 0, results
    assert all(results[("misspelt", v)][0] == 1 and "execute_async_v4" in results[("misspelt", v)][1] for v in "10 11".split())
    assert results[("removed", "11")][0] == 1 and '"type[BuilderFlag]" has no attribute "INT8"' in results[("removed", "11")][1]
    assert results[("removed", "10")][0] == 0


@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (pip install tensorrt-cu13) and an NVIDIA GPU")
def test_tensorrt_engine_builds_and_runs(lite0, demo_data, tmp_path):
    from utils.backends.base import RunSpec
    from utils.data.options import DataOptions
    from utils.measure.timing import MeasureOptions
    from utils.study.validate import validate_one

    data = DataOptions(str(demo_data))
    ds = data.open(lite0.preprocess, lite0.num_classes)
    rec, _ = validate_one(RunSpec("tensorrt", "fp16", device="cuda"), lite0, ds,
                          MeasureOptions(batch_size=4, progress=False), data=data)
    assert rec["top1"] >= 80.0


class StandInEngineRunner(Runner):
    """Stands in for TensorRTRunner where TensorRT cannot run: logits of zeros, on the CPU."""

    backend = "tensorrt"

    def __init__(self, path, preprocess, precision, facts=None, cuda_graph=False, device="cuda"):
        super().__init__(preprocess)
        self.path, self.precision, self.facts = path, precision, dict(facts or {})

    def infer(self, x):
        return torch.zeros(x.shape[0], 1000)

    def serves(self, batch_size):  # as TensorRTRunner: a static engine serves its own batch size only
        import re

        m = re.search(r"-static(\d+)-", self.path.name)
        return m is None or int(m.group(1)) == batch_size

    def info(self):
        return {**self.facts, "engine": str(self.path)}  # as TensorRTRunner.info

    def engine_information(self, shape):
        self.inspected_shape = shape
        return json.loads(json.dumps(INSPECTOR_SAMPLE))


# The engine inspector's JSON in the form TensorRT's developer guide documents for ProfilingVerbosity.DETAILED
# (a fused int8 convolution, a reformat to fp32, the fp32 classifier).
INSPECTOR_SAMPLE = {"Layers": [
    {"Name": "node_Conv_881 + n4", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "input", "Dimensions": [8, 3, 224, 224],
                 "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
     "Outputs": [{"Name": "hardtanh", "Dimensions": [8, 32, 112, 112],
                  "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
     "ParameterType": "Convolution", "TacticName": "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"},
    {"Name": "Reformatting CopyNode for Input Tensor 0 to node_linear", "LayerType": "Reformat",
     "Inputs": [{"Name": "view", "Dimensions": [8, 1280], "Format/Datatype": "Row major Int8 format"}],
     "Outputs": [{"Name": "view_r", "Dimensions": [8, 1280], "Format/Datatype": "Row major linear FP32"}],
     "TacticValue": "0x0000000000000000"},
    {"Name": "node_linear", "LayerType": "CaskGemmMatrixMultiply",
     "Inputs": [{"Name": "view_r", "Dimensions": [8, 1280], "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "logits", "Dimensions": [8, 1000], "Format/Datatype": "Row major linear FP32"}],
     "TacticName": "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n"}],
    "Bindings": ["input", "logits"]}


@pytest.fixture
def stand_in_tensorrt(monkeypatch):
    """TensorRT "present" with weak typing, its builder recording BuildSettings, its runner a stand-in."""
    from utils.backends.tensorrt import build, engine, runner, weak

    built = []

    def build_serialized(onnx_path, settings, verbose=False):
        built.append((Path(onnx_path), settings))
        return b"stand-in plan", {"route": "weak typing (builder flags)" if settings.weak_typing else "strongly typed",
                                  "build_s": 0.0, "network_layers": 1, **ENV}

    monkeypatch.setattr(engine, "require_tensorrt_and_gpu", lambda: dict(ENV))
    monkeypatch.setattr(engine, "environment_key", lambda: dict(ENV))
    monkeypatch.setattr(build, "build_serialized", build_serialized)
    monkeypatch.setattr(weak, "has_weak_typing", lambda: True)
    monkeypatch.setattr(runner, "TensorRTRunner", StandInEngineRunner)
    return built


def test_weak_typed_int8_from_main_gets_its_calibration_images(stand_in_tensorrt, demo_data, tmp_path):
    """main.py -v -trt --weak_typing --precision int8: the builder receives the seeded calibration images, in
    batches of exactly the profile's opt batch (20 photos, batch 8: 2 batches, 16 images), the method asked,
    and a calibration cache named for file, method and batch; another method is another engine."""
    base = ["-v", "-trt", "--weak_typing", "--precision", "int8", "--network", "efficientnet_lite0", "--pretrained",
            "--dataset", str(demo_data), "--batch_size", "8", "--output", str(tmp_path), "--quiet"]
    assert main.main(base) == 0
    onnx_file, s = stand_in_tensorrt[-1]
    assert s.weak_typing and s.precision == "int8" and "-fp32-" in onnx_file.name  # fp32 file + builder flag
    c = s.calibration
    assert c is not None and c.data.shape == (20, 3, 224, 224) and c.batch == 8 and c.used == 16
    assert c.method == "entropy" and c.cache.name.startswith(f"{onnx_file.stem}-entropy-b8-")
    rec = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert rec["preparation"]["calib_images_used"] == 16 and rec["preparation"]["calib_images"] == 20
    assert main.main(base + ["--calib_method", "max"]) == 0
    _, s2 = stand_in_tensorrt[-1]
    assert len(stand_in_tensorrt) == 2, "the max-calibrated engine must not be the entropy one from the cache"
    assert s2.calibration.method == "max" and s2.calibration.cache != c.cache


def test_weak_typing_refuses_fp8_and_a_static_batch_without_enough_images(stand_in_tensorrt, demo_data, tmp_path,
                                                                          capsys):
    base = ["-v", "-trt", "--weak_typing", "--network", "efficientnet_lite0", "--pretrained", "--dataset",
            str(demo_data), "--output", str(tmp_path), "--quiet"]
    assert cli_boundary(main.main, base + ["--precision", "fp8"]) == 2
    assert "--weak_typing has no fp8 route" in capsys.readouterr().err
    assert cli_boundary(main.main, base + ["--precision", "int8", "--trt_shapes", "static", "--batch_size", "32"]) == 2
    assert "needs at least 32 calibration images; 20 were found" in capsys.readouterr().err
    assert not stand_in_tensorrt  # nothing was built


def test_strongly_typed_int8_builds_the_qdq_file_and_static_engines_per_batch(stand_in_tensorrt, demo_data, tmp_path):
    argv = ["-v", "-trt", "--precision", "int8", "--network", "efficientnet_lite0", "--pretrained", "--dataset",
            str(demo_data), "--calib_size", "20", "--batch_sizes", "4", "8", "--trt_shapes", "dynamic", "static",
            "--output", str(tmp_path), "--quiet"]
    assert main.main(argv) == 0
    shapes = sorted((s.min_shape[0], s.opt_shape[0], s.max_shape[0]) for _, s in stand_in_tensorrt)
    # one dynamic engine covering 1..8 (built once, reused for batch 8), one static engine per batch size
    assert shapes == [(1, 8, 8), (4, 4, 4), (8, 8, 8)]
    assert all("-int8-" in f.name and s.calibration is None and not s.weak_typing for f, s in stand_in_tensorrt)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    # a study: one accuracy pass at batch 8 and timing at 4 and 8, per engine kind; a static engine per batch size
    assert sorted((r["batch_size"], r["options"], r["role"]) for r in recs) == [
        (4, "", "timing"), (4, "static", "timing"), (8, "", "accuracy"), (8, "", "timing"), (8, "static", "accuracy"),
        (8, "static", "timing")]
    static = {r["batch_size"]: r["engine"] for r in recs if r["options"] == "static" and r["role"] == "timing"}
    assert "-static4-" in static[4] and "-static8-" in static[8]
    # the original's parameter column for TensorRT rows: the network's count (EfficientNet-Lite0: 4,652,008)
    assert {r["params"] for r in recs} == {4_652_008}


def test_weak_typing_configures_flags_profile_and_exact_calibration_batches(tmp_path, monkeypatch):
    """weak.configure and the calibrator, run against a stand-in of the TensorRT 10 API that records calls:
    the INT8 flag, a calibration profile of its own (min = opt = max = the calibration batch), the calibrator
    class of the method, batches of exactly that size (the 20 - 20 // 8 * 8 = 4 left over never handed out),
    then the documented end of data, and the calibration cache written atomically."""
    import types

    import numpy as np

    from utils.backends.tensorrt import api, weak

    class Base:
        def __init__(self):
            pass

    class Profile:
        def __init__(self):
            self.shapes = None

        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.calibration_profile = [], None, None

        def set_flag(self, f):
            self.flags.append(f)

        def set_calibration_profile(self, p):
            self.calibration_profile = p

    fake = types.SimpleNamespace(BuilderFlag=types.SimpleNamespace(FP16="FP16", BF16="BF16", INT8="INT8"),
                                 IInt8EntropyCalibrator2=type("IInt8EntropyCalibrator2", (Base,), {}),
                                 IInt8MinMaxCalibrator=type("IInt8MinMaxCalibrator", (Base,), {}),
                                 IInt8Calibrator=Base, Dims=lambda d: list(d), __name__="tensorrt",
                                 __version__="10.13.0")
    monkeypatch.setattr(api, "_module", fake)
    data = np.random.default_rng(0).standard_normal((20, 3, 8, 8)).astype(np.float32)
    for method, base in (("entropy", "IInt8EntropyCalibrator2"), ("max", "IInt8MinMaxCalibrator")):
        c = weak.Calibration(data, method, 8, tmp_path / f"{method}.trtcalib", device="cpu")
        config, builder = Config(), types.SimpleNamespace(create_optimization_profile=Profile)
        facts = weak.configure(builder, config, "input", True, "int8", c)
        assert config.flags == ["INT8"] and facts == {"calibrator": base}
        assert config.calibration_profile.shapes == ("input", (8, 3, 8, 8), (8, 3, 8, 8), (8, 3, 8, 8))
        cal = config.int8_calibrator
        assert type(cal).__mro__[1].__name__ == base and cal.get_batch_size() == 8
        handed = []
        while (ptrs := cal.get_batch(["input"])) is not None:
            handed.append(cal.current.clone())
            assert len(ptrs) == 1 and ptrs[0] == cal.current.data_ptr()
        assert [tuple(h.shape) for h in handed] == [(8, 3, 8, 8), (8, 3, 8, 8)]
        assert np.array_equal(np.concatenate([h.numpy() for h in handed]), data[:16])
        assert cal.read_calibration_cache() is None
        cal.write_calibration_cache(b"scales")
        assert cal.read_calibration_cache() == b"scales" and not list(tmp_path.glob("*.part"))
    with pytest.raises(ArtTRTError, match="at least one full calibration batch"):
        weak.configure(builder, Config(), "input", True, "int8", weak.Calibration(data[:3], "entropy", 8,
                                                                                    tmp_path / "x", device="cpu"))
    fp16 = Config()
    assert weak.configure(builder, fp16, "input", True, "fp16", None) == {} and fp16.flags == ["FP16"]
    monkeypatch.setattr(api, "_module", types.SimpleNamespace(BuilderFlag=types.SimpleNamespace(), __name__="tensorrt",
                                                              __version__="11.4.0"))
    with pytest.raises(ArtTRTError, match="removed in TensorRT 11"):
        weak.require("int8")


def test_a_given_int8_file_with_weak_typing_is_one_clear_sentence(stand_in_tensorrt, lite0, demo_data, tmp_path,
                                                                  capsys):
    import shutil

    from utils.data.options import DataOptions
    from utils.models.chain import ModelOptions, model_file
    from utils.models.precision import CalibOptions

    int8, _ = model_file(lite0, "int8", ModelOptions(calib=CalibOptions(calib_size=20)), DataOptions(str(demo_data)))
    given = tmp_path / "q-int8.onnx"
    shutil.copy(int8, given)
    base = ["-v", "-trt", *["--network", "efficientnet_lite0", "--pretrained"], "--dataset", str(demo_data),
            "--precision", "int8", "--onnx", str(given), "--output", str(tmp_path / "o"), "--quiet"]
    assert cli_boundary(main.main, base + ["--weak_typing"]) == 2
    assert "already carries int8: drop --weak_typing" in capsys.readouterr().err
    assert main.main(base) == 0  # strongly typed: the file as it is
    onnx_file, s = stand_in_tensorrt[-1]
    assert onnx_file == given and not s.weak_typing
    assert cli_boundary(main.main, base[:1] + ["-trt", "--backend", "onnxrt"] + base[2:]) == 2
    assert "-trt and --backend both given" in capsys.readouterr().err


def test_engine_inspector_rows_and_precisions():
    from utils.backends.tensorrt.engine_layers import datatype, engine_layers, engine_precision_counts

    rows = engine_layers(INSPECTOR_SAMPLE)
    assert [(r["type"], r["precision"]) for r in rows] == [("CaskConvolution", "int8"), ("Reformat", "int8"),
                                                           ("CaskGemmMatrixMultiply", "fp32")]
    assert rows[0]["tactic"].startswith("sm90_xmma") and rows[1]["tactic"] == "0x0000000000000000"
    assert engine_precision_counts(rows) == {"int8": 2, "fp32": 1}
    for text, name in (("Row major linear FP16 format", "fp16"), ("Channel major FP16 format where channel % 8 == 0",
                       "fp16"), ("Half", "fp16"), ("Float", "fp32"), ("Row major linear BF16", "bf16"),
                       ("Row major linear FP8", "fp8"), ("Row major linear Int32", "int32"),
                       ("N/A due to dynamic shapes", "?")):
        assert datatype(text) == name, text
    # an engine built with LAYER_NAMES_ONLY: names, no precision, and the table says why
    names_only = engine_layers({"Layers": ["node_Conv_881 + n4", "node_linear"]})
    assert [r["precision"] for r in names_only] == ["?", "?"]


def test_build_trt_inspect_writes_layer_tables_and_drift_beside_the_engine(stand_in_tensorrt, lite0, demo_data,
                                                                          tmp_path, capsys):
    """build_trt.py --int8 --inspect: the int8 file's layer table and per-layer drift, the engine inspector's
    table (at the profile's opt shape), all in <engine>.inspect/ beside the engine."""
    onnx_path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    assert build_trt.main(["--onnx", str(onnx_path), "--int8", "--dataset", str(demo_data), "--calib_size", "20",
                           "--opt_batch", "8", "--inspect"]) == 0
    out = capsys.readouterr().out.splitlines()
    engine = Path(out[0].split(" (")[0])
    folder = engine.with_name(engine.stem + ".inspect")
    assert engine.is_file() and folder.is_dir()
    assert any(ln.startswith("onnx: 94 layers (int8 49, fp32 45): ") for ln in out), out
    assert any(ln.startswith("engine: 3 layers (int8 2, fp32 1): ") for ln in out), out
    drift = json.loads(next(folder.glob("*.drift.json")).read_text())
    assert len(drift) == 94 and drift[-1]["tensor"] == "logits" and drift[-1]["relative_error"] > 0
    table = (folder / f"{engine.stem}.engine-layers.md").read_text()
    assert "3 engine layers (int8 2, fp32 1)" in table and "sm90_xmma_gemm" in table
