"""A YOLO model description never runs code: its activation line, layer names and arguments are checked before
Ultralytics sees it, nothing is picked up from the current folder, and an edited description is another network."""
from __future__ import annotations


import pytest

from tests.conftest import unchanged
from utils.core.errors import ArtTRTError
from utils.models.networks import load_network, packaged_yolo_config

MARKER = "arttrt-pwned"


def description(activation: str = "", layer: str = "Conv", args: str = "[64, 3, 2]", extra: str = "") -> str:
    return (f"nc: 10\n{extra}" + (f"activation: {activation}\n" if activation else "")
            + f"backbone:\n  - [-1, 1, {layer}, {args}]\nhead:\n  - [-1, 1, Classify, [nc]]\n")


@pytest.mark.parametrize("activation", [
    "__import__('os').system('touch {marker}')",
    "nn.SiLU(__import__('os').system('touch {marker}'))",
    "eval(\"__import__('os').system('touch {marker}')\")",
    "nn.Module.__subclasses__()",
    "torch.nn.modules.activation.__builtins__",
    "os.system('touch {marker}')",
])
def test_an_activation_that_is_not_a_torch_nn_call_with_literals_is_refused_and_nothing_runs(tmp_path, activation,
                                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    cfg = tmp_path / "evil-cls.yaml"
    quoted = "'" + activation.format(marker=marker).replace("'", "''") + "'"  # YAML's single-quoted form
    cfg.write_text(description(quoted))
    with unchanged(cfg), pytest.raises(ArtTRTError, match=r"activation .* is not a torch.nn class called with "
                                                          r"literal arguments .*: refusing to build it"):
        load_network(str(cfg))
    assert not marker.exists()


@pytest.mark.parametrize("layer,args,why", [
    ("os.system", "[64]", "is not a torch.nn, torchvision.ops or Ultralytics layer class"),
    ("__import__", "[64]", "is not a torch.nn, torchvision.ops or Ultralytics layer class"),
    ("torch_safe_load", "[64]", "is not a torch.nn, torchvision.ops or Ultralytics layer class"),  # a function there
    ("nn.__class__", "[64]", "is not a torch.nn, torchvision.ops or Ultralytics layer class"),
    ("Conv", "[{a: 1}]", "not plain data"),
])
def test_layers_must_be_layer_classes_with_plain_arguments(tmp_path, layer, args, why):
    cfg = tmp_path / "m-cls.yaml"
    cfg.write_text(description(layer=layer, args=args))
    with pytest.raises(ArtTRTError, match=why):
        load_network(str(cfg))


def test_a_literal_activation_builds_and_an_edited_description_is_another_network(tmp_path):
    cfg = tmp_path / "mine-cls.yaml"
    cfg.write_text(description("nn.LeakyReLU(0.1)"))
    leaky = load_network(str(cfg))
    assert leaky.num_classes == 10 and "LeakyReLU(negative_slope=0.1)" in repr(leaky.model)
    cfg.write_text(description("nn.ReLU()"))  # no parameter changes: only the architecture
    relu = load_network(str(cfg))
    assert "ReLU()" in repr(relu.model) and relu.content_key() != leaky.content_key()
    assert relu.weights == "random:seed0" == leaky.weights  # the description of the weights alike, the key not


def test_a_yolo_description_named_like_a_torchvision_network_is_another_network(tmp_path):
    cfg = tmp_path / "resnet18.yaml"
    cfg.write_text(description().replace("nc: 10", "nc: 1000"))
    yolo = load_network(str(cfg))
    tv = load_network("resnet18")
    assert yolo.name == tv.name == "resnet18" and yolo.weights == tv.weights == "random:seed0"
    assert yolo.content_key() != tv.content_key()


def test_a_bare_model_name_never_reads_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    planted = tmp_path / "yolov8n-cls.yaml"
    planted.write_text(description(f'"__import__(\'os\').system(\'touch {marker}\')"'))
    net = load_network("yolov8n-cls")  # Ultralytics' packaged description, scale n
    assert net.name == "yolov8n-cls" and net.num_classes == 1000 and not marker.exists()
    assert 2_600_000 < net.params < 2_800_000  # YOLOv8n-cls: 2.7 M parameters
    assert packaged_yolo_config("yolov8s-cls").name == "yolov8-cls.yaml"
    with pytest.raises(ArtTRTError, match="activation"):  # named explicitly, it is the user's file, and checked
        load_network(str(planted))
    assert not marker.exists()


def test_descriptions_that_are_not_descriptions_are_one_sentence(tmp_path):
    cases = {"list.yaml": "- 1\n- 2\n", "bad.yaml": "nc: [1\n", "latin1.yaml": "nc: 1\n# \xe9\n",
             "nohead.yaml": "nc: 3\nbackbone: []\n", "gray.yaml": description(extra="channels: 1\n")}
    for name, text in cases.items():
        p = tmp_path / name
        p.write_bytes(text.encode("latin-1"))
        with pytest.raises(ArtTRTError) as err:
            load_network(str(p))
        assert "\n" not in str(err.value), name
    fifo = tmp_path / "fifo.yaml"
    import os

    os.mkfifo(fifo)
    with pytest.raises(ArtTRTError, match="is a FIFO, not a regular file"):
        load_network(str(fifo))
