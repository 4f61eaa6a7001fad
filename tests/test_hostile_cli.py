"""The command lines under hostile and careless input: each case that once ended in a traceback, a hang, a stale
figure or a lost record is now one sentence and exit 2 before any long work, a right answer, or a record kept;
and nothing the user owns changes."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import onnx
import pytest
import torch

import main
from tests.conftest import tmpfs, unchanged
from utils.core.errors import cli_boundary

LITE = ["--network", "efficientnet_lite0", "--pretrained"]


def run(capsys, argv, timeout=300):
    """main.main through the CLI boundary in a thread: (exit code, stdout, stderr); a hang fails the test."""
    box = []
    t = threading.Thread(target=lambda: box.append(cli_boundary(main.main, argv)), daemon=True)
    t.start()
    t.join(timeout)
    assert box, f"main.py {' '.join(argv[:3])} ... hung"
    out = capsys.readouterr()
    return box[0], out.out, out.err


def one_sentence(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def lite_onnx(tmp_path_factory):
    from utils.models.chain import onnx_for
    from utils.models.networks import load_network

    path, _ = onnx_for(load_network("efficientnet_lite0", pretrained=True), (-1, 3, 224, 224))
    copy = tmp_path_factory.mktemp("user") / "lite0.onnx"
    copy.write_bytes(path.read_bytes())
    return copy


def test_weights_of_another_shape_are_one_sentence(tmp_path, capsys):
    import torchvision

    w = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), w)
    with unchanged(w):
        rc, _, err = run(capsys, ["-v", "--network", "resnet18", "--weights", str(w), "--synthetic", "2",
                                  "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and f"weights {w} do not fit network resnet18: " in one_sentence(err)
    assert "of another shape (e.g. " in err


def test_onnx_metadata_that_is_not_json_or_not_artrt_shaped_is_one_sentence(tmp_path, capsys, lite_onnx):
    for value, why in (("{not json", "is not JSON"), ('"one thousand"', "arttrt.num_classes is not a class count")):
        proto = onnx.load(str(lite_onnx))
        for p in proto.metadata_props:
            if p.key == "arttrt.num_classes":
                p.value = value
        bad = tmp_path / "bad.onnx"
        onnx.save(proto, str(bad))
        rc, _, err = run(capsys, ["-v", *LITE, "--backend", "onnxrt", "--onnx", str(bad), "--synthetic", "2",
                                  "--output", str(tmp_path / "o"), "--quiet"])
        assert rc == 2 and why in one_sentence(err), err


def test_an_onnx_file_of_another_network_is_refused(tmp_path, capsys, lite_onnx):
    rc, _, err = run(capsys, ["-v", "--network", "mobilenet_v2", "--backend", "onnxrt", "--onnx", str(lite_onnx),
                              "--synthetic", "2", "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "was exported from network efficientnet_lite0, not mobilenet_v2" in one_sentence(err)


def test_shapes_that_cannot_run_are_refused_before_any_work(tmp_path, capsys, demo_data):
    rc, _, err = run(capsys, ["-v", *LITE, "--backend", "onnxrt", "--input_shape", "1", "3", "224", "224",
                              "--batch_size", "8", "--dataset", str(demo_data), "--output", str(tmp_path / "o")])
    assert rc == 2 and "is a static batch of 1, but batches of 8 would be fed" in one_sentence(err)
    rc, _, err = run(capsys, ["-v", *LITE, "--backend", "onnxrt", "--input_shape", "-1", "3", "256", "256",
                              "--synthetic", "2", "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "asks 256x256 images, but efficientnet_lite0's preprocessing crops 224x224" in one_sentence(err)


def test_files_that_are_not_regular_or_not_utf8_never_hang_and_are_one_sentence(tmp_path, capsys, demo_data):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for flags, what in ((["--network", "resnet18", "--weights", str(fifo)], "weights file"),
                        ([*LITE, "--backend", "onnxrt", "--onnx", str(fifo)], "ONNX file"),
                        ([*LITE, "--class_map", str(fifo), "--dataset", str(demo_data)], "class map file")):
        argv = ["-v", *flags, "--output", str(tmp_path / "o"), "--quiet"]
        argv += [] if "--dataset" in flags else ["--synthetic", "2"]
        rc, _, err = run(capsys, argv, timeout=120)
        assert rc == 2 and f"{what} {fifo} is a FIFO, not a regular file" in one_sentence(err), err
    latin = tmp_path / "classes.txt"
    latin.write_bytes("tench\n".encode() + b"caf\xe9\n")
    rc, _, err = run(capsys, ["-v", *LITE, "--class_map", str(latin), "--dataset", str(demo_data),
                              "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and f"class map file {latin} is not UTF-8 text (byte 9, line 2)" in one_sentence(err)


def test_a_dataset_file_name_that_is_not_utf8_is_measured(tmp_path, capsys, demo_data):
    data = tmp_path / "data"
    for src in sorted(Path(demo_data).rglob("*.jpg"))[:4]:
        dst = os.fsencode(str(data / src.parent.name)) + b"/photo-\xff-" + src.name.encode()
        os.makedirs(os.fsdecode(os.path.dirname(dst)), exist_ok=True)
        Path(os.fsdecode(dst)).write_bytes(src.read_bytes())
    with unchanged(data):
        rc, out, err = run(capsys, ["-v", *LITE, "--dataset", str(data), "--output", str(tmp_path / "o"),
                                    "--batch_size", "2", "--cache_dir", str(tmp_path / "c")])
    assert rc == 0 and "Traceback" not in err and "efficientnet_lite0" in out


@pytest.mark.slow
def test_a_replaced_onnx_file_is_measured_again_not_found_done_before(tmp_path, capsys, demo_data, lite_onnx):
    from utils.models.chain import onnx_for
    from utils.models.networks import load_network

    user = tmp_path / "model.onnx"
    user.write_bytes(lite_onnx.read_bytes())
    argv = ["-v", *LITE, "--backend", "onnxrt", "--onnx", str(user), "--dataset", str(demo_data),
            "--batch_sizes", "4", "8", "--duration", "0", "--output", str(tmp_path / "o"), "--quiet"]
    assert run(capsys, argv)[0] == 0
    rc, out, _ = run(capsys, argv)
    assert rc == 0 and "(0 measured, 3 found done before" in out
    random_lite, _ = onnx_for(load_network("efficientnet_lite0", seed=3), (-1, 3, 224, 224))  # other weights
    st = os.stat(user)
    user.write_bytes(random_lite.read_bytes())
    os.utime(user, ns=(st.st_atime_ns, st.st_mtime_ns))
    rc, out, _ = run(capsys, argv)
    assert rc == 0 and "(3 measured, 0 found done before" in out
    recs = [json.loads(p.read_text()) for p in (tmp_path / "o" / "records").glob("*.json")]
    top1 = sorted({r["top1"] for r in recs if r.get("role") == "accuracy"})
    assert len(top1) == 2 and 85.0 in top1  # the old file's 17 of 20 and the new file's own figure


def test_a_full_disk_after_a_measured_pass_keeps_the_record(tmp_path, capsys, demo_data, monkeypatch):
    """The output folder fills up (a 64 KiB tmpfs, full once the run has started): the measurement's record
    goes to the system's temporary folder and says why the predictions were not kept; the run ends in one
    sentence, not a traceback, and no figure is lost."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    with tmpfs(tmp_path / "mnt", full=True) as mnt:
        rc, out, err = run(capsys, ["-v", *LITE, "--backend", "onnxrt", "--dataset", str(demo_data),
                                    "--batch_size", "4", "--output", str(mnt / "out"), "--quiet"])
    assert rc == 2 and "is full" in one_sentence(err)
    kept = list((tmp_path / "system-tmp" / "arttrt-records").glob("*.json"))
    assert len(kept) == 1
    rec = json.loads(kept[0].read_text())
    assert rec["top1"] == 85.0 and rec["images"] == 20 and "is full" in rec["predictions_error"]
    assert f"it is in {kept[0]}" in err


