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


# ---- the plan, the placing and the summary, value by value ----------------------------------------------------

from utils.core.errors import ArtTRTError  # noqa: E402
from utils.data.format import Placement, Summary, apply_placement, format_summary, plan_placement, read_labels  # noqa: E402


def test_each_form_is_named_and_each_unplaced_file_says_why(tmp_path):
    wnids = imagenet_classes().wnids
    flat = tmp_path / "flat"
    ok = write_jpeg(flat / "ILSVRC2012_val_00000001_n01440764.JPEG")
    unknown = write_jpeg(flat / "ILSVRC2012_val_00000002_n99999999.JPEG")
    bare = write_jpeg(flat / "ILSVRC2012_val_00000003.JPEG")
    other = write_jpeg(flat / "holiday.jpg")
    (flat / "readme.txt").write_text("not an image")
    (flat / "extras").mkdir()  # a stray folder beside the files: still the flat form
    plan = plan_placement(flat)
    assert plan.form == "names ending in the synset" and plan.moves == [(ok, "n01440764")]
    assert plan.unplaced == [
        (unknown, "name carries no synset and no labels file was given"),
        (bare, "needs --labels (devkit ground truth + --meta, or LOC_val_solution.csv)"),
        (other, "name carries no synset and no labels file was given")]

    fool = tmp_path / "fool"
    f7 = write_jpeg(fool / "imagenet_03_7.jpg")
    f999 = write_jpeg(fool / "imagenet_04_999.jpg")
    f1000 = write_jpeg(fool / "imagenet_05_1000.jpg")  # no class 1000
    plan = plan_placement(fool)
    assert plan.form == "foolbox imagenet_<i>_<class index>"
    assert plan.moves == [(f7, wnids[7]), (f999, wnids[999])]
    assert plan.unplaced == [(f1000, "name carries no synset and no labels file was given")]

    folders = tmp_path / "folders"
    good = write_jpeg(folders / "n01443537" / "a.jpg")
    bad = write_jpeg(folders / "cats" / "b.jpg")
    plan = plan_placement(folders)
    assert plan.form == "class folders" and plan.moves == [(good, "n01443537")]
    assert plan.unplaced == [(bad, "folder cats is not an ImageNet-1k wnid")]

    with pytest.raises(ArtTRTError, match=f"^source folder {tmp_path / 'none'} does not exist$"):
        plan_placement(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtTRTError, match=f"^source folder {tmp_path / 'empty'} holds no images$"):
        plan_placement(tmp_path / "empty")


def test_labels_files_value_by_value(tmp_path):
    table = imagenet_classes()
    flat = tmp_path / "val"
    files = _val_files(flat, 3)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 1 2 3 4\n"
                   "ILSVRC2012_val_00000002,n99999999 1 2 3 4\nILSVRC2012_val_00000003,\n")
    plan = plan_placement(flat, labels=csv)
    assert plan.form == "flat with labels file" and plan.moves == [(files[0], "n01751748")]
    assert plan.unplaced == [(files[1], "label n99999999 is not an ImageNet-1k wnid"),
                             (files[2], "not in LOC_val_solution.csv")]  # an empty label is no label
    for header in ("ImageId\n", "PredictionString\n", "Image,PredictionString\n", ""):
        bad = tmp_path / "bad.csv"
        bad.write_text(header + "x\n")
        with pytest.raises(ArtTRTError, match=r"^.*bad.csv is not Kaggle's LOC_val_solution.csv \(columns ImageId, "
                                              r"PredictionString\)$"):
            read_labels(bad, None)
    with pytest.raises(ArtTRTError, match=f"^labels file {tmp_path / 'no.csv'} does not exist$"):
        read_labels(tmp_path / "no.csv", None)
    gt = tmp_path / "gt.txt"
    gt.write_text("1\n")
    with pytest.raises(ArtTRTError, match=r"^the devkit ground truth holds ILSVRC2012 IDs, whose order is not the "
                                          r"sorted-wnid order: pass --meta with the devkit's data/meta.mat$"):
        read_labels(gt, None)
    # IDs 1..1000 are the classes (here in reversed order); 1001 is a non-leaf synset of the devkit
    meta = _meta_mat(tmp_path / "meta.mat", table.wnids[::-1])
    gt.write_text("1000\n1\n")
    assert read_labels(gt, meta) == {"ILSVRC2012_val_00000001": table.wnids[0],
                                     "ILSVRC2012_val_00000002": table.wnids[999]}
    gt.write_text("1\n1001\n")
    with pytest.raises(ArtTRTError, match=f"^{gt} line 2: ILSVRC2012 ID 1001 is not in {meta}$"):
        read_labels(gt, meta)
    gt.write_text("1\ntwo\n")
    with pytest.raises(ArtTRTError, match=r"^.*gt.txt line 2: 'two' is not an ILSVRC2012 ID \(one integer per "
                                          r"line\)$"):
        read_labels(gt, meta)
    not_mat = tmp_path / "meta2.mat"
    not_mat.write_text("no")
    with pytest.raises(ArtTRTError, match=r"is not the ILSVRC2012 devkit's meta.mat \(need synsets with "
                                          r"ILSVRC2012_ID and WNID\): \S") as err:
        read_labels(gt, not_mat)
    assert not str(err.value).endswith(": None")  # scipy's own reason, not a placeholder


