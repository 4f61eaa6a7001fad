"""Keys from content (utils/core/content.py): a replaced file, an ONNX file's external data, an edited model
description, another network under the same name each give another key, and the artefacts built from them are
built again; the same content under another name shares one key."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from utils.core.artefact import cached
from utils.core.content import content_key, file_digest, files_bytes, onnx_files, tree_digest
from utils.core.errors import ArtTRTError


def tiny_onnx(path: Path, weight: float = 1.0, external: bool = True) -> Path:
    """x (N, 4) -> x @ W, W 4x4 filled with `weight`; W in an external-data file w.bin beside it if external."""
    w = numpy_helper.from_array(np.full((4, 4), weight, np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="w.bin", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = os.stat(path)
    assert len(data) == st.st_size
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old size and mtime: only the content differs


def test_a_file_replaced_under_its_name_with_its_old_size_and_mtime_has_another_key(tmp_path):
    f = tmp_path / "weights.pth"
    f.write_bytes(b"a" * 64)
    before = content_key({"weights": f, "precision": "int8"})
    replace_keeping_size_and_mtime(f, b"b" * 64)
    assert content_key({"weights": f, "precision": "int8"}) != before
    same = tmp_path / "elsewhere" / "other-name.pth"
    same.parent.mkdir()
    same.write_bytes(b"b" * 64)
    assert content_key({"weights": same, "precision": "int8"}) == content_key({"weights": f, "precision": "int8"})
    assert content_key({"weights": f, "precision": "fp16"}) != content_key({"weights": f, "precision": "int8"})


def test_an_onnx_file_is_its_file_and_its_external_data(tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", 1.0)
    files = onnx_files(model)
    assert [p.name for p in files] == ["m.onnx", "w.bin"] and files_bytes(files) == sum(
        p.stat().st_size for p in files) and (tmp_path / "w.bin").stat().st_size == 64
    before = file_digest(model)
    data = np.full((4, 4), 2.0, np.float32).tobytes()
    replace_keeping_size_and_mtime(tmp_path / "w.bin", data)  # the .onnx itself is untouched
    assert file_digest(model) != before
    inline = tiny_onnx(tmp_path / "inline" / "m.onnx", 1.0, external=False)
    assert onnx_files(inline) == [inline]


def test_external_data_that_leaves_the_folder_or_is_missing_is_refused(tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ArtTRTError, match=r"external data of m.onnx .*w.bin does not exist"):
        file_digest(model)
    proto = onnx.load(str(tiny_onnx(tmp_path / "n.onnx")), load_external_data=False)
    for e in proto.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "../../etc/passwd"
    onnx.save_model(proto, str(tmp_path / "evil.onnx"))
    with pytest.raises(ArtTRTError, match="outside the model's folder"):
        file_digest(tmp_path / "evil.onnx")


def test_a_folder_is_keyed_by_its_files(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    f = tmp_path / "d" / "a" / "x.jpg"
    f.write_bytes(b"1234")
    before = tree_digest(tmp_path / "d")
    replace_keeping_size_and_mtime(f, b"5678")  # a new inode and ctime
    assert tree_digest(tmp_path / "d") != before
    assert content_key({"calib": tmp_path / "d"}) == content_key({"calib": tmp_path / "d"})


def test_cached_rebuilds_when_an_input_file_changes_and_not_otherwise(tmp_path):
    src = tiny_onnx(tmp_path / "in" / "m.onnx", 1.0)
    built = []

    def make(tmp: Path):
        built.append(1)
        tmp.write_bytes(src.read_bytes() + (src.parent / "w.bin").read_bytes())
        return {}

    out1, f1 = cached(tmp_path / "out", "m-fp16", ".bin", {"src": src, "precision": "fp16"}, make)
    out2, f2 = cached(tmp_path / "out", "m-fp16", ".bin", {"src": src, "precision": "fp16"}, make)
    assert out1 == out2 and f2["cached"] and len(built) == 1
    assert f1["artefact"]["settings"]["src"] == {"sha256": file_digest(src)}  # the sidecar names content, not a path
    replace_keeping_size_and_mtime(src.parent / "w.bin", np.full((4, 4), 3.0, np.float32).tobytes())
    out3, f3 = cached(tmp_path / "out", "m-fp16", ".bin", {"src": src, "precision": "fp16"}, make)
    assert out3 != out1 and not f3["cached"] and len(built) == 2


def test_networks_are_keyed_by_architecture_and_weights_not_by_name(tmp_path):
    import torch

    from utils.models.networks import load_network

    a = load_network("resnet18", seed=0)
    assert load_network("resnet18", seed=0).content_key() == a.content_key()  # stable
    assert load_network("resnet18", seed=1).content_key() != a.content_key()  # other weights
    state = {k: v.clone() for k, v in a.model.state_dict().items()}
    w = tmp_path / "w.pth"
    torch.save(state, w)
    from_file = load_network("resnet18", weights=str(w))
    assert from_file.content_key() == a.content_key()  # the same tensors, wherever they came from
    state["fc.bias"][0] += 1.0
    torch.save(state, w)
    assert load_network("resnet18", weights=str(w)).content_key() != a.content_key()
