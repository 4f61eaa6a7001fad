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


class Tiny(torch.nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 8 * 8, 10)
        self.scale = scale

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale


def _tiny_net(scale: float = 1.0):
    from utils.data.preprocess import Preprocess
    from utils.models.networks import Network

    return Network("tiny", Tiny(scale).eval(), Preprocess(resize=8, crop=8), 10, "seeded")


def test_the_export_check_measures_onnx_runtime_against_pytorch(tmp_path):
    """check_against_torch runs the file in ONNX Runtime and the module in PyTorch: a file of another model
    differs by what the two models differ by (never 0, as ONNX Runtime against itself would)."""
    from utils.models.onnx_export import check_against_torch

    out = tmp_path / "t.onnx"
    export_onnx(_tiny_net(), out, (-1, 3, 8, 8), exporter="legacy")
    assert check_against_torch(out, Tiny(), (2, 3, 8, 8)) < 1e-5
    g = torch.Generator().manual_seed(1)  # the check's own input: seed + 1
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.inference_mode():
        expected = float((Tiny()(x) * 0.5).abs().max())  # |y - 1.5 y| = 0.5 |y|
    assert check_against_torch(out, Tiny(1.5), (2, 3, 8, 8)) == pytest.approx(expected, rel=1e-4)


def test_a_wrong_export_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    """An exporter that writes another model's graph (here: the model scaled by 2 at export time only)."""
    import utils.models.onnx_export as ox

    real_export = ox._export

    def wrong(model, dummy, tmp, dynamic, exporter):
        return real_export(Tiny(2.0), dummy, tmp, dynamic, exporter)

    monkeypatch.setattr(ox, "_export", wrong)
    out = tmp_path / "t.onnx"
    with pytest.raises(ArtTRTError, match=r"differs from PyTorch by .* \(> 0.001\).*not trusted"):
        export_onnx(_tiny_net(), out, (-1, 3, 8, 8), exporter="legacy")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    facts = export_onnx(_tiny_net(), out, (-1, 3, 8, 8), exporter="legacy", atol=1e9)  # a looser bound passes
    assert facts["max_abs_diff"] > 1e-2 and facts["atol"] == 1e9 and out.is_file()


@pytest.mark.parametrize("shape, message", [((1, 3, 8), "takes 4 numbers"), ((0, 3, 8, 8), "is not valid"),
                                            ((-2, 3, 8, 8), "is not valid"), ((1, 1, 8, 8), "is not valid"),
                                            ((1, 3, 0, 8), "is not valid"), ((1, 3, 8, -1), "is not valid")])
def test_bad_input_shapes(shape, message):
    from utils.models.onnx_export import parse_input_shape

    with pytest.raises(ArtTRTError, match=message):
        parse_input_shape(shape)


def test_good_input_shapes_and_static_metadata(tmp_path):
    from utils.models.onnx_export import parse_input_shape

    assert parse_input_shape((-1, 3, 224, 224)) == (-1, 3, 224, 224) and parse_input_shape(["2", 3, 8, 9]) == (2, 3, 8, 9)
    out = tmp_path / "s.onnx"
    facts = export_onnx(_tiny_net(), out, (3, 3, 8, 8), exporter="legacy")
    meta = read_metadata(out)
    assert meta["graph_input_shape"] == [3, 3, 8, 8] and meta["input_shape"] == [3, 3, 8, 8]
    assert meta["preprocess"]["crop"] == 8 and meta["exporter"] == "legacy" == facts["exporter"]
    assert facts["opset"] == 17 and facts["nodes"] >= 1
    check_input_shape(out, (3, 3, 8, 8))
    check_input_shape(out, (-1, 3, 8, 8))  # a dynamic ask of a static file: its batch is what it is
    with pytest.raises(ArtTRTError, match="static batch of 3"):
        check_input_shape(out, (1, 3, 8, 8))
