"""Issue 40, class 5: files read as what they are. 16-bit images scaled to 8 bits; every format Pillow decodes is
read and every file not used is named with its reason; an ONNX file with several outputs or a non-image input is
refused when opened; artefact names bounded however long the folder's name; --move keeps relative links pointing
where they pointed; NaN weights refused before the export."""
from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

import main
from tests.conftest import unchanged
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.decode import decode_pil
from utils.data.scan import scan_dataset

WNID = "n01440764"


def png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG")
    return out.getvalue()


def test_a_16_bit_grayscale_png_decodes_as_its_8_bit_copy():
    wide = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    assert Image.open(io.BytesIO(png(wide))).mode == "I;16"
    narrow = np.round(wide / 257).astype(np.uint8)
    got, want = decode_pil(png(wide)), decode_pil(png(narrow))
    assert got.dtype == torch.uint8 and got.shape == (3, 48, 64)
    assert torch.equal(got, want)  # it was almost all 255 (Pillow's convert clips 16-bit values)
    assert float(got.float().mean()) == pytest.approx(127.5, abs=0.5)


def test_every_format_pillow_decodes_is_read_and_every_file_not_used_is_named(tmp_path, caplog):
    root = tmp_path / "set"
    cls = root / WNID
    cls.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, fmt in (("a.tif", "TIFF"), ("b.gif", "GIF"), ("c.jfif", "JPEG"), ("d.JPG", "JPEG"), ("e.png", "PNG")):
        Image.fromarray(rgb).save(cls / name, fmt)
    (cls / "notes.txt").write_text("not an image")
    (cls / "more").mkdir()
    Image.fromarray(rgb).save(cls / "more" / "f.jpg", "JPEG")
    (root / "README").write_text("beside the class folders")
    (cls / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING), unchanged(root):
        index = scan_dataset(root)
    assert index.files == [f"{WNID}/{n}" for n in ("a.tif", "b.gif", "c.jfif", "d.JPG", "e.png")]
    assert [rel for rel, _ in index.unused] == ["README", f"{WNID}/more/", f"{WNID}/notes.txt"]
    why = dict(index.unused)
    assert why[f"{WNID}/notes.txt"] == ".txt: not an image format Pillow opens"
    assert why[f"{WNID}/more/"].startswith(f"a folder inside class folder {WNID} (1 files): images are read one level")
    assert why["README"] == "not in a class folder"
    assert f"{root}: 3 files not used: README (not in a class folder); {WNID}/more/ (" in caplog.text
    for f in index.files:  # each decodes
        assert decode_pil((root / f).read_bytes()).shape == (3, 32, 32)


