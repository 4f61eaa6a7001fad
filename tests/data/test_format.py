"""format_dataset.py on every accepted source form, with real files made in the test."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import format_dataset
from tests.conftest import write_jpeg
from utils.core.errors import cli_boundary
from utils.data.imagenet import imagenet_classes


def _val_files(folder: Path, n: int) -> list[Path]:
    return [write_jpeg(folder / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i) for i in range(1, n + 1)]


def _meta_mat(path: Path, wnids: list[str]) -> Path:
    """A devkit-like meta.mat: ILSVRC2012 IDs 1..N in a NON-sorted wnid order, plus a non-leaf synset."""
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(i + 1, w, "x", 0) for i, w in enumerate(wnids)] + [(1001, "n00001740", "entity", 3)]
    arr = np.array(rows, dtype=dtype)
    scipy.io.savemat(path, {"synsets": arr})
    return path


def test_devkit_ground_truth_uses_meta_order_not_sorted_order(tmp_path):
    src = tmp_path / "val"
    files = _val_files(src, 4)
    table = imagenet_classes()
    # ILSVRC ID 1 is the LAST wnid of the sorted table: a sorted-order mapping would be wrong.
    devkit_order = [table.wnids[999], table.wnids[0]] + table.wnids[1:999]
    meta = _meta_mat(tmp_path / "meta.mat", devkit_order)
    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("1\n2\n1\n3\n")
    dst = tmp_path / "out"
    rc = format_dataset.main(["--src", str(src), "--dst", str(dst), "--labels", str(gt), "--meta", str(meta)])
    assert rc == 0
    assert (dst / table.wnids[999] / files[0].name).is_file()
    assert (dst / table.wnids[0] / files[1].name).is_file()
    assert (dst / table.wnids[999] / files[2].name).is_file()
    assert (dst / table.wnids[1] / files[3].name).is_file()
    # Default is a hard link: same inode, the source is untouched.
    assert os.stat(dst / table.wnids[999] / files[0].name).st_ino == os.stat(files[0]).st_ino
    assert all(f.is_file() for f in files)


def test_devkit_without_meta_is_refused(tmp_path, capsys):
    src = tmp_path / "val"
    _val_files(src, 1)
    gt = tmp_path / "gt.txt"
    gt.write_text("1\n")
    rc = cli_boundary(format_dataset.main, ["--src", str(src), "--dst", str(tmp_path / "o"), "--labels", str(gt)])
    assert rc == 2
    assert "--meta" in capsys.readouterr().err


def test_kaggle_csv_and_rerun_changes_nothing(tmp_path, capsys):
    src = tmp_path / "val"
    files = _val_files(src, 3)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n"
                   "ILSVRC2012_val_00000001,n01751748 1 2 3 4 n01751748 5 6 7 8\n"
                   "ILSVRC2012_val_00000002,n09193705 1 2 3 4\n")
    dst = tmp_path / "out"
    rc = format_dataset.main(["--src", str(src), "--dst", str(dst), "--labels", str(csv)])
    out = capsys.readouterr().out
    assert rc == 1  # one file had no label: listed, not placed
    assert "linked: 2" in out and "not placed: 1" in out and files[2].name in out
    assert (dst / "n01751748" / files[0].name).is_file()
    before = sorted((p, p.stat().st_mtime_ns) for p in dst.rglob("*"))
    rc = format_dataset.main(["--src", str(src), "--dst", str(dst), "--labels", str(csv)])
    out = capsys.readouterr().out
    assert "linked: 0" in out and "already in place: 2" in out
    assert sorted((p, p.stat().st_mtime_ns) for p in dst.rglob("*")) == before


def test_synset_suffix_names_move_and_dry_run(tmp_path, capsys):
    src = tmp_path / "val"
    a = write_jpeg(src / "ILSVRC2012_val_00000293_n01440764.JPEG")
    b = write_jpeg(src / "ILSVRC2012_val_00000294_n99999999.JPEG")
    dst = tmp_path / "out"
    assert format_dataset.main(["--src", str(src), "--dst", str(dst), "--dry-run"]) == 1
    assert not dst.exists() and a.is_file()
    assert "would be linked: 1" in capsys.readouterr().out
    assert format_dataset.main(["--src", str(src), "--dst", str(dst), "--move"]) == 1
    assert (dst / "n01440764" / a.name).is_file() and not a.exists()
    assert b.is_file()  # an unknown synset is listed and left where it is


def test_class_folder_form_is_checked_and_conflicts_are_not_overwritten(tmp_path, capsys):
    src = tmp_path / "val"
    write_jpeg(src / "n01440764" / "x.jpg", seed=1)
    write_jpeg(src / "not_a_wnid" / "y.jpg", seed=2)
    dst = tmp_path / "out"
    theirs = write_jpeg(dst / "n01440764" / "x.jpg", seed=3)
    content = theirs.read_bytes()
    rc = format_dataset.main(["--src", str(src), "--dst", str(dst)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "class folders" in out and "not_a_wnid" in out and "exists with other content" in out
    assert theirs.read_bytes() == content


def test_missing_source_is_one_sentence(tmp_path, capsys):
    rc = cli_boundary(format_dataset.main, ["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: source folder") and "\n" not in err


def test_an_empty_kaggle_label_and_a_meta_that_is_not_a_mat_are_one_sentence(tmp_path, capsys):
    src = tmp_path / "val"
    files = _val_files(src, 2)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,\nILSVRC2012_val_00000002,n01751748 1 2 3 4\n")
    assert format_dataset.main(["--src", str(src), "--dst", str(tmp_path / "o"), "--labels", str(csv)]) == 1
    out = capsys.readouterr().out
    assert "linked: 1" in out and files[0].name in out  # listed as not placed, no traceback
    gt = tmp_path / "gt.txt"
    gt.write_text("1\n2\n")
    fake = tmp_path / "meta.mat"
    fake.write_text("not a MATLAB file")
    rc = cli_boundary(format_dataset.main, ["--src", str(src), "--dst", str(tmp_path / "o2"), "--labels", str(gt),
                                            "--meta", str(fake)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is not the ILSVRC2012 devkit's meta.mat" in err[0]


class Interrupted(BaseException):
    """Stands in for Ctrl-C inside a copy."""


def test_a_move_across_filesystems_never_leaves_a_partial_file(tmp_path, monkeypatch):
    """os.rename across filesystems fails with EXDEV: the file is copied under a temporary name and renamed; an
    interruption in the copy leaves the source whole and nothing under the final name; a rerun completes it."""
    import errno
    import shutil

    import utils.data.format as fmt

    src = tmp_path / "val"
    a = write_jpeg(src / "ILSVRC2012_val_00000293_n01440764.JPEG")
    content = a.read_bytes()
    dst = tmp_path / "out"

    def other_filesystem(s, d):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def interrupted_copy(s, d, *args, **kw):
        with open(d, "wb") as f:
            f.write(content[:100])  # half a file, then the interruption
        raise Interrupted

    real_copy2 = shutil.copy2
    monkeypatch.setattr(fmt.os, "rename", other_filesystem)
    monkeypatch.setattr(fmt.shutil, "copy2", interrupted_copy)
    with pytest.raises(Interrupted):
        format_dataset.main(["--src", str(src), "--dst", str(dst), "--move"])
    assert a.read_bytes() == content and not (dst / "n01440764" / a.name).exists()
    assert not [p for p in dst.rglob("*") if p.is_file()]  # no .part left either
    monkeypatch.setattr(fmt.shutil, "copy2", real_copy2)
    assert format_dataset.main(["--src", str(src), "--dst", str(dst), "--move"]) == 0
    assert (dst / "n01440764" / a.name).read_bytes() == content and not a.exists()
