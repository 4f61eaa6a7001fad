"""ArtTRT's TensorRT code (utils/backends/tensorrt) run for real against the contract fake of TensorRT
(tests/fakes/tensorrt, written from NVIDIA's headers, bindings and guides, its API checked against NVIDIA's own
bindings by test_tensorrt_fake_conformance.py): building, profiles, the runner's contexts and CUDA graphs, the
logger, memory, TF32, the inspector's JSON of 10.x and 11.x, the timing cache, plugins and TensorRT 10's calibrator.
Each fault an expert read found (issue 38) has its test here; the fake fails loudly where real TensorRT would read
past a buffer or replay a stale graph. The whole command lines are in test_tensorrt_e2e.py."""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import build_trt
from tests.conftest import FAKE_GPU, tiny_onnx
from utils.backends.tensorrt import api, engine, weak
from utils.backends.tensorrt.build import BuildSettings, build_serialized
from utils.backends.tensorrt.engine import EngineShapes, check_sidecar, engine_for
from utils.backends.tensorrt.runner import TensorRTRunner
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.preprocess import Preprocess

ROOT = Path(__file__).resolve().parent.parent.parent
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and \
    hasattr(importlib.import_module("tensorrt"), "Builder") if importlib.util.find_spec("tensorrt") else False
ENV = {"module": "tensorrt", "tensorrt_version": "10.13.0", "gpu": "NVIDIA H200", "compute_capability": "9.0"}
IMAGE = (3, 8, 8)


def ort_logits(onnx_path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]


def make_engine(tmp_path: Path, profiles, batch="batch", name="t", **kw) -> Path:
    onnx_path = tiny_onnx(tmp_path / f"{name}.onnx", batch=batch)
    plan, _ = build_serialized(onnx_path, BuildSettings("fp32", tuple(profiles), IMAGE, **kw))
    path = tmp_path / f"{name}.engine"
    path.write_bytes(plan)
    return path


def runner(path: Path, **kw) -> TensorRTRunner:
    return TensorRTRunner(path, Preprocess(), "fp32", **kw)


# --- without TensorRT, and what needs none ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    from utils.models.chain import onnx_for

    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


