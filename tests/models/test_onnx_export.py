"""The checked ONNX export: metadata, dynamic and static batches, the input-shape check, onnx_transform.py."""
from __future__ import annotations

import logging
import os

import numpy as np
import onnx
import pytest
import torch

import onnx_transform
from utils.core.errors import ArtTRTError, cli_boundary
from utils.models.networks import load_network
from utils.models.onnx_export import check_input_shape, export_onnx, read_metadata


@pytest.mark.slow
def test_yolov8_cls_from_yaml_exports(tmp_path):
    net = load_network("yolov8n-cls.yaml")
    assert net.num_classes == 1000 and net.preprocess.mean == (0.0, 0.0, 0.0)
    facts = export_onnx(net, tmp_path / "y.onnx", (2, 3, 224, 224))
    assert facts["max_abs_diff"] < 1e-3


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    with pytest.raises(ArtTRTError, match=r"^the exported ONNX file differs from PyTorch by 1\.62 \(> 0\.00116: 0\.001 \+ 0\.0001 x "
                                          r"the largest logit 1\.62\) on a random batch: the export is wrong, not trusted$"):
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


def test_export_check_metadata_and_log_word_for_word(tmp_path, caplog, monkeypatch):
    """What the export writes into the file and says, value by value, on the tiny seeded model."""
    import logging
    import re
    import types

    import utils.models.onnx_export as ox
    from utils.data.preprocess import Preprocess
    from utils.models.networks import Network

    net = Network("tiny", Tiny().eval(), Preprocess(resize=9, crop=8, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)), 10,
                  "seeded")
    clock = iter([10.0, 10.12345] + [20.0] * 10)
    out = tmp_path / "sub" / "dir" / "t.onnx"  # folders made as needed
    with monkeypatch.context() as m, caplog.at_level(logging.INFO, logger="utils.models.onnx_export"):
        m.setattr(ox, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
        facts = export_onnx(net, out, (-1, 3, 8, 8), exporter="legacy")
    assert facts["seconds"] == 0.123 and facts["exporter"] == "legacy" and facts["opset"] == 17
    meta = read_metadata(out)
    assert meta == {"network": "tiny", "input_shape": [-1, 3, 8, 8], "num_classes": 10, "weights": "seeded",
                    "exporter": "legacy", "made_by": "arttrt onnx_transform", "graph_input_shape": [-1, 3, 8, 8],
                    "preprocess": {"resize": 9, "crop": 8, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}}
    message = [r.getMessage() for r in caplog.records if r.getMessage().startswith("exported")][-1]
    assert re.fullmatch(rf"exported tiny -> {re.escape(str(out))} \(legacy exporter, opset 17, {facts['nodes']} "
                        rf"nodes, max \|ORT - torch\| = \d\.\d\de[-+]\d\d, tolerance {facts['tolerance']:.2e}\)", message), message
    assert facts["tolerance"] == pytest.approx(1e-3 + 1e-4 * facts["max_abs_logit"])
    assert f"{facts['max_abs_diff']:.2e}" in message
    assert [p.name for p in out.parent.iterdir()] == ["t.onnx"]  # the export's scratch folder is gone
    # exported again over the same file with other metadata: each key once, with the new value
    import onnx

    proto = onnx.load(str(out))
    ox.set_metadata(proto, {"network": "renamed", "extra": [1]})
    assert [(p.key, p.value) for p in proto.metadata_props if p.key in ("arttrt.network", "arttrt.extra")] == [
        ("arttrt.network", '"renamed"'), ("arttrt.extra", "[1]")]


def test_a_crop_other_than_the_networks_is_said(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        export_onnx(_tiny_net(), tmp_path / "a.onnx", (2, 3, 8, 8), exporter="legacy")
    assert "differs from the network's crop" not in caplog.text
    from utils.data.preprocess import Preprocess
    from utils.models.networks import Network

    net = Network("tiny", Tiny().eval(), Preprocess(resize=9, crop=9), 10, "seeded")  # expects 9x9; made for 8x8
    with caplog.at_level(logging.WARNING):
        export_onnx(net, tmp_path / "b.onnx", (2, 3, 8, 8), exporter="legacy")
    assert [r.getMessage() for r in caplog.records if "differs" in r.getMessage()] == [
        "input 8x8 differs from the network's crop 9: preprocessing will crop 8x8"]
    caplog.clear()
    import torch.nn as nn

    wide = Network("wide", nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 10)).eval(),
                   Preprocess(resize=8, crop=8), 10, "seeded")
    with caplog.at_level(logging.WARNING):
        export_onnx(wide, tmp_path / "c.onnx", (2, 3, 8, 12), exporter="legacy")  # only the width differs
    assert "input 8x12 differs from the network's crop 8: preprocessing will crop 8x12" in caplog.text