# Found by a hostile pass over the first version of these fixes: each a new case of a class above.

def test_a_checkpoint_that_is_a_legacy_pickle_with_a_zip_appended_is_refused(tmp_path):
    """zipfile finds a zip by its end, torch.load by its first bytes: the pickle checked must be the one loaded."""
    import io
    import pickle
    import zipfile

    from utils.core.errors import ArtTRTError
    from utils.models.safe_load import load_checkpoint

    class Call:
        def __reduce__(self):
            return (torch.nn.modules.linear.Linear, (3, 3))

    legacy = io.BytesIO()
    torch.save({"model": Call()}, legacy, _use_new_zipfile_serialization=False)
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"model": torch.nn.modules.linear.Linear}))
    poly = tmp_path / "poly.pt"
    poly.write_bytes(legacy.getvalue() + z.getvalue())
    assert zipfile.is_zipfile(poly)
    with pytest.raises(ArtTRTError, match="not a PyTorch zip checkpoint"):
        load_checkpoint(poly)


@pytest.mark.parametrize("text,why", [
    ("a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n"
                                                         for i in range(1, 10))
     + "nc: 10\nbackbone:\n  - [-1, 1, Conv, *a9]\nhead:\n  - [-1, 1, Classify, [nc]]\n", "uses YAML aliases"),
    ("nc: 10\nbackbone:\n  - [-1, 1, Conv, &r [64, 3, 2, *r]]\nhead:\n  - [-1, 1, Classify, [nc]]\n",
     "uses YAML aliases"),
    ("x: " + "[" * 200000 + "]" * 200000 + "\n", "nested too deeply"),
])
def test_yaml_bombs_are_refused_at_once(tmp_path, text, why):
    import time

    from utils.core.errors import ArtTRTError
    from utils.models.networks import load_network

    p = tmp_path / "bomb-cls.yaml"
    p.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ArtTRTError, match=why):
        load_network(str(p))
    assert time.perf_counter() - t0 < 30