def test_build_trt_without_tensorrt_names_what_to_install(lite0_onnx, capsys):
    if HAS_TRT:
        pytest.skip("TensorRT is installed here")
    onnx_path = lite0_onnx
    assert cli_boundary(build_trt.main, ["--onnx", str(onnx_path), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorrt-cu13" in err and "tensorrt-rtx" in err and len(err.strip().splitlines()) == 1
    assert cli_boundary(build_trt.main, ["--onnx", str(onnx_path), "--input_shape", "-1", "3", "256", "256"]) == 2
    assert "takes input" in capsys.readouterr().err
    assert cli_boundary(build_trt.main, ["--onnx", str(onnx_path), "--fp16", "--int8"]) == 2


def test_engine_profiles_one_per_batch_size_and_the_sidecar_checks(tmp_path):
    """A run's dynamic engine: one profile per batch size, each covering the sizes above the last, opt at its own
    size; explicit min/opt/max: one profile as given, checked; a fixed ONNX batch: one shape."""
    s = EngineShapes.of((-1, 3, 224, 224), None, None, 256, [1, 8, 64])
    assert s.profiles == ((1, 1, 1), (2, 8, 8), (9, 64, 64), (65, 256, 256)) and s.dynamic and s.tag() == "p1-8-64-256"
    assert EngineShapes.of((-1, 3, 224, 224), None, None, 8, [8, 1]).profiles == ((1, 1, 1), (2, 8, 8))
    one = EngineShapes.of((-1, 3, 224, 224), None, 32, 256, [1, 256])
    assert one.profiles == ((1, 32, 256),) and one.tag() == "b1-32-256"
    assert EngineShapes.of((8, 3, 224, 224), None, None, None).tag() == "static8"
    many = EngineShapes.of((-1, 3, 224, 224), None, None, 256, [1, 2, 4, 8, 16, 32, 64, 96, 128, 160, 192, 224, 256])
    assert len(many.profiles) == 13 and many.tag().startswith("p1-256-n13-") and len(many.tag()) < 30
    # no batch sizes (build_trt.py): one profile, opt at the largest, as before
    assert EngineShapes.of((-1, 3, 224, 224), None, None, 256).profiles == ((1, 256, 256),)
    with pytest.raises(ArtTRTError, match="min <= opt <= max"):
        EngineShapes.of((-1, 3, 224, 224), 64, 32, 256)
    path = tmp_path / "x.engine"
    path.write_bytes(b"plan")
    env = dict(ENV)
    path.with_suffix(".json").write_text(json.dumps(env))
    assert check_sidecar(path, env)["gpu"] == "NVIDIA H200"
    with pytest.raises(ArtTRTError, match="tensorrt_version '10.13.0'.*rebuild it"):
        check_sidecar(path, {**env, "tensorrt_version": "11.0.0"})
    with pytest.raises(ArtTRTError, match="compute_capability"):
        check_sidecar(path, {**env, "compute_capability": "8.9"})
    # fault 9: the same TensorRT imported as its compiled module (tensorrt_bindings) is not another TensorRT
    assert check_sidecar(path, {**env, "module": "tensorrt_bindings"})["gpu"] == "NVIDIA H200"
    with pytest.raises(ArtTRTError, match="module 'tensorrt'"):
        check_sidecar(path, {**env, "module": "tensorrt_rtx"})


def test_fp8_needs_a_gpu_that_has_it():
    from utils.backends.tensorrt.engine import check_precision_supported

    ampere = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    with pytest.raises(ArtTRTError, match="fp8 needs a GPU of compute capability 8.9 or newer.*A100.*8.0"):
        check_precision_supported("fp8", ampere)
    check_precision_supported("int8", ampere)
    check_precision_supported("fp8", {"gpu": "NVIDIA H200", "compute_capability": "9.0"})
    check_precision_supported("fp8", {"gpu": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"})


@pytest.mark.slow
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


# The engine inspector's JSON in the form TensorRT 10's developer guide documents for ProfilingVerbosity.DETAILED
# (a fused int8 convolution, a reformat to fp32, the fp32 classifier), and a layer as TensorRT 11 writes it (the
# migration guide: "the split of the Format/DataType field").
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
     "TacticName": "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n"},
    {"Name": "node_softmax", "LayerType": "Softmax",
     "Inputs": [{"Name": "logits", "Dimensions": [8, 1000], "Format": "Row major linear format (kLINEAR)",
                 "Datatype": "Half"}], "Outputs": [], "TacticName": "softmax"}],
    "Bindings": ["input", "logits"]}


def test_engine_inspector_rows_and_precisions():
    from utils.backends.tensorrt.engine_layers import datatype, engine_layers, engine_precision_counts

    rows = engine_layers(INSPECTOR_SAMPLE)
    assert [(r["type"], r["precision"]) for r in rows] == [("CaskConvolution", "int8"), ("Reformat", "int8"),
                                                           ("CaskGemmMatrixMultiply", "fp32"), ("Softmax", "fp16")]
    assert rows[0]["tactic"].startswith("sm90_xmma") and rows[1]["tactic"] == "0x0000000000000000"
    assert engine_precision_counts(rows) == {"int8": 2, "fp32": 1, "fp16": 1}
    for text, name in (("Row major linear FP16 format", "fp16"), ("Channel major FP16 format where channel % 8 == 0",
                       "fp16"), ("Half", "fp16"), ("Float", "fp32"), ("Row major linear BF16", "bf16"),
                       ("Row major linear FP8", "fp8"), ("Row major linear Int32", "int32"), ("UInt8", "uint8"),
                       ("float16", "fp16"), ("N/A due to dynamic shapes", "?")):
        assert datatype(text) == name, text
    # an engine built with LAYER_NAMES_ONLY: names, no precision, and the table says why
    names_only = engine_layers({"Layers": ["node_Conv_881 + n4", "node_linear"]})
    assert [r["precision"] for r in names_only] == ["?", "?"]


# --- building against the fake ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fake_tensorrt", ["11", "10"], indirect=True)
def test_an_engine_runs_each_batch_under_the_profile_tuned_for_it(fake_tensorrt, tmp_path):
    """Fault 6: the opt batch was the largest, so a batch-1 row ran kernels tuned for 256. Now every batch size of the
    run has its profile (opt = that size, as trtexec tunes for --optShapes) and runs under it; sizes between use the
    profile whose range takes them. The logits are ONNX Runtime's on the same file."""
    path = make_engine(tmp_path, [(1, 1, 1), (2, 8, 8)])
    onnx_path = tmp_path / "t.onnx"
    with runner(path) as r:
        assert r.ranges == [(1, 1, 1), (2, 8, 8)] and r.served() == "batches 1, 2-8"
        assert [r.serves(b) for b in (1, 5, 8, 9)] == [True, True, True, False] and not r.fixed_shape
        for b, profile in ((1, 0), (8, 1), (5, 1)):
            x = torch.randn(b, *IMAGE)
            assert np.allclose(r.infer(x).numpy(), ort_logits(onnx_path, x), atol=1e-5)
            assert r.contexts[(b, *IMAGE)].profile == profile
        assert r.contexts[(1, *IMAGE)].context.active_optimization_profile == 0
        assert r.contexts[(8, *IMAGE)].context.active_optimization_profile == 1
        with pytest.raises(ArtTRTError, match=r"takes batches 1, 2-8, not 9"):
            r.infer(torch.randn(9, *IMAGE))


def test_a_one_point_profile_serves_its_batch_only_and_the_short_batch_is_padded(fake_tensorrt, tmp_path):
    """Fault 1: --trt_shapes static builds a dynamic-input engine with min = opt = max; get_tensor_shape still says -1,
    so serves() said yes to every batch and the short last batch failed in set_input_shape after the whole pass. The
    profile is read now: batch 8 only, and the timing loop pads the short batch of 4 (20 images) to 8."""
    from utils.data.cache import SyntheticDataset
    from utils.measure.measurement import MeasureOptions
    from utils.measure.timing import measure

    path = make_engine(tmp_path, [(8, 8, 8)])
    with runner(path) as r:
        assert r.input_shape[0] == -1 and r.ranges == [(8, 8, 8)]
        assert r.serves(8) and not r.serves(4) and r.fixed_shape and r.served() == "batch 8 only"
        ds = SyntheticDataset(20, 8, seed=1)
        res = measure(r, ds, MeasureOptions(batch_size=8, progress=False, verify=False, warmup_fraction=0.0))
        assert res.short_batch == {"images": 4, "handling": "padded to the full batch, run after the timed batches, "
                                                            "for accuracy only"}
        x = r.normalizer(torch.from_numpy(np.asarray(ds.images[:20])))
        expected = ort_logits(tmp_path / "t.onnx", x).argmax(1)
        assert (res.predictions == expected).all()  # the four padded images too


def test_a_static_engine_is_never_fed_another_batch(fake_tensorrt, tmp_path):
    """Fault 2: a static engine of batch 8 was fed whatever came: at 16 it computed 8 images (images/s inflated
    twice), at 4 TensorRT read past the end of the input buffer (the fake fails loudly there, as compute-sanitizer
    would). Now each is one sentence before anything is enqueued."""
    path = make_engine(tmp_path, [], batch=8)
    with runner(path) as r:
        assert r.input_shape == (8, 3, 8, 8) and r.ranges == [(8, 8, 8)] and r.fixed_shape
        for b in (4, 16):
            with pytest.raises(ArtTRTError, match=rf"takes batch 8 only, not {b}"):
                r.infer(torch.randn(b, *IMAGE))
        x = torch.randn(8, *IMAGE)
        assert np.allclose(r.infer(x).numpy(), ort_logits(tmp_path / "t.onnx", x), atol=1e-5)
    # the fake itself: a batch of 4 at an engine of 8 reads 4 images past the buffer, and says so
    with runner(path) as r:
        ctx = r.engine.create_execution_context()
        small, out = torch.randn(4, *IMAGE), torch.empty(8, 10)
        ctx.set_tensor_address("input", small.data_ptr())
        ctx.set_tensor_address("logits", out.data_ptr())
        with pytest.raises(fake_tensorrt._MemoryViolation, match="past the end of the allocation"):
            ctx.execute_async_v3(0)


def test_cuda_graphs_of_several_shapes_each_replay_their_own_context(fake_tensorrt, tmp_path):
    """Fault 3: graphs of several shapes were captured through one execution context and replayed interleaved (a
    study's accuracy and timing batches, serving's buckets): the context's shape had moved on, so a replay ran with
    stale state (NVIDIA/TensorRT#3798: "when change the input shapes, you have to re-capture the graph"; "use one
    execution context per captured graph"). Each shape has its own context and graph now: interleaved replays give
    ONNX Runtime's logits."""
    path = make_engine(tmp_path, [(1, 4, 4), (5, 8, 8)])
    with runner(path, cuda_graph=True) as r:
        r.prepare((4, *IMAGE))
        r.prepare((8, *IMAGE))
        assert set(r.graphs.graphs) == {(4, *IMAGE), (8, *IMAGE)} and r.cuda_graph and r.fixed_shape
        for b in (4, 8, 4, 8):
            x = torch.randn(b, *IMAGE)
            assert np.allclose(r.infer(x).numpy(), ort_logits(tmp_path / "t.onnx", x), atol=1e-5), b
        assert r.contexts[(4, *IMAGE)].context is not r.contexts[(8, *IMAGE)].context
        assert r.graphs.error is None
    # the rule the fake holds TensorRT to: one context, two shapes, the first graph replayed after the second shape
    fake_cudart = fake_tensorrt.fake_cudart
    with runner(make_engine(tmp_path, [(1, 8, 8)], name="one")) as r:
        ctx = r.engine.create_execution_context()
        x4, out4 = torch.randn(4, *IMAGE), torch.empty(4, 10)
        ctx.set_input_shape("input", (4, *IMAGE))
        ctx.set_tensor_address("input", x4.data_ptr())
        ctx.set_tensor_address("logits", out4.data_ptr())
        stream = fake_cudart.Stream()
        assert ctx.execute_async_v3(stream.cuda_stream)  # once outside capture, then capture
        graph = fake_cudart.Graph()
        with fake_cudart.graph(graph, stream=stream):
            assert ctx.execute_async_v3(stream.cuda_stream)
        graph.replay()
        ctx.set_input_shape("input", (8, *IMAGE))
        with pytest.raises(fake_tensorrt._GraphReplayError, match="captured with input shapes"):
            graph.replay()


def test_each_context_sets_its_input_shape_once(fake_tensorrt, tmp_path, monkeypatch):
    """Fault 9: set_input_shape ran before every enqueue. Each batch size's context sets it once."""
    calls = []
    original = fake_tensorrt.IExecutionContext.set_input_shape
    monkeypatch.setattr(fake_tensorrt.IExecutionContext, "set_input_shape",
                        lambda self, name, shape: calls.append(tuple(shape)) or original(self, name, shape))
    path = make_engine(tmp_path, [(1, 8, 8)])
    with runner(path) as r:
        for b in (8, 8, 8, 3, 8, 3):
            r.infer(torch.randn(b, *IMAGE))
    assert calls == [(8, *IMAGE), (3, *IMAGE)]


def test_one_logger_for_the_process_so_tensorrt_errors_are_quoted(fake_tensorrt, tmp_path):
    """Fault 7: each Builder and Runtime got a new logger, but TensorRT keeps the first while one made with it is
    alive (NVIDIA/TensorRT#1475), so a later failure's message went to a logger nobody read: "no message from
    TensorRT". With one logger for the process, the failure quotes TensorRT."""
    good = make_engine(tmp_path, [(1, 8, 8)])
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not a plan")
    with runner(good):  # a Runtime alive with the process's logger
        with pytest.raises(ArtTRTError, match="Magic tag does not match"):
            runner(bad).activate()
    assert api.logger() is api.logger() and api.logger() is fake_tensorrt._state["logger"]


def test_tensorrt_memory_is_counted(fake_tensorrt, tmp_path):
    """Fault 8: prepare_peak_gpu_mb read PyTorch's allocator only and missed TensorRT's memory. The contexts' activation
    memory is now one block allocated through PyTorch (USER_MANAGED, device_memory_size_v2: enough for every profile),
    and the engine's weights (get_engine_stat TOTAL_WEIGHTS_SIZE) are added to the peak."""
    from utils.study.validate import peak_gpu_mb

    path = make_engine(tmp_path, [(1, 1, 1), (2, 16, 16)])
    with runner(path) as r:
        assert r.memory.dtype == torch.uint8 and r.memory.numel() == r.engine.device_memory_size_v2
        assert all(r.memory.numel() >= r.engine.get_device_memory_size_for_profile_v2(k) for k in range(2))
        for b in (1, 16):  # both profiles run on the one block
            r.infer(torch.randn(b, *IMAGE))
        weights = r.device_bytes_outside_torch()
        assert weights == r.engine.get_engine_stat(fake_tensorrt.EngineStat.TOTAL_WEIGHTS_SIZE) > 0
        info = r.info()
        assert info["engine_activation_mib"] == round(r.engine.device_memory_size_v2 / 2**20, 3)
        assert info["engine_weights_mib"] == round(weights / 2**20, 3)
        assert peak_gpu_mb(lambda device: 3 * 2**20, "cuda:0", r) == round((3 * 2**20 + weights) / 2**20, 1)
        assert peak_gpu_mb(lambda device: 3 * 2**20, None, r) is None
        # the fake holds TensorRT to the rule: memory too small for the active profile is not run on
        ctx = r.engine.create_execution_context(fake_tensorrt.ExecutionContextAllocationStrategy.USER_MANAGED)
        small = torch.empty(r.engine.get_device_memory_size_for_profile_v2(0), dtype=torch.uint8)
        ctx.set_device_memory(small.data_ptr(), small.numel())
        ctx.set_optimization_profile_async(1, 0)
        x, out = torch.randn(16, *IMAGE), torch.empty(16, 10)
        ctx.set_input_shape("input", tuple(x.shape))
        ctx.set_tensor_address("input", x.data_ptr())
        ctx.set_tensor_address("logits", out.data_ptr())
        with pytest.raises(fake_tensorrt._MemoryViolation, match="smaller than profile 1 needs"):
            ctx.execute_async_v3(0)


def test_a_context_tensorrt_cannot_make_is_one_sentence(fake_tensorrt, tmp_path):
    path = make_engine(tmp_path, [(1, 8, 8)])
    fake_tensorrt._state["fail_contexts"] = True
    with runner(path) as r:
        with pytest.raises(ArtTRTError, match="TensorRT made no execution context for input .*OutOfMemory"):
            r.infer(torch.randn(2, *IMAGE))


def test_fp32_engines_compute_fp32_unless_tf32_is_asked(fake_tensorrt, tmp_path, monkeypatch):
    """Fault 5: BuilderFlag.TF32 is on by default ("Enabled by default", NvInfer.h) while PyTorch's fp32 matmuls are not:
    a TensorRT fp32 row was not like-for-like with Vanilla fp32. TF32 is cleared now (trtexec --noTF32) unless --tf32,
    which turns it on for every backend alike."""
    seen = []
    original = fake_tensorrt.Builder.build_serialized_network

    def spy(self, network, config):
        seen.append(config.get_flag(fake_tensorrt.BuilderFlag.TF32))
        return original(self, network, config)

    monkeypatch.setattr(fake_tensorrt.Builder, "build_serialized_network", spy)
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    _, strict = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE))
    _, loose = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, tf32=True))
    _, int8 = build_serialized(qdq_onnx(tmp_path / "q.onnx"), BuildSettings("int8", ((1, 8, 8),), IMAGE))
    # an int8 or fp16 engine's fp32 layers follow the same switch, and its record says which it was
    assert seen == [False, True, False] and (strict["tf32"], loose["tf32"], int8["tf32"]) == (False, True, False)
    assert "--noTF32" in engine.trtexec_build(onnx_path, tmp_path / "e", "input", True, EngineShapes.of(
        (-1, *IMAGE), None, None, 8, [8]), "fp32", False, False, None, tmp_path / "tc", "11.4.0.106")


