"""torch.compile runner contract, ONNX Runtime provider check (a silent CPU fallback is refused), and the
preparation cost in records and the side-by-side table."""
from __future__ import annotations


import pytest
import torch

from utils.artefacts import onnx_for
from utils.datasets import SyntheticDataset
from utils.errors import ArtTRTError
from utils.measure import MeasureOptions
from utils.networks import load_network
from utils.pipeline import RunSpec, validate_one
from utils.runners.compile_runner import CompileRunner
from utils.runners.onnxrt_runner import check_providers
from utils.tables import side_by_side_markdown


def test_compile_runner_matches_eager_and_records_compile_time(tmp_path):
    net = load_network("mobilenet_v3_small", seed=0)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        ref = net.model(x)
    with CompileRunner(net, "cpu", "fp32", mode="default") as r:
        assert r.backend == "compile" and r.channels_last
        r.prepare((2, 3, 64, 64))
        got = r.infer(x)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    ds = SyntheticDataset(4, 64, seed=0)
    rec, _ = validate_one(RunSpec("compile", "fp32"), net, ds, MeasureOptions(batch_size=2, progress=False),
                          tmp_path, None)
    assert rec["backend"] == "compile" and rec["compile_mode"] == "default"
    assert rec["preparation"]["compile_s"] > 0 and rec["prepare_s"] == rec["preparation"]["compile_s"]
    assert rec["images_per_s"] > 0


def test_compile_runner_refuses_what_it_cannot_do():
    net = load_network("resnet18")
    with pytest.raises(ArtTRTError, match="compile_mode"):
        CompileRunner(net, "cpu", "fp32", mode="fastest")
    with pytest.raises(ArtTRTError, match="CUDA"):
        CompileRunner(net, "cpu", "fp16")


def test_provider_check_refuses_a_silent_fallback(tmp_path):
    """A real ONNX Runtime session asked for CUDA on a machine without it runs on the CPU: refused."""
    import onnxruntime as ort

    path, _ = onnx_for(load_network("resnet18"), (-1, 3, 64, 64))
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: CUDA would load")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    used = sess.get_providers()
    assert used[0] == "CPUExecutionProvider"  # ONNX Runtime fell back without an error
    with pytest.raises(ArtTRTError, match="instead of CUDAExecutionProvider.*silent fallback"):
        check_providers("cuda", used, ort.get_available_providers())
    with pytest.raises(ArtTRTError, match="not in this ONNX Runtime build"):
        check_providers("tensorrt", used, ["CPUExecutionProvider"])
    check_providers("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"])


def test_onnxrt_records_the_provider_used_and_preparation(tmp_path):
    net = load_network("resnet18", seed=0)
    ds = SyntheticDataset(4, 80, seed=0)
    spec = RunSpec("onnxrt", "fp32", input_shape=(-1, 3, 80, 80))  # a shape no other test exports
    rec, _ = validate_one(spec, net, ds, MeasureOptions(batch_size=2, progress=False), tmp_path, None)
    assert rec["providers_used"] == ["CPUExecutionProvider"] and rec["provider"] == "cpu"
    assert rec["prepare_s"] > 0 and rec["preparation"]["export_s"] == rec["prepare_s"]
    again, _ = validate_one(spec, net, ds, MeasureOptions(batch_size=2, progress=False), tmp_path, None)
    assert again["prepare_s"] == 0.0  # a warm cache prepares nothing
    asked = RunSpec("onnxrt", "fp32", input_shape=(-1, 3, 80, 80), cuda_graph=True)
    graphless, _ = validate_one(asked, net, ds, MeasureOptions(batch_size=2, progress=False), tmp_path, None)
    assert graphless["cuda_graph"] is None  # the record says what ran: ONNX Runtime replays no CUDA graph


def test_side_by_side_table_from_records():
    def rec(backend, precision, bs, ips, p50, p99, prep, top1=None):
        return {"kind": "validate", "network": "resnet50", "backend": backend, "precision": precision,
                "batch_size": bs, "images_per_s": ips, "latency_model_p50": p50, "latency_model_p99": p99,
                "prepare_s": prep, "top1": top1, "mode": "pipelined", "time": f"t{bs}{backend}{precision}"}

    recs = [rec("torch", "fp32", 1, 255.3, 3.619, 4.447, 0.0), rec("torch", "fp32", 256, 8948.4, 27.5, 27.6, 0.0),
            rec("compile", "fp16", 1, 397.8, 2.079, 3.077, 11.4), rec("compile", "fp16", 256, 20181.0, 8.7, 8.8, 10.0)]
    recs[-1]["compile_mode"] = recs[-2]["compile_mode"] = "default"
    text = side_by_side_markdown("resnet50", recs)
    assert "| Vanilla | 255.3 | 8948.4 | 3.619 / 4.447 | - | 0.0 |" in text
    assert "| torch.compile fp16 (default) | 397.8 | 20181.0 | 2.079 / 3.077 | - | 11.4 |" in text
    assert "Not measured in these records: torch fp16, onnxrt fp16, tensorrt fp16, tensorrt int8." in text
