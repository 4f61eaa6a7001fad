"""--mixed_precision and TensorRT: where TensorRT's builder is there, each step's file is built into an engine and its
layer precisions are read back by the engine inspector; without TensorRT no build is tried and the record says so.
The search runs over small real Q/DQ files (top-1 by file name, a fixed layer ranking, so no quantization runs here),
and its engines are built and read by ArtTRT's real TensorRT code against the contract fake (tests/fakes/tensorrt)."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import squeeze
from tests.report import as_read
from utils.backends import registry
from utils.backends.tensorrt import api
from utils.backends.tensorrt.engine_layers import step_engine_probe
from utils.models import drift
from utils.models import mixed_precision as mp
from utils.report.schema import RecordError, check_record
from utils.report.sections.mixed_precision_tables import mixed_precision_markdown

mixed_precision_markdown = as_read(mixed_precision_markdown)

NAMES = [f"conv{i}" for i in range(10)]


def qdq_chain(path: Path, kept: int) -> Path:
    """Ten ReLU layers conv0..conv9 on a (batch, 3, 224, 224) input, each fed through QuantizeLinear/DequantizeLinear
    (int8) except the first `kept` (left in fp32, as a mixed-precision step keeps them), then a classifier."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.ones((10, 3), np.float32), "fc")]
    nodes, x = [], "input"
    for i, name in enumerate(NAMES):
        if i >= kept:
            nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], [f"q{i}"], name=f"{name}_q"),
                      helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"dq{i}"], name=f"{name}_dq")]
            x = f"dq{i}"
        nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=name))
        x = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture
def search(tmp_path, monkeypatch):
    """mp.search over files k<k>.onnx whose top-1 is 80 + k on 10,000 images (fp32 90, budget 3.5 judged on the paired
    interval: k = 7, drop 3 (2.7..3.3), found by steps 0, 10, 5, 7, 6), the layers ranked NAMES; returns run() -> the
    search's result, and the builder's calls."""
    import onnx
    from onnx import TensorProto, helper

    src = tmp_path / "m-fp32-x.onnx"  # the search's key hashes the fp32 file's content: a real, tiny ONNX file
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [-1, 3, 224, 224]) for n in ("input", "logits"))
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x],
                                                  [y])), str(src))
    built = []

    def convert(kept):
        return qdq_chain(tmp_path / f"m-int8-k{len(kept)}.onnx", len(kept)), {}

    labels = np.arange(10_000) % 1000

    def answers(path, heldout):  # right on the first 9,000 of 10,000 images (fp32) or the first 8,000 + 100 k
        right = 9000 if path == src else 8000 + 100 * int(path.stem.split("-k")[1])
        return np.where(np.arange(10_000) < right, labels, -1), labels

    monkeypatch.setattr(mp, "onnx_answers", answers)
    monkeypatch.setattr(drift, "layer_drift", lambda *a: [{"name": n} for n in NAMES])
    monkeypatch.setattr(drift, "top_drift", lambda rows, top, key: rows)
    original = step_engine_probe

    def probe(precision, crop):  # the real probe; each build it makes is noted
        measure, env = original(precision, crop)
        if measure is None:
            return None, env

        def noted(path):
            built.append(Path(path).name)
            return measure(path)

        return noted, env

    monkeypatch.setattr(mp, "_engine_probe", probe)  # what the backends layer offers (below)
    heldout = mp.Heldout(None, np.arange(20), lambda x: x, {"heldout_files": ["a/1.jpg"], "heldout_images": 20,
                                                             "heldout_dataset_key": "d"})

    def run():
        result, _ = mp.search(src, "int8", convert, lambda: np.zeros((8, 3, 224, 224), np.float32), heldout, 3.5,
                              {"precision": "int8"}, tmp_path / "searches", crop=224)
        return result

    return run, built


def _record(result):
    block = {**result, "calib_images": 4, "final_onnx": "/w/m-int8-k7.onnx", "cached": False}
    return {"record_version": 2, "kind": "validate", "network": "efficientnet_lite0", "backend": "onnxrt",
            "precision": "int8", "batch_size": 1, "options": "cpu", "preparation": {"mixed_precision": block}}