def onnx_file(path: Path, outputs: int = 1, input_type: int = TensorProto.FLOAT, rank: int = 4) -> Path:
    dims = ["N", 3, 8, 8][:rank]
    x = helper.make_tensor_value_info("input", input_type, dims)
    nodes, outs = [], []
    for i in range(outputs):
        nodes.append(helper.make_node("Identity", ["input"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", input_type, dims))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind, said", [
    ({"outputs": 2}, "has 2 outputs (out0, out1): ArtTRT scores one output of class scores and would not guess which"),
    ({"input_type": TensorProto.INT64}, "takes input 'input' of type INT64, not an image batch of float32, float16"),
    ({"rank": 2}, "takes input 'input' of rank 2, not an NCHW image batch (rank 4)"),
])
def test_an_onnx_file_that_is_not_one_image_classifier_is_refused_when_opened(tmp_path, capsys, kind, said):
    path = onnx_file(tmp_path / "m.onnx", **kind)
    with unchanged(path):
        rc = cli_boundary(main.main, ["-v", "--network", "resnet18", "--backend", "onnxrt", "--onnx", str(path),
                                      "--synthetic", "4", "--output", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and said in err, err
    assert "Traceback" not in err


def test_a_one_output_float_onnx_file_passes_the_check(tmp_path):
    from utils.models.onnx_export import read_metadata

    assert read_metadata(onnx_file(tmp_path / "m.onnx"))["graph_input_shape"] == [-1, 3, 8, 8]
    assert read_metadata(onnx_file(tmp_path / "h.onnx", input_type=TensorProto.FLOAT16))


def test_an_artefact_of_a_250_character_folder_name_has_a_bounded_name(tmp_path):
    from utils.core.artefact import cached

    name = "d" * 250  # legal: a file name may be 255 bytes, but not with the key and suffix added
    path, _ = cached(tmp_path, f"{name}-224", ".u8", {"k": 1}, lambda tmp: (tmp.write_bytes(b"x"), {})[1])
    assert path.is_file() and len(path.name) < 120 and path.name.startswith("d" * 60)
    other, _ = cached(tmp_path, f"{'d' * 249}e-224", ".u8", {"k": 1}, lambda tmp: (tmp.write_bytes(b"y"), {})[1])
    assert other != path  # a hash of the whole name keeps two long names apart


@pytest.mark.slow
def test_a_dataset_in_a_250_character_folder_is_measured(tmp_path, demo_data, capsys):
    long = tmp_path / ("d" * 250)
    long.mkdir()
    for cls in demo_data.iterdir():
        (long / cls.name).mkdir()
        for f in cls.iterdir():
            (long / cls.name / f.name).write_bytes(f.read_bytes())
    with unchanged(long):
        rc = cli_boundary(main.main, ["-v", "--network", "efficientnet_lite0", "--pretrained", "--dataset", str(long),
                                      "--batch_size", "4", "--cache_dir", str(tmp_path / "c"), "--output",
                                      str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "o" / "records").glob("validate-*.json")]
    assert rec["images"] == 20 and rec["top1"] == 85.0


def test_move_keeps_relative_links_pointing_where_they_pointed(tmp_path):
    from utils.data.format import apply_placement, plan_placement

    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(rgb).save(photos / "real.JPEG", "JPEG")
    src = tmp_path / "val" / WNID
    src.mkdir(parents=True)
    os.symlink("../../photos/real.JPEG", src / "rel.JPEG")  # relative
    os.symlink(photos / "real.JPEG", src / "abs.JPEG")  # absolute
    dst = tmp_path / "deep" / "er" / "imagenet"
    summary = apply_placement(plan_placement(tmp_path / "val", None, None), dst, mode="move")
    assert summary.placed == 2 and not summary.unplaced
    for name in ("rel.JPEG", "abs.JPEG"):
        moved = dst / WNID / name
        assert moved.is_symlink() and moved.resolve() == (photos / "real.JPEG").resolve()
        assert moved.read_bytes() == (photos / "real.JPEG").read_bytes()
        assert not (src / name).exists() and not (src / name).is_symlink()
    assert not os.path.isabs(os.readlink(dst / WNID / "rel.JPEG"))  # still relative, from its new folder


def test_nan_weights_are_refused_before_the_export(tmp_path, monkeypatch):
    from utils.models import onnx_export
    from utils.models.networks import load_network

    net = load_network("mobilenet_v3_small")
    with torch.no_grad():
        net.model.classifier[-1].bias[3] = float("nan")

    def no_export(*a, **k):
        raise AssertionError("exported before the weights were checked")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    t0 = time.perf_counter()
    with pytest.raises(ArtTRTError, match=r"the weights of mobilenet_v3_small hold NaN or Inf \(classifier\.3\.bias\)"):
        onnx_export.export_onnx(net, tmp_path / "m.onnx")
    assert time.perf_counter() - t0 < 2.0 and not (tmp_path / "m.onnx").exists()


def test_float_and_32_bit_tiffs_decode_as_their_8_bit_copy(tmp_path):
    """Found by a hostile pass: a float TIFF of 0..1 decoded near black, and a 32-bit TIFF of 8-bit values (what
    Pillow's convert("I") writes) was divided by 257."""
    narrow = np.linspace(0, 255, 32 * 32).reshape(32, 32).round().astype(np.uint8)
    want = decode_pil(png(narrow))
    for name, im in (("f.tif", Image.fromarray(narrow.astype(np.float32) / 255.0, mode="F")),
                     ("i.tif", Image.fromarray(narrow).convert("I"))):
        im.save(tmp_path / name)
        got = decode_pil((tmp_path / name).read_bytes())
        assert (got.int() - want.int()).abs().max() <= 1, name


def test_move_points_a_link_to_a_moved_sibling_at_its_new_place_and_keeps_a_dangling_one(tmp_path):
    """Found by a hostile pass: a link to a sibling that --move moved too ended up dangling; a dangling source link
    was 'moved' without a word."""
    from utils.data.format import apply_placement, plan_placement

    src = tmp_path / "val" / WNID
    src.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.JPEG", "JPEG")
    os.symlink("a.JPEG", src / "b.JPEG")  # to a sibling, moved too
    os.symlink("gone.JPEG", src / "c.JPEG")  # points nowhere
    dst = tmp_path / "imagenet"
    summary = apply_placement(plan_placement(tmp_path / "val", None, None), dst, mode="move")
    assert summary.placed == 2
    assert (dst / WNID / "b.JPEG").is_symlink() and (dst / WNID / "b.JPEG").resolve() == (dst / WNID / "a.JPEG")
    assert [(p.name, why) for p, why in summary.unplaced] == [("c.JPEG", "a link that points nowhere (gone.JPEG): "
                                                                          "left as it is")]
    assert (src / "c.JPEG").is_symlink()  # the user's link is left where it was
