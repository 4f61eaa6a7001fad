"""Precision as ONNX -> ONNX on the CPU (AutoCast fp16, ModelOpt / ONNX Runtime int8 Q/DQ on real photos),
calibration data keyed by what it was made from, and the files measured through ONNX Runtime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from utils.backends.base import RunSpec
from utils.data.cache import open_dataset
from utils.data.options import DataOptions
from utils.measure.measurement import MeasureOptions
from utils.models.chain import ModelOptions, onnx_for
from utils.models.precision import CalibOptions, calibration_data, convert_precision
from utils.study.validate import validate_one


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def lite0_onnx(lite0):
    path, _ = onnx_for(lite0, (-1, 3, 224, 224))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["max", "entropy"])
def test_int8_qdq_accuracy_on_real_photos(lite0, lite0_onnx, demo_data, tmp_path, method):
    calib, data = CalibOptions(calib_method=method, calib_size=500, quantizer="modelopt"), DataOptions(str(demo_data))
    q, facts = convert_precision(lite0_onnx, "int8", lite0, calib, data)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(q)
    assert facts["tool"] == "modelopt.onnx.quantization" and facts["calib_method"] == method
    assert facts["calib_images"] == 20 and facts["calib_asked"] == 500  # capped by the dataset, recorded
    # TensorRT's parser refuses int32 biases: none of the DequantizeLinear inputs may be int32
    init = {i.name: i for i in onnx.load(str(q)).graph.initializer}
    assert not any(i.data_type == onnx.TensorProto.INT32 for i in init.values())
    ds = data.open(lite0.preprocess, lite0.num_classes)
    spec = RunSpec("onnxrt", "int8", model=ModelOptions(calib=calib))
    rec, _ = validate_one(spec, lite0, ds, MeasureOptions(batch_size=4, progress=False), data=data)
    rec = rec.as_dict()  # the record as written
    assert rec["top1"] >= 80.0 and rec["top5"] >= 90.0  # fp32 is 85 / 95 on these 20 photos
    assert rec["tool"] == "modelopt.onnx.quantization", rec["tool"]
    # ModelOpt keeps fp32 weights behind weight Q/DQ pairs (TensorRT folds them into int8 at build time)
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node) >= 60
    print(f"int8 {method}: top-1 {rec['top1']}%, top-5 {rec['top5']}%, quantization {facts['convert_s']} s")


def test_calibration_cache_is_keyed_not_deleted(lite0, demo_data, tmp_path):
    calib, data = CalibOptions(calib_size=8), DataOptions(str(demo_data))
    a, fa = calibration_data(lite0, calib, data, tmp_path)
    b, fb = calibration_data(lite0, calib, data, tmp_path)
    assert fa["calib_data"] == fb["calib_data"] and np.array_equal(a, b) and fb["calib_prepare_s"] == 0.0
    c, fc = calibration_data(lite0, CalibOptions(calib_size=8, seed=1), data, tmp_path)
    assert fc["calib_data"] != fa["calib_data"] and fc["calib_files"] != fa["calib_files"]
    name = Path(fa["calib_data"]).name
    assert name.startswith("efficientnet_lite0-224x224-n8-") and demo_data.name in name
    # the picked images went through exactly the validation preprocessing
    ds = open_dataset(demo_data, lite0.preprocess)
    i = ds.files.index(fa["calib_files"][0])
    expect = (ds.images[i].astype(np.float32) / 255 - 0.5) / 0.5
    assert np.allclose(a[0], expect, atol=1e-6)
    assert len(json.loads(Path(fa["calib_data"]).with_suffix(".json").read_text())["calib_files"]) == 8
    # the data is verified before use: a damaged file is rebuilt, not fed to a quantizer
    raw = bytearray(Path(fa["calib_data"]).read_bytes())
    raw[-4:] = b"\xff\xff\xff\x7f"
    Path(fa["calib_data"]).write_bytes(bytes(raw))
    d, fd = calibration_data(lite0, calib, data, tmp_path)
    assert np.array_equal(d, a) and fd["calib_prepare_s"] > 0


@pytest.mark.slow
def test_ort_quantizer_fallback_is_tensorrt_shaped_and_recorded(lite0, lite0_onnx, demo_data):
    calib = CalibOptions(calib_method="max", calib_size=20, quantizer="ort")
    q, facts = convert_precision(lite0_onnx, "int8", lite0, calib, DataOptions(str(demo_data)))
    assert facts["tool"] == "onnxruntime.quantization.quantize_static"
    model = onnx.load(str(q))
    init = {i.name: i for i in model.graph.initializer}
    assert not any(i.data_type == onnx.TensorProto.INT32 for i in init.values())  # QuantizeBias False
    zps = [init[n.input[2]] for n in model.graph.node if n.op_type == "DequantizeLinear" and len(n.input) > 2
           and n.input[2] in init]
    assert zps and all(not onnx.numpy_helper.to_array(z).any() for z in zps)  # symmetric
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["arttrt.converted_by"]) == facts["tool"]


@pytest.mark.slow
def test_fp16_autocast_keeps_fp32_io_and_is_cached(lite0, lite0_onnx, demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTTRT_WEIGHTS_DIR", str(tmp_path / "weights"))  # a conversion of its own, whatever ran before
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
    rec, _ = validate_one(RunSpec("onnxrt", "fp16"), lite0, ds, MeasureOptions(batch_size=4, progress=False))
    rec = rec.as_dict()  # the record as written
    assert rec["top1"] >= 80.0 and "no fp16 Conv kernel" in rec["ort_cpu_note"]
