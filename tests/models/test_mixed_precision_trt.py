"""--mixed_precision and TensorRT: where TensorRT's builder is installed each step's file is built into an engine and
its layer precisions are read back by the engine inspector; without TensorRT no build is tried and the record says
so. The search runs with stand-ins (top-1 by file name, a fixed layer ranking, TensorRT's builder and runtime), so no
quantization runs here."""
from __future__ import annotations

import copy
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

from tests.backends.test_tensorrt import ENV, INSPECTOR_SAMPLE
from tests.conftest import squeeze
from utils.backends import registry
from utils.backends.tensorrt import api, build
from utils.backends.tensorrt.engine_layers import step_engine_probe
from utils.models import drift
from utils.models import mixed_precision as mp
from utils.report.schema import RecordError, check_record
from utils.report.tables import mixed_precision_markdown

NAMES = [f"conv{i}" for i in range(10)]
GEMM = INSPECTOR_SAMPLE["Layers"][2]  # an fp32 layer of the stand-in's inspector JSON


def _inspector_json(plan: bytes) -> str:
    """The stand-in's inspector JSON (int8 2, fp32 1) with one more fp32 layer per layer kept: k of file k<k>.onnx."""
    k = int(plan.decode().rsplit("-k", 1)[1].split(".")[0])
    info = copy.deepcopy(INSPECTOR_SAMPLE)
    info["Layers"] += [{**GEMM, "Name": f"kept{i}"} for i in range(k)]
    return json.dumps(info)


def _fake_tensorrt(loads: bool):
    """TensorRT's module as the documented API has it, as far as plan_information uses it: a runtime that
    deserializes the stand-in plan (or returns None, as TensorRT-RTX's does on compute capability 9.0)."""

    class ILogger:
        Severity = types.SimpleNamespace(ERROR="E", INTERNAL_ERROR="IE", WARNING="W")

        def __init__(self):
            pass

    class Context:
        def __init__(self):
            self.shapes = {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, plan):
            self.plan = plan

        def create_execution_context(self):
            return Context()

        def get_tensor_name(self, i):
            return ("input", "logits")[i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "input" else "OUTPUT"

        def get_tensor_shape(self, name):
            return (-1, 3, 224, 224) if name == "input" else (-1, 1000)

        def create_engine_inspector(self):
            engine = self

            class Inspector:
                execution_context = None

                def get_engine_information(self, fmt):
                    assert fmt == "JSON" and self.execution_context.shapes == {"input": (1, 3, 224, 224)}
                    return _inspector_json(engine.plan)

            return Inspector()

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            if not loads:
                self.logger.log(ILogger.Severity.ERROR, "this GPU's compute capability 9.0 is not supported")
                return None
            return Engine(plan)

    return types.SimpleNamespace(__name__="tensorrt_rtx" if not loads else "tensorrt", __version__="10.13.0",
                                 Builder=object, Runtime=Runtime, ILogger=ILogger,
                                 TensorIOMode=types.SimpleNamespace(INPUT="INPUT"),
                                 LayerInformationFormat=types.SimpleNamespace(JSON="JSON"))


@pytest.fixture
def search(tmp_path, monkeypatch):
    """mp.search over files k<k>.onnx whose top-1 is 80 + k (fp32 90, budget 3: k = 7 found by steps 0, 10, 5, 7,
    6), the layers ranked NAMES; returns run() -> the search's result, and the builder's calls."""
    import onnx
    from onnx import TensorProto, helper

    src = tmp_path / "m-fp32-x.onnx"  # the search's key hashes the fp32 file's content: a real, tiny ONNX file
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [-1, 3, 224, 224]) for n in ("input", "logits"))
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x],
                                                  [y])), str(src))
    built = []

    def convert(kept):
        path = tmp_path / f"m-int8-k{len(kept)}.onnx"
        path.write_bytes(b"q" * (len(kept) + 1))
        return path, {}

    def top1(path, heldout):
        return 90.0 if path == src else 80.0 + int(path.stem.split("-k")[1])

    def build_serialized(onnx_path, settings, verbose=False):
        built.append((Path(onnx_path).name, settings))
        return f"plan:{Path(onnx_path).name}".encode(), {"route": "strongly typed", "build_s": 1.5}

    monkeypatch.setattr(mp, "onnx_top1", top1)
    monkeypatch.setattr(drift, "layer_drift", lambda *a: [{"name": n} for n in NAMES])
    monkeypatch.setattr(drift, "top_drift", lambda rows, top, key: rows)
    monkeypatch.setattr(build, "build_serialized", build_serialized)
    monkeypatch.setattr(mp, "_engine_probe", step_engine_probe)  # what the backends layer offers (below)
    monkeypatch.setattr(api, "gpu_identity", lambda index=None: {"gpu": ENV["gpu"], "compute_capability": "9.0"})
    heldout = mp.Heldout(None, np.arange(20), lambda x: x, {"heldout_files": ["a/1.jpg"], "heldout_images": 20,
                                                             "heldout_dataset_key": "d"})

    def run():
        result, _ = mp.search(src, "int8", convert, lambda: np.zeros((8, 3, 224, 224), np.float32), heldout, 3.0,
                              {"precision": "int8"}, tmp_path / "searches", crop=224)
        return result

    return run, built


