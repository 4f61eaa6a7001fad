"""The checked ONNX export: metadata, dynamic and static batches, the input-shape check, onnx_transform.py."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import onnx_transform
from utils.core.errors import ArtTRTError, cli_boundary
from utils.models.networks import load_network
from utils.models.onnx_export import check_input_shape, export_onnx, read_metadata


def test_yolov8_cls_from_yaml_exports(tmp_path):
    net = load_network("yolov8n-cls.yaml")
    assert net.num_classes == 1000 and net.preprocess.mean == (0.0, 0.0, 0.0)
    facts = export_onnx(net, tmp_path / "y.onnx", (2, 3, 224, 224))
    assert facts["max_abs_diff"] < 1e-3


def test_dynamic_export_metadata_and_batch(lite0, tmp_path):
    out = tmp_path / "lite0.onnx"
    facts = export_onnx(lite0, out, (-1, 3, 224, 224))
    assert facts["opset"] >= 17 and facts["max_abs_diff"] < facts["atol"]
    meta = read_metadata(out)
    assert meta["network"] == "efficientnet_lite0" and meta["num_classes"] == 1000
    assert meta["preprocess"]["mean"] == [0.5, 0.5, 0.5] and meta["input_shape"] == [-1, 3, 224, 224]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    got = sess.run(None, {"input": x})[0]
    ref = lite0.model(torch.from_numpy(x)).detach().numpy()
    assert got.shape == (3, 1000) and np.abs(got - ref).max() < 1e-3
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_static_export_and_input_shape_check(tmp_path):
    net = load_network("resnet18")
    out = tmp_path / "r.onnx"
    export_onnx(net, out, (4, 3, 224, 224))
    assert read_metadata(out)["graph_input_shape"] == [4, 3, 224, 224]
    check_input_shape(out, (4, 3, 224, 224))
    with pytest.raises(ArtTRTError, match="takes input"):
        check_input_shape(out, (-1, 3, 256, 256))
    with pytest.raises(ArtTRTError, match="static batch of 4"):
        check_input_shape(out, (8, 3, 224, 224))


def test_onnx_transform_cli(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert onnx_transform.main(["--network", "resnet18", "--input_shape", "-1", "3", "224", "224",
                                "--output", str(out)]) == 0
    assert "max |ONNX Runtime - PyTorch|" in capsys.readouterr().out
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(out.read_bytes()[:100])  # not ArtTRT's file: must not be overwritten
    before = theirs.read_bytes()
    assert cli_boundary(onnx_transform.main, ["--network", "resnet18", "--output", str(theirs)]) == 2
    assert theirs.read_bytes() == before
    assert cli_boundary(onnx_transform.main, ["--network", "resnet18", "--input_shape", "1", "1", "224", "224"]) == 2
    with pytest.raises(SystemExit) as exc:  # argparse's own one-line error for a wrong count
        onnx_transform.main(["--network", "resnet18", "--input_shape", "1", "3", "224"])
    assert exc.value.code == 2