def test_pytorch_and_onnx_runtime_take_the_same_tf32_switch(monkeypatch, lite0):
    """--tf32 reaches every backend: PyTorch's switches (the new fp32_precision where PyTorch has it) for eager and
    torch.compile while a runner is active, ONNX Runtime CUDA's use_tf32 provider option; off (strict) by default."""
    from utils.backends import base, compile as compile_backend, onnxrt, torch_eager
    from utils.backends.base import torch_tf32

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    with torch_tf32(False, torch.device("cuda", 0)):
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    with torch_tf32(True, torch.device("cuda", 0)):
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    assert (matmul.fp32_precision, conv.fp32_precision) == before
    with torch_tf32(True, torch.device("cpu")):  # nothing to switch on the CPU
        assert (matmul.fp32_precision, conv.fp32_precision) == before

    scopes = []

    def spy(enabled, device):
        scopes.append((enabled, device.type))
        return torch_tf32(enabled, device)

    monkeypatch.setattr(torch_eager, "torch_tf32", spy)
    for make in (torch_eager.make, compile_backend.make):
        for tf32 in (False, True):
            r, _ = make(base.RunSpec("torch", "fp32", device="cpu", tf32=tf32), lite0, None, 1)
            with r:
                pass
    assert scopes == [(False, "cpu"), (True, "cpu"), (False, "cpu"), (True, "cpu")]

    seen = []

    class Session:
        def __init__(self, path, sess_options=None, providers=None):
            seen.append(providers)
            raise RuntimeError("stop here: the options are what this test reads")

    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    from utils.models.chain import onnx_for

    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    for tf32 in (False, True):
        r = onnxrt.OnnxRuntimeRunner(path, lite0.preprocess, provider="cuda", tf32=tf32)
        with pytest.raises(Exception):
            r.activate()
    assert [p[0][1]["use_tf32"] for p in seen] == [0, 1]