def _two_files(tmp_path):
    a = write_jpeg(tmp_path / "src" / "a.jpg", seed=1)
    b = write_jpeg(tmp_path / "src" / "b.jpg", seed=2)
    c = write_jpeg(tmp_path / "src" / "c.jpg", seed=3)
    return Placement("class folders", moves=[(a, "n01440764"), (b, "n01443537"), (c, "n01443537")],
                unplaced=[(tmp_path / "x.jpg", "why")]), (a, b, c)


def test_placing_counts_modes_and_existing_targets(tmp_path, monkeypatch):
    import errno

    plan, (a, b, c) = _two_files(tmp_path)
    dst = tmp_path / "dst"
    # a target already there with the same bytes (a copy: another inode) and one with other bytes of the same
    # size and time: the first is in place, the second is not ours to overwrite
    (dst / "n01440764").mkdir(parents=True)
    same = dst / "n01440764" / "a.jpg"
    same.write_bytes(a.read_bytes())
    clash = dst / "n01443537" / "b.jpg"
    clash.parent.mkdir()
    data = bytearray(b.read_bytes())
    data[-3] ^= 0xFF
    clash.write_bytes(bytes(data))
    os.utime(clash, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns))
    d = write_jpeg(tmp_path / "src" / "d.jpg", seed=4)
    plan.moves.append((d, "n01484850"))
    dry = apply_placement(plan, dst, "copy", dry_run=True)
    assert (dry.placed, dry.already, dry.classes) == (2, 1, 3) and not (dst / "n01443537" / "c.jpg").exists()
    assert dry.unplaced == [(tmp_path / "x.jpg", "why"), (b, f"{clash} exists with other content (left as it is)")]
    plan.moves.pop()
    s = apply_placement(plan, dst, "copy")
    assert (s.placed, s.already, s.copied_not_linked) == (1, 1, 0) and clash.read_bytes() == bytes(data)
    copied = dst / "n01443537" / "c.jpg"
    assert copied.read_bytes() == c.read_bytes() and copied.stat().st_ino != c.stat().st_ino
    with pytest.raises(ValueError, match="^bogus$"):
        apply_placement(plan, dst, "bogus")

    # hard links refused by the filesystem: copies, counted; any other error is raised
    plan2, (a2, b2, c2) = _two_files(tmp_path / "2")
    monkeypatch.setattr(os, "link", lambda s, t: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    s = apply_placement(plan2, tmp_path / "dst2", "link")
    assert (s.placed, s.copied_not_linked) == (3, 3)
    assert (tmp_path / "dst2" / "n01443537" / "c.jpg").read_bytes() == c2.read_bytes()
    monkeypatch.setattr(os, "link", lambda s, t: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(OSError, match="denied"):
        apply_placement(plan2, tmp_path / "dst3", "link")


def test_the_default_is_a_hard_link_and_a_vanished_source_is_not_in_place(tmp_path):
    plan, (a, b, c) = _two_files(tmp_path)
    s = apply_placement(plan, tmp_path / "dst")
    assert s.placed == 3 and (tmp_path / "dst" / "n01440764" / "a.jpg").stat().st_ino == a.stat().st_ino
    b.unlink()  # gone between the plan and a rerun: cannot be compared, so not counted as in place
    s = apply_placement(plan, tmp_path / "dst")
    assert (s.placed, s.already) == (0, 2) and s.unplaced[-1][0] == b
    assert s.unplaced[-1][1].endswith("exists with other content (left as it is)")


def test_a_folder_in_the_way_is_other_content(tmp_path):
    plan, (a, _, _) = _two_files(tmp_path)
    (tmp_path / "dst" / "n01440764" / "a.jpg").mkdir(parents=True)  # cannot be compared: not the same file
    s = apply_placement(Placement("class folders", moves=[(a, "n01440764")]), tmp_path / "dst", "link")
    assert s.placed == 0 and s.already == 0 and "exists with other content" in s.unplaced[0][1]


@pytest.mark.parametrize("mode, dry, verb", [("link", False, "linked"), ("copy", True, "would be copied"),
                                             ("move", False, "moved")])
def test_the_summary_lines(tmp_path, mode, dry, verb):
    s = Summary(placed=5, already=2, unplaced=[(Path("a.jpg"), "why")], classes=3,
                copied_not_linked=2 if mode == "link" else 0)
    text = format_summary(Placement("class folders"), s, Path("/d"), mode, dry)
    extra = " (2 copied: hard links not possible)" if mode == "link" else ""
    assert text.split("\n") == ["source form: class folders", f"{verb}: 5{extra}", "already in place: 2",
                                "classes: 3", "not placed: 1", "  a.jpg: why", "destination: /d"]


def test_a_flat_validation_folder_without_labels_is_one_sentence_naming_both_label_files(tmp_path, capsys):
    """Issue 27: a flat Kaggle/devkit folder without --labels was reported as "names ending in the synset" with
    every file listed (50,000 lines on ImageNet). Now: one sentence naming both labels files, exit 2, nothing
    made; a folder of names with no class at all is named as such."""
    src = tmp_path / "val"
    for i in range(1, 4):
        write_jpeg(src / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    rc = cli_boundary(format_dataset.main, ["--src", str(src), "--dst", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and not (tmp_path / "o").exists()
    assert (f"{src} is a flat folder of ILSVRC2012_val_<n> images (3 of 3 files), whose classes are in a labels "
            "file: add --labels LOC_val_solution.csv (Kaggle) or --labels ILSVRC2012_validation_ground_truth.txt "
            "--meta meta.mat (the devkit's); nothing was placed") in err[0]
    other = tmp_path / "holiday"
    write_jpeg(other / "beach.jpg")
    assert plan_placement(other).form == "names that carry no class"


def test_the_summary_names_ten_files_and_counts_the_rest_by_reason():
    unplaced = [(Path(f"f{i}.jpg"), "why a" if i % 3 else "why b") for i in range(13)]
    text = format_summary(Placement("class folders"), Summary(unplaced=unplaced), Path("/d"), "link", False)
    lines = text.split("\n")
    assert lines[4] == "not placed: 13" and lines[5:15] == [f"  f{i}.jpg: {'why a' if i % 3 else 'why b'}"
                                                            for i in range(10)]
    assert lines[15] == "  ... and 3 more: 2 why a; 1 why b" and lines[16] == "destination: /d"
    exactly = format_summary(Placement("class folders"), Summary(unplaced=unplaced[:10]), Path("/d"), "link", False)
    assert "more" not in exactly and len(exactly.split("\n")) == 16


def test_dry_run_checks_a_class_folder_tree_without_dst(tmp_path, capsys):
    src = tmp_path / "imagenet"
    write_jpeg(src / "n01440764" / "a.jpg", seed=1)
    write_jpeg(src / "n01443537" / "b.jpg", seed=2)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    assert format_dataset.main(["--src", str(src), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "already in place: 2" in out and "classes: 2" in out
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
    with pytest.raises(SystemExit) as exit_:
        format_dataset.main(["--src", str(src)])  # no --dst and something to do: argparse's refusal
    assert exit_.value.code == 2 and "--dst is required" in capsys.readouterr().err


def test_help_shows_the_examples(capsys):
    with pytest.raises(SystemExit):
        format_dataset.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--labels LOC_val_solution.csv" in out and "--src datasets/imagenet --dry-run" in out
