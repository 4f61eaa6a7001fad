"""The table of backends: combinations refused in one sentence, options read from argparse by each backend,
and a new backend added as one module and one row (the example of docs/architecture.md) running end to end."""
from __future__ import annotations

import json

import pytest
import torch

import main
from utils.backends import registry
from utils.backends.base import RunSpec
from utils.core.errors import ArtTRTError
from tests.conftest import squeeze

EXAMPLE = registry.Backend("export", "torch.export", ("fp32",), (), False, "tests.backends.example_backend")


@pytest.mark.parametrize("backend, precision, device, message", [
    ("torch", "int8", "cpu", "the torch backend has no int8: it runs fp32, fp16, bf16; int8 runs on onnxrt or tensorrt "
                             "or torchao"),
    ("tensorrt", "fp16", "cpu", "TRT fp16 needs a CUDA GPU: add --device cuda on a machine with one"),
    ("onnxrt", "bf16", "cpu", "ONNX Runtime bf16 needs a CUDA GPU: add --device cuda"),
    ("mxnet", "fp32", "cpu", "unknown backend 'mxnet'"),
])
def test_combinations_that_cannot_run_are_one_sentence(backend, precision, device, message):
    with pytest.raises(ArtTRTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.check_combination(backend, precision, device)
    registry.check_combination("onnxrt", "int8", "cpu")  # and one that can


def test_each_backend_reads_its_own_options_from_the_arguments():
    args = main.build_parser().parse_args(["-v", "--provider", "cpu", "--compile_mode", "max-autotune",
                                           "--channels_last", "--trt_shapes", "dynamic", "static", "--max_batch", "64"])
    assert registry.options_from_args("onnxrt", args).provider == "cpu"
    assert registry.options_from_args("compile", args).compile_mode == "max-autotune"
    assert registry.options_from_args("torch", args).channels_last is True
    trt = registry.options_from_args("tensorrt", args)
    assert trt.trt_shapes == ("dynamic", "static") and trt.max_batch == 64
    runs = registry.variants(RunSpec("tensorrt", "fp16", device="cuda", options=trt))
    assert [v.trt_shapes for v in runs] == [("dynamic",), ("static",)]
    assert [registry.options_label(RunSpec("tensorrt", options=v)) for v in runs] == ["", "static"]
    assert registry.variants(RunSpec("onnxrt")) == [registry.get("onnxrt").impl().Options()]


@pytest.mark.slow
def test_a_new_backend_is_one_module_and_one_row(monkeypatch, tmp_path, capsys):
    """The example backend of docs/architecture.md, registered with one row, validated through main.py."""
    monkeypatch.setitem(registry.BACKENDS, "export", EXAMPLE)
    assert main.main(["-v", "--backends", "export", "torch", "--network", "mobilenet_v3_small", "--synthetic", "6",
                      "--batch_size", "4", "--export_max_batch", "8", "--output", str(tmp_path), "--quiet"]) == 0
    assert "| mobilenet_v3_small | torch.export fp32 | 4 |" in squeeze(capsys.readouterr().out)
    recs = {r["backend"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json"))}
    assert set(recs) == {"export", "torch"} and recs["export"]["images"] == 6
    from tests.backends.example_backend import ExportRunner, Options
    from utils.models.networks import load_network

    net = load_network("mobilenet_v3_small", seed=0)
    with ExportRunner(net, "cpu", Options(export_max_batch=8)) as r, torch.inference_mode():
        x = torch.rand(3, 3, 224, 224)
        assert torch.allclose(r.infer(x), net.model(x), atol=1e-5)


def test_each_job_makes_its_runner_for_its_own_batch(monkeypatch, tmp_path):
    """The batch size lives in the job alone: a runner that serves one batch (a static engine) is made for each
    job's batch, and each record's batch is the one its runner was built for and fed."""
    from tests.backends import static_backend

    monkeypatch.setitem(registry.BACKENDS, "static", registry.Backend(
        "static", "static", ("fp32",), (), False, "tests.backends.static_backend"))
    monkeypatch.setattr(static_backend, "BUILT", [])
    assert main.main(["-v", "--backends", "static", "--network", "mobilenet_v3_small", "--synthetic", "5",
                      "--batch_sizes", "2", "3", "--duration", "0", "--iterations", "2", "--min_warmup_s", "0",
                      "--output", str(tmp_path), "--quiet"]) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    built = sorted((r["batch_size"], r["preparation"]["built_for"], r["role"]) for r in recs)
    assert built == [(2, 2, "timing"), (3, 3, "accuracy"), (3, 3, "timing")]
    # the accuracy pass at the largest batch first, then timing at 2 and 3: a runner is made again only where the
    # open one cannot serve the job's batch (a static engine is cached on disk, so the second 3 is a load)
    assert static_backend.BUILT == [3, 2, 3]
    assert all(r["images"] == 5 for r in recs if r["role"] == "accuracy")
