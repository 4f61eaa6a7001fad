"""Loading never runs a checkpoint's code: a real YOLOv8-cls .pt loads through the weights-only path with the
same outputs as Ultralytics' own loader; crafted files that would run a command, or call a layer class while
loading, are refused in one sentence, through main.py and onnx_transform.py too, and nothing ran."""
from __future__ import annotations

import os

import pytest
import torch

import main
import onnx_transform
from utils.core.errors import ArtTRTError, cli_boundary
from utils.models.networks import load_network
from utils.models.safe_load import load_checkpoint


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsALayer:
    def __reduce__(self):  # a layer class called with arguments while loading: never in a saved model
        return (torch.nn.Conv2d, (3, 8, 3))


@pytest.fixture
def yolo_pt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ultralytics may write settings beside the working folder
    from ultralytics import YOLO

    pt = tmp_path / "mine-cls.pt"
    YOLO("yolov8n-cls.yaml", task="classify").save(str(pt))
    return pt


def test_a_real_checkpoint_loads_safely_with_the_same_outputs(yolo_pt):
    from ultralytics import YOLO

    ours = load_network(str(yolo_pt))
    theirs = YOLO(str(yolo_pt), task="classify").model.float().eval()  # Ultralytics' own (unpickling) loader
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        a, b = ours.model(x), theirs(x)
    b = b[0] if isinstance(b, (tuple, list)) else b
    assert torch.equal(a, b) and ours.num_classes == 1000 and ours.weights == str(yolo_pt)


@pytest.mark.parametrize("payload, says", [("command", "it names posix.system"),
                                           ("layer call", "it calls torch.nn.modules.conv.Conv2d")])
def test_crafted_checkpoints_are_refused_and_nothing_runs(tmp_path, capsys, payload, says):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil-cls.pt"
    torch.save({"model": RunsACommand(marker) if payload == "command" else CallsALayer()}, evil)
    before = evil.read_bytes()
    with pytest.raises(ArtTRTError, match=says):
        load_checkpoint(evil)
    for run in (lambda: cli_boundary(main.main, ["-v", "--network", str(evil), "--synthetic", "2", "--output",
                                                 str(tmp_path / "o"), "--quiet"]),
                lambda: cli_boundary(onnx_transform.main, ["--network", str(evil), "--output", str(tmp_path / "x.onnx")])):
        assert run() == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and "re-save its model" in err[0]
    assert not marker.exists() and evil.read_bytes() == before and not (tmp_path / "o" / "records").exists()


def test_broken_and_empty_checkpoints_are_one_sentence(tmp_path):
    empty = tmp_path / "empty-cls.pt"
    empty.write_bytes(b"")
    with pytest.raises(ArtTRTError, match="is empty"):
        load_checkpoint(empty)
    junk = tmp_path / "junk-cls.pt"
    junk.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ArtTRTError):
        load_checkpoint(junk)
