"""Networks by name, a user's weights, published weights through the framework's own download, YOLOv8-cls."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from utils.core.errors import ArtTRTError
from utils.models.networks import load_network


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


def test_a_whole_pickled_model_is_one_sentence_with_the_fix(tmp_path):
    import torchvision

    path = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(), path)  # the model object, not its state_dict
    with pytest.raises(ArtTRTError) as err:
        load_network("resnet18", weights=str(path))
    text = str(err.value)
    assert text == (f"weights file {path} is a whole pickled model (torchvision.models.resnet.ResNet), which ArtTRT "
                    "does not unpickle (it could run code): re-save it with torch.save(model.state_dict(), "
                    "'weights.pth') and pass that file")
    assert "\x1b" not in text and "\n" not in text


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


def test_yolov8_cls_from_a_local_pt_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics may write settings or runs beside the working folder
    from ultralytics import YOLO

    pt = tmp_path / "my-cls.pt"
    YOLO("yolov8n-cls.yaml", task="classify").save(str(pt))
    net = load_network(str(pt))
    assert net.name == "my-cls" and net.weights == str(pt) and net.num_classes == 1000
    y = net.model(torch.rand(1, 3, 224, 224))
    assert y.shape == (1, 1000)
    with pytest.raises(ArtTRTError, match=r"does not exist: pass a local .pt file, or let Ultralytics download its "
                                          r"published weights with --network missing-cls\.pt --pretrained"):
        load_network(str(tmp_path / "missing-cls.pt"))
    with pytest.raises(ArtTRTError, match="not a .yaml"):
        load_network("yolov8n-cls.yaml", pretrained=True)
