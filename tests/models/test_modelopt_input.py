"""ModelOpt's quantizer rewrites the ONNX file it is given (unnamed nodes get names, shared constants are
duplicated, written back to its input path): ArtTRT hands it a private copy, so the cached export that every other
run reads is never changed (found on torchvision's vit_b_16: the export grew by 2,070 bytes and was rebuilt)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from utils.models.precision import _quantize_modelopt


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_modelopt_never_changes_or_adds_files_beside_the_export(tmp_path):
    pytest.importorskip("modelopt.onnx.quantization")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).random((16, 16), dtype=np.float32), "W")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 16])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("MatMul", ["a", "W"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight]),
                              opset_imports=[helper.make_opsetid("", 17)])
    exports = tmp_path / "onnx"
    exports.mkdir()
    src = exports / "m-fp32.onnx"
    onnx.save(model, str(src))
    before = _digests(exports)
    out = tmp_path / "m-int8.onnx"
    _quantize_modelopt(src, out, "int8", "max", np.random.default_rng(1).random((4, 16), dtype=np.float32))
    assert _digests(exports) == before  # ModelOpt given src itself rewrites it (unnamed nodes, a shared weight)
    assert len(onnx.load(str(out)).graph.node) >= 2  # the quantized file (MatMuls this small ModelOpt leaves in float)