def test_the_dynamic_export_is_checked_on_two_images_and_a_static_one_on_its_batch(tmp_path, monkeypatch):
    import utils.models.onnx_export as ox

    shapes = []
    real = ox.compare_with_torch
    monkeypatch.setattr(ox, "compare_with_torch", lambda p, m, shape, seed=0: shapes.append(shape) or real(p, m, shape, seed))
    export_onnx(_tiny_net(), tmp_path / "d.onnx", (-1, 3, 8, 8), exporter="legacy", seed=5)
    export_onnx(_tiny_net(), tmp_path / "s.onnx", (3, 3, 8, 8), exporter="legacy")
    assert shapes == [(2, 3, 8, 8), (3, 3, 8, 8)]


def test_broken_and_foreign_onnx_files_and_shape_checks(tmp_path):
    from utils.models.onnx_export import parse_input_shape

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ArtTRTError, match=r"^\S+bad.onnx (is not a readable ONNX file: \S|holds no model)") as err:
        read_metadata(bad)
    assert not str(err.value).endswith(": None")
    import onnx
    from onnx import TensorProto, helper

    no_output = tmp_path / "no_output.onnx"
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    onnx.save(helper.make_model(helper.make_graph([], "g", [x], [])), str(no_output))
    with pytest.raises(ArtTRTError, match="holds no model with an input and an output"):
        read_metadata(no_output)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ArtTRTError, match=r"^\S+empty.onnx holds no model with an input and an output \(an empty "
                                          r"or foreign file\)$"):
        read_metadata(empty)
    out = tmp_path / "s.onnx"
    export_onnx(_tiny_net(), out, (4, 3, 8, 8), exporter="legacy")
    with pytest.raises(ArtTRTError, match=rf"^ONNX file {out} takes input \[4, 3, 8, 8\], but --input_shape is "
                                          rf"\[4, 3, 9, 8\]$"):
        check_input_shape(out, (4, 3, 9, 8))
    with pytest.raises(ArtTRTError, match=rf"^ONNX file {out} has a static batch of 4, but --input_shape asks 1$"):
        check_input_shape(out, (1, 3, 8, 8))
    dyn = tmp_path / "d.onnx"
    export_onnx(_tiny_net(), dyn, (-1, 3, 8, 8), exporter="legacy")
    assert read_metadata(dyn)["graph_input_shape"] == [-1, 3, 8, 8]
    assert check_input_shape(dyn, (5, 3, 8, 8))["graph_input_shape"] == [-1, 3, 8, 8]  # any batch fits
    with pytest.raises(ArtTRTError, match="is not valid"):
        parse_input_shape((1, 3, 8, 0))
    for shape in ((1, 3, 1, 8), (1, 3, 8, 1)):
        assert parse_input_shape(shape) == shape  # 1 pixel is small but valid
    with pytest.raises(ArtTRTError, match=r"^--input_shape 1 3 0 8 is not valid: batch -1 \(dynamic\) or >0, 3 "
                                          r"channels, positive height and width$"):
        parse_input_shape((1, 3, 0, 8))