@pytest.mark.parametrize("fake_tensorrt", ["11", "10"], indirect=True)
def test_the_inspector_json_of_10_and_11_gives_every_layers_precision(fake_tensorrt, tmp_path):
    """Fault 4: TensorRT 11 split the inspector's "Format/Datatype" in two, and every layer read "?" while the record
    said the precisions were read back. Both forms are read: a Q/DQ file's engine shows its int8 layers."""
    from utils.backends.tensorrt.engine_layers import engine_layers, plan_information

    onnx_path = qdq_onnx(tmp_path / "q.onnx")
    plan, _ = build_serialized(onnx_path, BuildSettings("int8", ((1, 4, 4),), IMAGE))
    info = plan_information(plan, (4, *IMAGE))
    assert ("Bindings" in info) == (fake_tensorrt.__version__.startswith("10"))
    rows = engine_layers(info)
    assert "?" not in {r["precision"] for r in rows} and {r["precision"] for r in rows} == {"fp32", "int8"}
    assert [r["precision"] for r in rows if r["type"] == "DequantizeLinear"] == ["int8"]


def qdq_onnx(path: Path) -> Path:
    """tiny_onnx with its input quantized to int8 and back (QuantizeLinear -> DequantizeLinear -> Conv), as ModelOpt
    writes activations."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(tiny_onnx(path.with_name(path.stem + "-f.onnx"))))
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                          numpy_helper.from_array(np.array(0, np.int8), "z")])
    conv = g.node[0]
    conv.input[0] = "xdq"
    qdq = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["xq"], name="input_q"),
           helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="input_dq")]
    for n in reversed(qdq):
        g.node.insert(0, n)
    onnx.save(model, str(path))
    return path


def test_a_timing_cache_of_another_tensorrt_is_replaced_not_fatal(fake_tensorrt, tmp_path, caplog):
    """Fault 9: a --timing_cache from another TensorRT version went unguarded. TensorRT logs an error and hands back an
    empty cache (TensorRT-RTX 1.7 on an H100, docs/h100-rtx-2026-12-06), which the record called "reused". As
    Polygraphy's CreateConfig: a fresh cache, a warning, not reused, and the file rewritten by this version; the next
    build reuses it. Foreign bytes alike."""
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    tc = tmp_path / "timing.cache"
    fake_tensorrt._select("10")
    build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, timing_cache=tc))
    assert b"10.16.1.11" in tc.read_bytes()
    fake_tensorrt._select("11")
    with caplog.at_level(logging.WARNING):
        _, facts = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, timing_cache=tc))
    assert facts["timing_cache_reused"] is False and "made by another TensorRT version or GPU" in caplog.text
    assert b"11.4.0.106" in tc.read_bytes()
    _, again = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, timing_cache=tc))
    assert again["timing_cache_reused"] is True
    tc.write_bytes(b"not a timing cache of any TensorRT")
    _, garbage = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, timing_cache=tc))
    assert garbage["timing_cache_reused"] is False and b"11.4.0.106" in tc.read_bytes()
    fake_tensorrt._state["device"] = "NVIDIA A100-SXM4-80GB sm80"  # the same version on another GPU: refused too
    _, other_gpu = build_serialized(onnx_path, BuildSettings("fp32", ((1, 8, 8),), IMAGE, timing_cache=tc))
    assert other_gpu["timing_cache_reused"] is False and b"A100" in tc.read_bytes()


def test_plugins_are_registered_before_parsing_and_loading(fake_tensorrt, tmp_path, monkeypatch):
    """Fault 9: the plugin library was never initialised (Polygraphy calls init_libnvinfer_plugins before parsing and
    before deserializing): an ONNX node of one of TensorRT's standard plugins was "Plugin not found"."""
    import onnx
    from onnx import helper

    model = onnx.load(str(tiny_onnx(tmp_path / "t.onnx")))
    model.graph.node.append(helper.make_node("EfficientNMS_TRT", ["logits"], ["nms"], name="nms", domain="trt.plugins"))
    model.opset_import.append(helper.make_opsetid("trt.plugins", 1))
    path = tmp_path / "p.onnx"
    onnx.save(model, str(path))
    plan, facts = build_serialized(path, BuildSettings("fp32", ((1, 8, 8),), IMAGE))
    assert facts["network_layers"] == 6 and fake_tensorrt._state["plugins"] is True
    fake_tensorrt._reset()  # a fresh process: the runner registers them again before it deserializes
    monkeypatch.setattr(api, "_plugins_for", None)
    engine_file = tmp_path / "p.engine"
    engine_file.write_bytes(plan)
    with runner(engine_file) as r:
        assert r.engine is not None and fake_tensorrt._state["plugins"] is True