def test_files_that_never_end_or_are_huge_are_refused_without_reading_them(tmp_path, capsys):
    from utils.core.errors import ArtTRTError
    from utils.core.fileio import read_text

    huge = tmp_path / "classes.txt"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)  # sparse: 300 MiB that take no disk
    with pytest.raises(ArtTRTError, match=r"is larger than 256 MiB: refusing to read it"):
        read_text(huge, "class map file")
    out = tmp_path / "results"
    (out / "records").mkdir(parents=True)
    (out / "records" / "big.json").symlink_to(huge)
    if os.path.exists("/proc/kmsg") and os.access("/proc/kmsg", os.R_OK):
        (out / "records" / "kmsg.json").symlink_to("/proc/kmsg")  # size 0, "regular", and it never ends
    (out / "telemetry").mkdir()
    (out / "telemetry" / "telemetry-big.csv").symlink_to(huge)
    rc, _, err = run(capsys, ["--report", str(out)], timeout=120)  # a hang fails here
    assert rc == 0 and "Traceback" not in err
    assert f"skipped {out / 'telemetry' / 'telemetry-big.csv'}: not an ArtTRT telemetry file" in err


def test_an_onnx_file_reached_through_a_link_is_keyed_by_the_external_data_beside_the_link(tmp_path):
    from tests.core.test_content import tiny_onnx
    from utils.core.content import file_digest

    real = tiny_onnx(tmp_path / "b" / "m.onnx", 1.0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.onnx").symlink_to(real)
    (tmp_path / "a" / "w.bin").write_bytes((real.parent / "w.bin").read_bytes())
    before = file_digest(tmp_path / "a" / "m.onnx")
    import numpy as np

    (tmp_path / "a" / "w.bin").write_bytes(np.full((4, 4), 9.0, np.float32).tobytes())  # what ONNX Runtime reads
    assert file_digest(tmp_path / "a" / "m.onnx") != before


def test_names_with_pipes_newlines_and_escapes_stay_in_their_cell_and_their_line(tmp_path, capsys):
    from tests.report.test_hostile_records import record, write

    out = tmp_path / "results"
    write(out, "a.json", record(network="net|x\nNEWLINE | injected |\r\x1b[31mRED", options="o|p\nq"))
    write(out, "b.json", record(network="worth-it"))
    write(out, "c.json", record(network="worth-it", backend="onnxrt"))
    write(out, "d.json", record(network="n", backend="onnxrt"))
    (out / "records" / "e\ntop-1 gate: all rows passed\n.json").write_text("{not json but named so}")
    (out / "records" / "f\x1b[2J.json").write_text(json.dumps(record(top1=float("nan"))).replace("null", "NaN"))
    rc, _, err = run(capsys, ["--report", str(out)])
    assert rc == 0 and "\x1b" not in err and not any(ln.startswith("top-1 gate") for ln in err.splitlines())
    assert "f\\x1b[2J.json" in err
    tables = out / "table_outputs"
    worth = (tables / "worth-it.md").read_text()
    assert worth.startswith("# Is TensorRT worth it? Every network")  # a network named worth-it took another name
    assert (tables / "network-worth-it.md").read_text().startswith("# worth-it")
    hostile = next(p for p in tables.iterdir() if p.name.startswith("net_x") and "side-by-side" not in p.name)
    text = hostile.read_text()
    assert "\x1b" not in text and "\r" not in text
    assert text.splitlines()[0] == "# net|x\\x0aNEWLINE | injected |\\x0d\\x1b[31mRED"
    for table in text.split("\n\n"):  # every table: each line as many (unescaped) columns as its header
        lines = [ln for ln in table.splitlines() if ln.startswith("|")]
        if lines:
            assert len({ln.replace("\\|", "").count("|") for ln in lines}) == 1, table
