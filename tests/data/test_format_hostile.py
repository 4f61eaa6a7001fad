"""format_dataset.py refuses ground truth that would shift labels, duplicate CSV ids, folders that are files and
files that are not text, in one sentence with exit 2, before anything is placed; property-based tests feed the
ground-truth readers arbitrary bytes (a mapping that matches the file, or one sentence)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import format_dataset
from tests.conftest import unchanged, write_jpeg
from tests.data.test_format import _meta_mat, _val_files
from utils.core.errors import ArtTRTError, cli_boundary
from utils.data.format import read_csv_labels, read_ground_truth
from utils.data.imagenet import imagenet_classes


def run(capsys, *argv):
    rc = cli_boundary(format_dataset.main, list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("text,why", [
    ("1\n\n2\n3\n", r"line 2 is blank"),
    ("1\n2\n\n\n", r"has 2 lines but the images go up to ILSVRC2012_val_00000003"),  # trailing blanks: no line
    ("1\n2 3\n1\n", r"line 2 holds 2 values"),
    ("1\n2\nx\n", r"line 3: 'x' is not an ILSVRC2012 ID"),
    ("1\n2\n", r"has 2 lines but the images go up to ILSVRC2012_val_00000003: lines are missing"),
])
def test_ground_truth_that_would_shift_labels_is_refused_before_anything_is_placed(tmp_path, capsys, text, why):
    src = tmp_path / "val"
    _val_files(src, 3)
    meta = _meta_mat(tmp_path / "meta.mat", imagenet_classes().wnids)
    gt = tmp_path / "gt.txt"
    gt.write_text(text)
    dst = tmp_path / "out"
    with unchanged(src, gt, meta):
        rc, err = run(capsys, "--src", str(src), "--dst", str(dst), "--labels", str(gt), "--meta", str(meta))
    assert rc == 2 and err.count("\n") == 0 and err.startswith("error: ") and __import__("re").search(why, err)
    assert not dst.exists()


def test_a_csv_with_an_image_twice_or_not_utf8_is_refused(tmp_path, capsys):
    src = tmp_path / "val"
    _val_files(src, 2)
    wn = imagenet_classes().wnids
    dup = tmp_path / "LOC_val_solution.csv"
    dup.write_text(f"ImageId,PredictionString\nILSVRC2012_val_00000001,{wn[0]} 1 2 3 4\n"
                   f"ILSVRC2012_val_00000002,{wn[1]} 1 2 3 4\nILSVRC2012_val_00000001,{wn[2]} 1 2 3 4\n")
    with unchanged(src, dup):
        rc, err = run(capsys, "--src", str(src), "--dst", str(tmp_path / "o"), "--labels", str(dup))
    assert rc == 2 and "line 4: ImageId ILSVRC2012_val_00000001 appears twice" in err and "\n" not in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 \xe9\n")
    rc, err = run(capsys, "--src", str(src), "--dst", str(tmp_path / "o"), "--labels", str(latin))
    assert rc == 2 and __import__("re").search(r"latin.csv is not UTF-8 text \(byte \d+, line 2\)$", err)
    assert not (tmp_path / "o").exists()


def test_a_destination_or_class_folder_that_is_a_file_is_one_sentence(tmp_path, capsys):
    src = tmp_path / "val"
    wn = imagenet_classes().wnids[0]
    write_jpeg(src / f"ILSVRC2012_val_00000001_{wn}.JPEG")
    as_file = tmp_path / "dst-file"
    as_file.write_text("mine")
    with unchanged(as_file, src):
        rc, err = run(capsys, "--src", str(src), "--dst", str(as_file))
    assert rc == 2 and err == f"error: --dst {as_file} is a file, not a folder: nothing was placed"
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / wn).write_text("a file where a class folder goes")
    with unchanged(dst, src):
        rc, err = run(capsys, "--src", str(src), "--dst", str(dst))
    assert rc == 2 and err == f"error: class folder {dst / wn} is a file, not a folder: nothing was placed"


def test_labels_that_are_not_regular_files_never_block(tmp_path, capsys):
    src = tmp_path / "val"
    _val_files(src, 1)
    fifo = tmp_path / "gt.csv"
    os.mkfifo(fifo)
    rc, err = run(capsys, "--src", str(src), "--dst", str(tmp_path / "o"), "--labels", str(fifo))
    assert rc == 2 and err == f"error: labels file {fifo} is a FIFO, not a regular file: refusing to read it"


def test_a_file_name_that_is_not_utf8_is_placed_and_printed(tmp_path, capsys):
    src = tmp_path / "val"
    wn = imagenet_classes().wnids[3]
    raw = os.fsencode(str(src)) + b"/odd_\xff_" + wn.encode() + b".JPEG"
    os.makedirs(src)
    write_jpeg(Path(os.fsdecode(raw)))
    write_jpeg(Path(os.fsdecode(os.fsencode(str(src)) + b"/nolabel_\xfe.JPEG")))
    rc, out_err = run(capsys, "--src", str(src), "--dst", str(tmp_path / "o"))
    assert rc == 1 and len(list((tmp_path / "o" / wn).iterdir())) == 1  # placed; the other listed, not placed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=80),
                      st.lists(st.one_of(st.integers(-5, 2000).map(str), st.sampled_from(["", " ", "1 2", "x", "\t7"])),
                               max_size=12).map(lambda ls: "\n".join(ls).encode())))
def test_property_ground_truth_reader_matches_the_file_or_refuses(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("gt") / "gt.txt"
    p.write_bytes(data)
    try:
        ids = read_ground_truth(p)
    except ArtTRTError as err:
        assert "\n" not in str(err)
        return
    lines = data.decode("utf-8-sig").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines after the last ID shift nothing
    assert ids == [int(ln) for ln in lines]  # one ID per line, line i for image i: nothing shifted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002", "", "a,b"]),
                               st.text(max_size=15)), max_size=6), header=st.booleans(), junk=st.binary(max_size=20))
def test_property_csv_reader_gives_one_label_per_image_or_refuses(tmp_path_factory, rows, header, junk):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(["ImageId", "PredictionString"])
    w.writerows(rows)
    p = tmp_path_factory.mktemp("csv") / "LOC_val_solution.csv"
    p.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass") + junk)
    try:
        out = read_csv_labels(p)
    except ArtTRTError as err:
        assert "\n" not in str(err)
        return
    assert header
    ids = [r[0].strip() for r in rows if r[0].strip()]
    assert len(ids) == len(set(ids))  # a duplicate is never silently resolved
    for image, label in out.items():
        assert any(r[0].strip() == image and r[1].split() and r[1].split()[0] == label for r in rows)