@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)
def test_a_calibrator_that_fails_stops_the_build_in_one_sentence(fake_tensorrt, tmp_path, monkeypatch, capfd):
    """Fault 9: TensorRT 10's Python trampoline swallows an exception raised in get_batch and takes it as the end of the
    data (pyInt8.cpp), so an out-of-memory on the second batch calibrated on one while the record claimed all. The
    calibrator keeps the error, and the build stops with it; without an error every batch is handed and counted."""
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    data = np.random.default_rng(0).standard_normal((20, *IMAGE)).astype(np.float32)
    good = weak.Calibration(data, "entropy", 8, tmp_path / "good.trtcalib", device="cpu")
    _, facts = build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True,
                                                         calibration=good))
    assert facts["calib_images_used"] == 16 and facts["calibrator"] == "IInt8EntropyCalibrator2"
    assert facts["route"] == "weak typing (builder flags)" and good.cache.is_file()
    _, cached = build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True,
                                                          calibration=good))
    assert cached["calib_from_cache"] is True and "calib_images_used" not in cached
    handed = []
    real_to = torch.Tensor.to

    def to(self, *a, **kw):
        handed.append(self.shape[0])
        if len(handed) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_to(self, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "to", to)
    bad = weak.Calibration(data, "max", 8, tmp_path / "bad.trtcalib", device="cpu")
    with pytest.raises(ArtTRTError, match="int8 calibration stopped after 8 images: CUDA out of memory"):
        build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True, calibration=bad))
    assert not bad.cache.exists()


