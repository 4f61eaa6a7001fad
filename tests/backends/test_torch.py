"""The PyTorch eager and torch.compile backends: the compiled runner matches eager, its compile time is
recorded as preparation, and what it cannot do is refused."""
from __future__ import annotations

import pytest
import torch

from utils.backends.base import RunSpec
from utils.backends.compile import CompileRunner
from utils.core.errors import ArtTRTError
from utils.data.cache import SyntheticDataset
from utils.measure.measurement import MeasureOptions
from utils.models.networks import load_network
from utils.study.validate import validate_one


@pytest.mark.slow
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
    rec, _ = validate_one(RunSpec("compile", "fp32"), net, ds, MeasureOptions(batch_size=2, progress=False))
    rec = rec.as_dict()  # the record as written
    assert rec["backend"] == "compile" and rec["compile_mode"] == "default" and rec["options"] == "default"
    assert rec["preparation"]["runner_prepare_s"] > 0 and rec["prepare_s"] == rec["preparation"]["runner_prepare_s"]
    assert rec["images_per_s"] > 0


def test_compile_runner_compiles_every_prepared_shape_past_dynamos_recompile_limit(monkeypatch):
    """Past Dynamo's recompile limit a frame silently runs eagerly: each prepared shape must get its own graph."""
    from torch._dynamo.utils import counters

    from torch import nn

    from utils.models.networks import Network, Preprocess

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    net = Network("tiny", tiny.eval(), Preprocess(resize=32, crop=32), 10, "seeded")
    counters.clear()
    with CompileRunner(net, "cpu", "fp32", mode="default") as r:
        for b in (1, 2, 3):
            r.prepare((b, 3, 32, 32))
        x = torch.rand(3, 3, 32, 32)
        got = r.infer(x)
        assert counters["stats"]["unique_graphs"] == 3
    with torch.inference_mode():
        assert torch.allclose(got, net.model(x), atol=1e-4, rtol=1e-4)


def test_compile_runner_refuses_what_it_cannot_do():
    net = load_network("resnet18")
    with pytest.raises(ArtTRTError, match="compile_mode"):
        CompileRunner(net, "cpu", "fp32", mode="fastest")
    with pytest.raises(ArtTRTError, match="CUDA"):
        CompileRunner(net, "cpu", "fp16")


def test_compile_cuda_graph_is_refused_where_it_cannot_run():
    """--cuda_graph reaches the compile runner (it was dropped without a word); where graphs cannot run, one
    sentence: on the CPU, and with the modes that replay torch.compile's own graphs."""
    from utils.backends.compile import make
    from utils.data.options import DataOptions

    net = load_network("resnet18")
    with pytest.raises(ArtTRTError, match="--cuda_graph needs --device cuda"):
        make(RunSpec("compile", "fp32", device="cpu", cuda_graph=True), net, DataOptions(), 1)
    for mode in ("reduce-overhead", "max-autotune"):
        with pytest.raises(ArtTRTError, match=f"--cuda_graph with --compile_mode {mode}"):
            CompileRunner(net, "cpu", "fp32", mode=mode, cuda_graph=True)
    runner, _ = make(RunSpec("compile", "fp32", device="cpu"), net, DataOptions(), 1)
    assert runner.graphs is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the H200)")
@pytest.mark.parametrize("backend", ["torch", "compile"])
def test_cuda_graph_replay_is_captured_in_prepare_and_answers_each_batch(backend):
    """With --cuda_graph, prepare() captures the shape (the replay is then one launch), and each replay answers its
    own input: the static input buffer is refilled, and the output is the model's on that batch."""
    from torch import nn

    from utils.backends.torch_eager import TorchRunner
    from utils.models.networks import Network, Preprocess

    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    net = Network("tiny", tiny.eval(), Preprocess(resize=32, crop=32), 10, "seeded")
    make = (lambda: CompileRunner(net, "cuda", "fp32", cuda_graph=True)) if backend == "compile" else \
        (lambda: TorchRunner(net, "cuda", "fp32", cuda_graph=True))
    xs = [torch.rand(4, 3, 32, 32, device="cuda") for _ in range(3)]
    with make() as r:
        r.prepare((4, 3, 32, 32))
        assert r.cuda_graph and list(r.graphs.graphs) == [(4, 3, 32, 32)]
        got = [r.infer(x).clone() for x in xs]
        assert list(r.graphs.graphs) == [(4, 3, 32, 32)]  # replayed, not captured again
    with torch.inference_mode():
        ref = [net.model.cuda()(x) for x in xs]
    for g, e in zip(got, ref):
        assert torch.allclose(g, e, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(got[0], got[1])