def test_with_tensorrt_each_steps_engine_is_built_and_its_layer_precisions_read_back(search, fake_tensorrt):
    run, built = search
    result = run()
    assert [s["k"] for s in result["steps"]] == [0, 10, 5, 7, 6] and result["final_k"] == 7
    # one strongly typed build per step, at the fixed shape (1, 3, crop, crop)
    assert built == [f"m-int8-k{k}.onnx" for k in (0, 10, 5, 7, 6)]
    # read back by the inspector: the file's DequantizeLinear layers read int8, one fewer per layer kept in fp32
    steps = [s["engine"] for s in result["steps"]]
    assert all(s["built"] and s["build_s"] >= 0 for s in steps)
    assert [s["layer_precisions"].get("int8", 0) for s in steps] == [10 - k for k in (0, 10, 5, 7, 6)]
    assert all("?" not in s["layer_precisions"] for s in steps)
    assert result["engine_measured"] == (
        "yes: engines built for 5 of 5 steps with tensorrt 11.4.0.106 on NVIDIA H100 80GB HBM3 (compute capability "
        "9.0), strongly typed at 1x3x224x224; layer precisions read back by the engine inspector for 5 of them (a "
        "step's engine 'why' says where not); speed: not measured by the search; run -trt on the final file")
    rec = _record(result)
    check_record(rec)
    bad = copy.deepcopy(rec)
    bad["preparation"]["mixed_precision"]["steps"][2]["engine"]["build_s"] = math.nan
    with pytest.raises(RecordError) as err:
        check_record(bad)
    assert err.value.field == "preparation.mixed_precision.steps.2.engine.build_s"
    bad["preparation"]["mixed_precision"]["steps"][2]["engine"] = {"built": True, "layer_precisions": {"int8": -1}}
    with pytest.raises(RecordError):
        check_record(bad)
    lines = [ln for ln in squeeze(str(mixed_precision_markdown([rec]))).splitlines() if ln.startswith("|")]
    assert lines[0].endswith("| within budget | engine layers (TensorRT) |")
    counts = steps[0]["layer_precisions"]
    assert lines[2] == ("| 0 | - | 80.00 | 10.00 | 9.42..10.59 | 0.00 | no | "
                        + ", ".join(f"{p} {n}" for p, n in counts.items()) + " |")


def test_a_runtime_that_cannot_load_the_engine_leaves_it_built_but_not_read(search, fake_tensorrt, monkeypatch):
    """A runtime that returns no engine (deserialize_cuda_engine: "None if it could not be deserialized", the reason
    logged; TensorRT-RTX's runtime did so on an H200, compute capability 9.0)."""
    run, built = search

    def refuse(self, serialized_engine):
        fake_tensorrt._error(1, "runtime.cpp::deserializeCudaEngine", "this GPU's compute capability 9.0 is not "
                             "supported")
        return None

    monkeypatch.setattr(fake_tensorrt.Runtime, "deserialize_cuda_engine", refuse)
    result = run()
    assert len(built) == 5
    assert all(s["engine"]["built"] is True and s["engine"]["layer_precisions"] is None for s in result["steps"])
    why = result["steps"][0]["engine"]["why"]
    assert why.startswith("built, but not read back: TensorRT's runtime cannot load the engine here (1: ") and \
        "this GPU's compute capability 9.0 is not supported" in why
    assert result["engine_measured"].startswith("partly: engines built for 5 of 5 steps with tensorrt 11.4.0.106 ")
    assert "read back by the engine inspector for 0 of them" in result["engine_measured"]
    rec = _record(result)
    check_record(rec)
    assert "engine layers" not in str(mixed_precision_markdown([rec]))  # nothing read back: no column


def test_without_tensorrt_no_engine_is_built_and_the_record_says_so(search, monkeypatch):
    run, built = search
    monkeypatch.setattr(api, "_module", None)
    monkeypatch.setattr(api, "MODULES", ("arttrt_no_such_tensorrt",))
    monkeypatch.setattr(mp, "_engine_probe", registry._tensorrt_step_engines)  # the probe main.py's runs get
    result = run()
    assert built == [] and all("engine" not in s for s in result["steps"]) and result["final_k"] == 7
    assert result["engine_measured"] == (
        "no: TensorRT is not installed (its builder is what would show each kept layer's cost); speed: not measured "
        "by the search; run -trt on the final file")
    check_record(_record(result))


def test_without_a_probe_offered_the_search_says_so(search, monkeypatch):
    run, built = search
    monkeypatch.setattr(mp, "_engine_probe", None)
    assert run()["engine_measured"] == ("no: no TensorRT engine builder was offered to the search (the backends "
                                        "layer offers it); speed: not measured by the search; run -trt on the final "
                                        "file")
    assert built == []


def test_the_backends_layer_offers_the_probe():
    assert mp._engine_probe is registry._tensorrt_step_engines