@pytest.mark.parametrize("fake_tensorrt", ["10"], indirect=True)
def test_weak_typing_sets_the_flag_the_calibrator_and_its_own_profile(fake_tensorrt, tmp_path, monkeypatch):
    """TensorRT 10's weak typing through the real builder calls: the INT8 flag, a calibration profile of its own
    (min = opt = max = the calibration batch; NvInfer.h setCalibrationProfile), batches of exactly that size, the
    documented end of data; fp16 is the flag alone; TensorRT 11 has none of it."""
    seen = {}
    original = fake_tensorrt.Builder.build_serialized_network

    def spy(self, network, config):
        seen["flags"] = [f.name for f in fake_tensorrt.BuilderFlag if config.get_flag(f)]
        seen["calib_profile"] = config.get_calibration_profile().get_shape("input") \
            if config.get_calibration_profile() else None
        seen["calibrator"] = type(config.int8_calibrator).__mro__[1].__name__ if config.int8_calibrator else None
        return original(self, network, config)

    monkeypatch.setattr(fake_tensorrt.Builder, "build_serialized_network", spy)
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    data = np.random.default_rng(0).standard_normal((20, *IMAGE)).astype(np.float32)
    c = weak.Calibration(data, "max", 8, tmp_path / "c.trtcalib", device="cpu")
    build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True, calibration=c))
    assert seen["flags"] == ["INT8"] and seen["calibrator"] == "IInt8MinMaxCalibrator"
    assert [tuple(d) for d in seen["calib_profile"]] == [(8, *IMAGE)] * 3
    build_serialized(onnx_path, BuildSettings("fp16", ((1, 8, 8),), IMAGE, weak_typing=True))
    assert seen["flags"] == ["FP16"] and seen["calibrator"] is None
    with pytest.raises(ArtTRTError, match="at least one full calibration batch"):
        build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True,
                                                  calibration=weak.Calibration(data[:3], "entropy", 8,
                                                                               tmp_path / "x", device="cpu")))
    fake_tensorrt._select("11")
    with pytest.raises(ArtTRTError, match="removed in TensorRT 11"):
        build_serialized(onnx_path, BuildSettings("int8", ((1, 8, 8),), IMAGE, weak_typing=True, calibration=c))


