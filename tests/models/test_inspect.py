"""--inspect on the CPU: the ONNX layer table and per-layer drift of EfficientNet-Lite0 (packaged ImageNet
weights) at fp32 and int8, checked against figures computed another way."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from utils.models.chain import ModelOptions, model_file
from utils.models.drift import layer_drift, top_drift
from utils.models.onnx_layers import onnx_layers, polygraphy_text, precision_counts
from utils.models.precision import CalibOptions


@pytest.fixture(scope="module")
def lite0_files(lite0, demo_data):
    """The fp32 export and its int8 file (ModelOpt, entropy, the 20 demo photos), and the calibration images."""
    from utils.data.options import DataOptions

    data = DataOptions(dataset=str(demo_data))
    fp32, _ = model_file(lite0, "fp32", ModelOptions(), data)
    int8, facts = model_file(lite0, "int8", ModelOptions(calib=CalibOptions(calib_size=20)), data)
    return fp32, int8, np.load(facts["calib_data"]), facts


def _float_weights(path) -> int:
    """Elements of the float initializers that are weights (more than one element), counted over the file."""
    m = onnx.load(str(path))
    return sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == 1 and int(np.prod(i.dims)) > 1)


def test_onnx_layer_table_of_fp32_and_int8(lite0_files):
    fp32, int8, _, facts = lite0_files
    assert facts["source_onnx"] == str(fp32)
    a, b = onnx_layers(fp32), onnx_layers(int8)
    # the int8 file holds the same 94 layers (its Q/DQ nodes are not layers), and the same weights, each one
    # attributed to its layer through the DequantizeLinear (and QuantizeLinear) in front of it
    assert len(a) == len(b) == 94 and [r["op"] for r in a] == [r["op"] for r in b]
    total = _float_weights(fp32)
    assert sum(r["params"] for r in a) == total == sum(r["params"] for r in b) == 4_631_000
    assert precision_counts(a) == {"fp32": 94} and not any(r["qdq"] for r in a)
    convs = [r for r in b if r["op"] == "Conv"]
    assert len(convs) == 49 and all(r["qdq"] and r["precision"] == "int8" for r in convs)  # every conv quantized
    assert all(not r["qdq"] and r["precision"] == "fp32" for r in b if r["op"] != "Conv")
    assert precision_counts(b) == {"int8": 49, "fp32": 45}
    first = b[0]
    assert first["weight"] == "_conv_stem.weight" and first["params"] == 32 * 3 * 3 * 3 + 32
    assert first["inputs"] == ["input_DequantizeLinear_Output: fp32[batchx3x224x224]"]
    assert first["outputs"][0].endswith(": fp32[batchx32x112x112]")
    text = polygraphy_text(int8)
    assert "---- 1 Graph Input(s) ----" in text and first["name"] in text


def test_per_layer_drift_of_int8(lite0_files):
    import onnxruntime as ort

    fp32, int8, images, _ = lite0_files
    images = images[:4]
    same = layer_drift(fp32, fp32, images[:2])
    assert len(same) == 94 and max(r["relative_error"] for r in same) == 0.0
    rows = layer_drift(fp32, int8, images)
    assert len(rows) == 94 and rows[-1]["tensor"] == "logits"
    # the output's drift, computed apart: two plain sessions of the unmodified files on the same images
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
    x = ref.run(None, {"input": images})[0].astype(np.float64)
    y = q.run(None, {"input": images})[0].astype(np.float64)
    expected = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert rows[-1]["relative_error"] == pytest.approx(expected, rel=1e-5)
    assert 0.02 < expected < 0.5
    # error accumulates: the first conv drifts less than the output; what each layer adds is its own
    assert 0 < rows[0]["relative_error"] < rows[-1]["relative_error"]
    assert rows[0]["added_error"] == pytest.approx(rows[0]["relative_error"])  # nothing compared feeds it
    top = top_drift(rows, 5)
    assert len(top) == 5 and all(r["qdq"] for r in top)
    assert [r["added_error"] for r in top] == sorted((r["added_error"] for r in rows if r["qdq"]), reverse=True)[:5]
    clip = next(i for i, r in enumerate(rows) if r["op"] == "Clip")  # fed by the conv just before it
    assert rows[clip]["added_error"] == pytest.approx(rows[clip]["relative_error"] - rows[clip - 1]["relative_error"])
    json.dumps(rows)  # the record keeps them


def test_drift_of_unrelated_files_is_one_sentence(lite0_files, tmp_path):
    from onnx import TensorProto, helper

    from utils.core.errors import ArtTRTError

    fp32, _, images, _ = lite0_files
    g = helper.make_graph([helper.make_node("Relu", ["input"], ["other"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 224, 224])],
                          [helper.make_tensor_value_info("other", TensorProto.FLOAT, [None, 3, 224, 224])])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(ArtTRTError, match="shares no layer output"):
        layer_drift(fp32, other, images[:1])