def _record(result):
    block = {**result, "calib_images": 4, "final_onnx": "/w/m-int8-k7.onnx", "cached": False}
    return {"record_version": 2, "kind": "validate", "network": "efficientnet_lite0", "backend": "onnxrt",
            "precision": "int8", "batch_size": 1, "options": "cpu", "preparation": {"mixed_precision": block}}


def test_with_tensorrt_each_steps_engine_is_built_and_its_layer_precisions_read_back(search, monkeypatch):
    run, built = search
    monkeypatch.setattr(api, "_module", _fake_tensorrt(loads=True))
    result = run()
    assert [s["k"] for s in result["steps"]] == [0, 10, 5, 7, 6] and result["final_k"] == 7
    # one strongly typed build per step, at the fixed shape (1, 3, crop, crop)
    assert [name for name, _ in built] == [f"m-int8-k{k}.onnx" for k in (0, 10, 5, 7, 6)]
    assert all((s.precision, s.min_shape, s.opt_shape, s.max_shape, s.weak_typing) ==
               ("int8", (1, 3, 224, 224), (1, 3, 224, 224), (1, 3, 224, 224), False) for _, s in built)
    # the stand-in inspector's int8 2, fp32 1, and one fp32 layer more per layer kept
    assert [s["engine"] for s in result["steps"]] == [
        {"built": True, "build_s": 1.5, "layer_precisions": {"int8": 2, "fp32": 1 + k}} for k in (0, 10, 5, 7, 6)]
    assert result["engine_measured"] == (
        "yes: engines built for 5 of 5 steps with tensorrt 10.13.0 on NVIDIA H200 (compute capability 9.0), strongly "
        "typed at 1x3x224x224; layer precisions read back by the engine inspector for 5 of them (a step's engine "
        "'why' says where not); speed: not measured by the search; run -trt on the final file")
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
    assert lines[2] == "| 0 | - | 80.00 | 10.00 | 0.00 | no | int8 2, fp32 1 |"
    assert lines[3].endswith("| yes | fp32 11, int8 2 |")


def test_a_runtime_that_cannot_load_the_engine_leaves_it_built_but_not_read(search, monkeypatch):
    run, built = search
    monkeypatch.setattr(api, "_module", _fake_tensorrt(loads=False))
    result = run()
    assert len(built) == 5
    why = ("built, but not read back: TensorRT's runtime cannot load the engine here (this GPU's compute capability "
           "9.0 is not supported)")
    assert all(s["engine"] == {"built": True, "build_s": 1.5, "layer_precisions": None, "why": why}
               for s in result["steps"])
    assert result["engine_measured"].startswith("partly: engines built for 5 of 5 steps with tensorrt_rtx 10.13.0 ")
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