def test_what_tensorrt_refuses_is_one_sentence(fake_tensorrt, tmp_path):
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    # as TensorRT-RTX 1.7 did on an H100 (docs/h100-rtx-2026-12-06): taken by set_shape, refused by isValid
    with pytest.raises(ArtTRTError, match=r"refused the batch profile min 8, opt 4, max 8 \(.*satisfy MIN<=OPT<=MAX"):
        build_serialized(onnx_path, BuildSettings("fp32", ((8, 4, 8),), IMAGE))
    two = tiny_onnx(tmp_path / "two.onnx", outputs=2)
    plan, _ = build_serialized(two, BuildSettings("fp32", ((1, 8, 8),), IMAGE))
    (tmp_path / "two.engine").write_bytes(plan)
    with pytest.raises(ArtTRTError, match="1 inputs and 2 outputs"):
        runner(tmp_path / "two.engine").activate()
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ArtTRTError, match="TensorRT's ONNX parser rejected junk.onnx"):
        build_serialized(bad, BuildSettings("fp32", ((1, 8, 8),), IMAGE))
    path = make_engine(tmp_path, [(1, 8, 8)])
    with runner(path) as r:
        with pytest.raises(ArtTRTError, match=r"takes input \(-1, 3, 8, 8\)"):
            r.infer(torch.randn(2, 3, 16, 16))
        with pytest.raises(ArtTRTError, match="takes torch.float32 input, not torch.float16"):
            r.infer(torch.randn(2, *IMAGE).half())
    with pytest.raises(RuntimeError, match="activate"):
        runner(path).serves(1)


def test_the_record_names_what_trtexec_needs(fake_tensorrt, tmp_path, monkeypatch):
    """Build 4: the trtexec lines that build and time a row's engine as ArtTRT did (TF32, each profile, the profile
    and shape used, CUDA graph, copies)."""
    monkeypatch.setenv("ARTTRT_WEIGHTS_DIR", str(tmp_path / "w"))
    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    shapes = EngineShapes.of((-1, *IMAGE), None, None, 8, [1, 8])
    path, facts = engine_for(onnx_path, "fp32", shapes, tmp_path / "engines")
    assert facts["trtexec_build"] == (
        f"trtexec --onnx={onnx_path} --profile=0 --minShapes=input:1x3x8x8 --optShapes=input:1x3x8x8 "
        "--maxShapes=input:1x3x8x8 --profile=1 --minShapes=input:2x3x8x8 --optShapes=input:8x3x8x8 "
        f"--maxShapes=input:8x3x8x8 --noTF32 --profilingVerbosity=detailed "
        f"--timingCacheFile={tmp_path / 'engines' / 'timing-tensorrt-11.4.0.106-nvidia-h100-80gb-hbm3.cache'} "
        f"--saveEngine={path}")
    assert facts["profiles"] == [[1, 1, 1], [2, 8, 8]] and facts["tf32"] is False
    again, cached = engine_for(onnx_path, "fp32", shapes, tmp_path / "engines")
    assert again == path and cached["cached"] and cached["build_s"] == 0.0
    with runner(path, facts=facts) as r:
        r.prepare((8, *IMAGE))
        assert r.info()["trtexec_run"] == (f"trtexec --loadEngine={path} --useProfile=1 --shapes=input:8x3x8x8 "
                                           "--noCudaGraph --includeDataTransfers")
    with runner(path, cuda_graph=True) as r:
        r.prepare((1, *IMAGE))
        assert r.info()["trtexec_run"] == (f"trtexec --loadEngine={path} --useProfile=0 --shapes=input:1x3x8x8 "
                                           "--includeDataTransfers")
    fake_tensorrt._select("10")
    static = make_engine(tmp_path, [], batch=4, name="s")
    with runner(static, cuda_graph=True) as r:
        r.prepare((4, *IMAGE))
        assert r.info()["trtexec_run"] == f"trtexec --loadEngine={static} --useCudaGraph"
    four = EngineShapes.of((4, *IMAGE), None, None, None)
    # TensorRT 10's trtexec builds weakly typed unless --stronglyTyped; its weak int8 reads ArtTRT's calibration cache
    assert engine.trtexec_build(onnx_path, static, "input", False, four, "int8", True, True, 2.0, tmp_path / "tc",
                                "10.16.1.11", "/c/x.trtcalib") == (
        f"trtexec --onnx={onnx_path} --int8 --calib=/c/x.trtcalib --memPoolSize=workspace:2048M "
        f"--profilingVerbosity=detailed --timingCacheFile={tmp_path / 'tc'} --saveEngine={static}")
    assert engine.trtexec_build(onnx_path, static, "input", False, four, "int8", True, False, None, tmp_path / "tc",
                                "10.16.1.11") == (
        f"trtexec --onnx={onnx_path} --stronglyTyped --profilingVerbosity=detailed "
        f"--timingCacheFile={tmp_path / 'tc'} --saveEngine={static}")


