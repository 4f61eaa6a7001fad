"""Networks by name, a user's weights, YOLOv8-cls from a yaml, and the checked ONNX export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import onnx_transform
from utils.errors import ArtTRTError, cli_boundary
from utils.networks import load_network
from utils.onnx_export import check_input_shape, export_onnx, read_metadata


def test_user_weights_with_another_class_count(tmp_path):
    torch.manual_seed(1)
    import torchvision

    model = torchvision.models.resnet18(num_classes=7)
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    net = load_network("resnet18", weights=str(path))
    assert net.num_classes == 7
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(net.model(x), model.eval()(x))


def test_weights_that_do_not_fit_the_network(tmp_path):
    import torchvision

    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(ArtTRTError, match="do not fit network resnet18: .* missing"):
        load_network("resnet18", weights=str(path))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtTRTError, match="cannot read weights file"):
        load_network("resnet18", weights=str(junk))
    with pytest.raises(ArtTRTError, match="does not exist"):
        load_network("resnet18", weights=str(tmp_path / "none.pth"))


def test_pretrained_offline_says_pass_weights(monkeypatch, tmp_path):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ArtTRTError, match="pass --weights FILE"):
        load_network("resnet18", pretrained=True)


def test_pretrained_uses_the_framework_download_path(monkeypatch, tmp_path):
    """A file already in torch hub's cache is what torchvision's real download code loads."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    w = torchvision.models.ResNet18_Weights.DEFAULT
    ckpt = tmp_path / "hub" / "checkpoints" / Path(w.url).name
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(3)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), ckpt)
    net = load_network("resnet18", pretrained=True)
    assert net.weights == "pretrained:resnet18"
    assert torch.equal(net.model.fc.weight, ref.fc.weight)


def test_unknown_network_and_random_weights_are_seeded():
    with pytest.raises(ArtTRTError, match="unknown network"):
        load_network("resnet9000")
    a, b = load_network("mobilenet_v2", seed=5), load_network("mobilenet_v2", seed=5)
    assert torch.equal(a.model.classifier[1].weight, b.model.classifier[1].weight)


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


def test_yolov8_cls_from_a_local_pt_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics may write settings or runs beside the working folder
    from ultralytics import YOLO

    pt = tmp_path / "my-cls.pt"
    YOLO("yolov8n-cls.yaml", task="classify").save(str(pt))
    net = load_network(str(pt))
    assert net.name == "my-cls" and net.weights == str(pt) and net.num_classes == 1000
    y = net.model(torch.rand(1, 3, 224, 224))
    assert y.shape == (1, 1000)
    with pytest.raises(ArtTRTError, match="does not exist: pass a local .pt file, --pretrained"):
        load_network(str(tmp_path / "missing-cls.pt"))
    with pytest.raises(ArtTRTError, match="not a .yaml"):
        load_network("yolov8n-cls.yaml", pretrained=True)