@pytest.mark.slow
def test_the_default_exporter_seeds_and_the_tolerance_edge(tmp_path, monkeypatch, caplog):
    """The default exporter is dynamo (opset 18); the figure is ONNX Runtime against PyTorch on the seeded batch,
    the export's seed included; a difference equal to the tolerance passes. Nothing is left in the working
    folder."""
    from utils.models.onnx_export import OPSET, check_against_torch

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    import logging

    out = tmp_path / "auto.onnx"
    with caplog.at_level(logging.INFO, logger="utils.models.onnx_export"):
        facts = export_onnx(_tiny_net(), out, (-1, 3, 8, 8), seed=5)
    assert facts["exporter"] == "dynamo" and facts["opset"] == OPSET == 18
    assert "(dynamo exporter, opset 18," in caplog.text
    plain = export_onnx(_tiny_net(), tmp_path / "plain.onnx", (-1, 3, 8, 8), exporter="legacy")  # default seed 0
    assert plain["max_abs_diff"] == check_against_torch(tmp_path / "plain.onnx", Tiny(), (2, 3, 8, 8), seed=0)
    assert facts["max_abs_diff"] == check_against_torch(out, Tiny(), (2, 3, 8, 8), seed=5) > 0
    again = export_onnx(_tiny_net(), tmp_path / "edge.onnx", (-1, 3, 8, 8), seed=5, atol=facts["max_abs_diff"])
    assert again["max_abs_diff"] == facts["max_abs_diff"]  # <= the tolerance: trusted
    assert list(work.iterdir()) == []
    with pytest.raises(ArtTRTError, match=r"^the exported ONNX output has shape \(2, 10\), PyTorch's \(2, 20\)$"):
        check_against_torch(out, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 20)), (2, 3, 8, 8))


def test_the_export_tolerance_grows_with_the_logits(tmp_path, monkeypatch):
    """Random-weight deep networks give huge logits: fp32 rounding then moves them by more than 1e-3 absolute
    (ResNet-152 on the H200: 58). The bound is atol + rtol x the largest logit, so such an export passes and a
    wrong one (an error of the logits' own size) still fails."""
    import utils.models.onnx_export as ox

    monkeypatch.setattr(ox, "compare_with_torch", lambda *a, **k: (58.0, 1e6))  # 58 < 1e-3 + 1e-4 * 1e6 = 100
    facts = export_onnx(_tiny_net(), tmp_path / "big.onnx", (-1, 3, 8, 8), exporter="legacy")
    assert facts["tolerance"] == pytest.approx(1e-3 + 100.0) and facts["max_abs_logit"] == 1e6
    assert facts["rtol"] == 1e-4 and facts["atol"] == 1e-3 and facts["max_abs_diff"] == 58.0
    edge = 1e-3 + 1e-4 * 1e6  # exactly at the bound: still trusted (the bound is inclusive)
    monkeypatch.setattr(ox, "compare_with_torch", lambda *a, **k: (edge, 1e6))
    assert export_onnx(_tiny_net(), tmp_path / "edge.onnx", (-1, 3, 8, 8), exporter="legacy")["max_abs_diff"] == edge
    monkeypatch.setattr(ox, "compare_with_torch", lambda *a, **k: (150.0, 1e6))
    with pytest.raises(ArtTRTError, match=r"differs from PyTorch by 150 \(> 100: 0.001 \+ 0.0001 x the largest logit"):
        export_onnx(_tiny_net(), tmp_path / "wrong.onnx", (-1, 3, 8, 8), exporter="legacy")
    assert not (tmp_path / "wrong.onnx").exists()


def test_an_export_whose_declared_shapes_contradict_the_graph_is_refused(tmp_path, monkeypatch):
    """The full check (strict shape inference): an output declared (N, 7) for a graph that makes (N, 10) is
    refused in one sentence and leaves no file; ONNX Runtime alone would run it and give the 10 right logits."""
    import utils.models.onnx_export as ox

    real_export = ox._export

    def mislabelled(model, dummy, tmp, dynamic, exporter):
        used = real_export(model, dummy, tmp, dynamic, exporter)
        proto = onnx.load(str(tmp))
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7
        onnx.save(proto, str(tmp))
        return used

    monkeypatch.setattr(ox, "_export", mislabelled)
    out = tmp_path / "t.onnx"
    with pytest.raises(ArtTRTError, match=r"^the exported ONNX file fails ONNX's full check \(\[ShapeInferenceError\] "
                                          r".*Inferred shape and existing shape differ in dimension 1: \(10\) vs "
                                          r"\(7\)\): the export is wrong, not trusted$"):
        export_onnx(_tiny_net(), out, (-1, 3, 8, 8), exporter="legacy")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_cached_export_is_logged_by_its_folder_never_its_temporary_name(tmp_path, caplog):
    from utils.models.chain import onnx_for

    net = _tiny_net()
    with caplog.at_level(logging.INFO):
        path, _ = onnx_for(net, (-1, 3, 8, 8), exporter="legacy", folder=tmp_path)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("exported"))
    assert line.startswith(f"exported tiny -> {tmp_path}{os.sep} (legacy exporter") and ".part" not in line, line
    assert path.parent == tmp_path and path.is_file()