def test_the_process_gpu_identity_is_in_every_key(fake_tensorrt):
    assert engine.environment_key() == {"module": "tensorrt", "tensorrt_version": "11.4.0.106", **FAKE_GPU}
    assert api.load_tensorrt() == ("tensorrt", "11.4.0.106")


def test_tensorrt_is_found_by_its_module_name_and_stubs_are_not_taken_for_it(tmp_path, monkeypatch):
    """load_tensorrt imports the first of tensorrt, tensorrt_bindings, tensorrt_rtx... that has a Builder: the fake
    is importable as `tensorrt` when tests/fakes leads sys.path; a folder of type stubs (no Builder) is not TensorRT."""
    from tests.conftest import FAKES

    (tmp_path / "stubs_only").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(api, "_module", None)
    monkeypatch.setattr(api, "MODULES", ("stubs_only", "arttrt_absent_tensorrt"))
    with pytest.raises(ArtTRTError, match="TensorRT is not installed: pip install tensorrt-cu13"):
        api.load_tensorrt()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(api, "MODULES", ("stubs_only", "tensorrt"))
    try:
        assert api.load_tensorrt() == ("tensorrt", "11.4.0.106")
        assert Path(api._module.__file__).parent == FAKES / "tensorrt"
    finally:
        sys.modules.pop("tensorrt", None)
        sys.modules.pop("stubs_only", None)


def test_the_logger_passes_tensorrts_messages_on_by_severity(fake_tensorrt, caplog):
    severity = fake_tensorrt.ILogger.Severity
    mark = api.error_mark()
    with caplog.at_level(logging.INFO, logger="utils.backends.tensorrt.api"):
        quiet = api.logger(verbose=False)
        quiet.log(severity.INFO, "an info line")
        quiet.log(severity.WARNING, "a warning line")
        api.logger(verbose=True).log(severity.VERBOSE, "a verbose line")
        quiet.log(severity.ERROR, "first error")
        quiet.log(severity.INTERNAL_ERROR, "second error")
    api.logger(verbose=False)
    assert [r.getMessage() for r in caplog.records] == ["TensorRT: a warning line", "TensorRT: a verbose line",
                                                       "TensorRT: first error", "TensorRT: second error"]
    assert api.last_errors(mark) == "first error; second error"
    assert api.last_errors(api.error_mark()) == "no message from TensorRT"
    for i in range(60):  # past the 50 kept: a mark still counts from where it was taken
        quiet.log(severity.ERROR, f"old {i}")
    mark = api.error_mark()
    quiet.log(severity.ERROR, "the one after the mark")
    assert api.last_errors(mark) == "the one after the mark"


def test_the_gpu_an_engine_runs_on(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(ArtTRTError, match="TensorRT needs an NVIDIA GPU, and none is visible here"):
        api.gpu_identity()
    assert api.run_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert api.run_device("cuda") == torch.device("cuda", 3)


def test_the_inspector_reads_an_engine_at_the_profile_that_takes_the_shape(fake_tensorrt, tmp_path):
    """plan_information selects the profile whose range takes the shape before setting it (a context starts on
    profile 0, which would refuse a batch of 8 here), and a shape no profile takes is one sentence."""
    from utils.backends.tensorrt.engine_layers import engine_layers, plan_information

    onnx_path = tiny_onnx(tmp_path / "t.onnx")
    plan, _ = build_serialized(onnx_path, BuildSettings("fp32", ((1, 1, 1), (2, 8, 8)), IMAGE))
    rows = engine_layers(plan_information(plan, (8, *IMAGE)))
    assert len(rows) == 5 and {r["precision"] for r in rows} == {"fp32"}
    info = plan_information(plan, (8, *IMAGE))
    assert info["Layers"][0]["Inputs"][0]["Dimensions"] == [8, *IMAGE]  # resolved at the shape asked
    with pytest.raises(ArtTRTError, match=r"no optimization profile of the engine takes input shape \(9, 3, 8, 8\)"):
        plan_information(plan, (9, *IMAGE))
    fake_tensorrt._state["fail_contexts"] = True
    with pytest.raises(ArtTRTError, match="TensorRT made no execution context for the engine"):
        plan_information(plan, (1, *IMAGE))
