"""--profile and the phase marks: what the PyTorch profiler and Nsight Systems get to see."""
from __future__ import annotations

import json

import pytest
import torch

from utils.core import phases
from utils.measure.profile import profile_runner


def test_profile_of_the_torch_runner_counts_each_conv_once_per_batch(lite0, tmp_path, capfd):
    from utils.backends.torch_eager import TorchRunner

    convs = sum(isinstance(m, torch.nn.Conv2d) for m in lite0.model.modules())
    with TorchRunner(lite0, device="cpu") as runner:
        x = runner.normalizer(torch.zeros(2, 3, 224, 224, dtype=torch.uint8))
        p = profile_runner(runner, x, tmp_path / "p" / "t.trace.json", batches=3)
    ops = {o["op"]: o for o in p["top_ops"]}
    assert ops["aten::mkldnn_convolution"]["calls_per_batch"] == convs == 49  # at batch 2 every conv takes it
    self_cpu = [o["self_cpu_ms_per_batch"] for o in p["top_ops"]]
    assert self_cpu == sorted(self_cpu, reverse=True) and self_cpu[0] > 0
    # the operators' own host time lies inside the batch's wall time; no GPU here
    assert 0 < p["host_ops_ms_per_batch"] <= p["wall_ms_per_batch"] * 1.05 and p["gpu_kernels_ms_per_batch"] is None
    trace = json.loads((tmp_path / "p" / "t.trace.json").read_text())
    names = [e.get("name") for e in trace["traceEvents"]]
    assert names.count(f"{runner.name} batch 2") == 3 and names.count("aten::conv2d") == 3 * convs
    assert "arttrt:profile" in names
    assert "profiler_st" not in capfd.readouterr().err  # the profiler's own C++ lines, only with --verbose


def test_a_runner_outside_pytorch_on_the_cpu_gets_a_note(lite0, tmp_path):
    from utils.backends.base import Runner

    class Opaque(Runner):
        backend = "opaque"

        def infer(self, x):
            return x.mean(dim=(2, 3))

    r = Opaque(lite0.preprocess)
    p = profile_runner(r, torch.zeros(1, 3, 8, 8), tmp_path / "t.json")
    assert "one opaque call" in p["note"] and not (tmp_path / "t.json").exists()


def test_phases_are_nvtx_ranges_that_close(monkeypatch, lite0, tmp_path):
    """Where NVTX is on, every phase is one push and one pop, nested properly, the loop's phases in order."""
    from utils.data.cache import SyntheticDataset
    from utils.backends.torch_eager import TorchRunner
    from utils.measure.measurement import MeasureOptions
    from utils.measure.timing import measure

    events = []
    monkeypatch.setattr(phases, "nvtx_enabled", lambda: True)
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda label: events.append(("push", label)))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: events.append(("pop", None)))
    with TorchRunner(lite0, device="cpu") as runner:
        measure(runner, SyntheticDataset(5, 224, seed=0), MeasureOptions(batch_size=2, progress=False,
                                                                          min_warmup_s=0.0, warmup_fraction=0.0))
    assert [label for kind, label in events if kind == "push"] == ["arttrt:warm-up", "arttrt:measure",
                                                                   "arttrt:short batch"]
    depth = 0
    for kind, _ in events:
        depth += 1 if kind == "push" else -1
        assert depth in (0, 1)
    assert depth == 0
    events.clear()

    @phases.in_phase("build")
    def fails():
        raise ValueError("a build that fails")

    with pytest.raises(ValueError):
        fails()
    assert events == [("push", "arttrt:build"), ("pop", None)]  # closed even when the phase fails
