"""Turns an ImageNet-1k validation download into DST/<wnid>/<file> (the logic behind format_dataset.py).

Accepted sources:
  (a) a flat folder of ILSVRC2012_val_XXXXXXXX.JPEG plus either the devkit's
      ILSVRC2012_validation_ground_truth.txt (1-based ILSVRC2012 IDs; mapped to wnids through the
      devkit's meta.mat, whose ID order is NOT the sorted-wnid order) or Kaggle's LOC_val_solution.csv;
  (b) files whose names end in the synset: ILSVRC2012_val_00000293_n01440764.JPEG;
  (c) a folder already in class-folder form (checked and reported);
  (d) foolbox's labelled photos, imagenet_<i>_<class index>.jpg (used by the built-in demo).

Default is a hard link, falling back to a copy; --move only when asked; a re-run changes nothing.

Usage:
    plan = plan_placement(Path("val"), labels=Path("ILSVRC2012_validation_ground_truth.txt"), meta=Path("meta.mat"))
    summary = apply_placement(plan, Path("datasets/imagenet"), mode="link")
"""
from __future__ import annotations

import collections
import csv
import errno
import filecmp
import io
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from utils.core.errors import ArtTRTError, first_line, visible
from utils.core.fileio import atomic_path, read_text, regular_file
from utils.data.imagenet import imagenet_classes
from utils.data.scan import image_extensions

log = logging.getLogger(__name__)

VAL_NAME_RE = re.compile(r"^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")
SUFFIX_WNID_RE = re.compile(r"^.+_(n\d{8})\.[A-Za-z]+$")
FOOLBOX_RE = re.compile(r"^imagenet_\d+_(\d+)\.[A-Za-z]+$")


@dataclass
class Placement:
    """Where each source file goes, and what could not be placed (with the reason)."""

    form: str
    moves: List[Tuple[Path, str]] = field(default_factory=list)  # (source file, wnid)
    unplaced: List[Tuple[Path, str]] = field(default_factory=list)  # (source file, reason)


@dataclass
class Summary:
    placed: int = 0
    already: int = 0
    unplaced: List[Tuple[Path, str]] = field(default_factory=list)
    classes: int = 0
    copied_not_linked: int = 0


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if (p.is_file() or p.is_symlink()) and p.suffix.lower() in image_extensions())


def read_meta_mat(meta: Path) -> Dict[int, str]:
    """ILSVRC2012_ID (1-based) -> wnid, from the devkit's meta.mat (read with scipy)."""
    from scipy.io import loadmat

    regular_file(meta, "--meta file")
    try:
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        ids = [int(i) for i in synsets["ILSVRC2012_ID"]]
        wnids = [str(w) for w in synsets["WNID"]]
    except Exception as err:  # scipy raises MatReadError, ValueError, KeyError ... for a file that is not one
        raise ArtTRTError(f"{meta} is not the ILSVRC2012 devkit's meta.mat (need synsets with "
                          f"ILSVRC2012_ID and WNID): {first_line(err)}") from err
    return {i: w for i, w in zip(ids, wnids) if i <= 1000}


def read_csv_labels(labels: Path) -> Dict[str, str]:
    """ImageId -> wnid from Kaggle's LOC_val_solution.csv; an ImageId twice is refused (which label would hold?)."""
    text = read_text(labels, "labels file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "ImageId" not in reader.fieldnames or "PredictionString" not in reader.fieldnames:
            raise ArtTRTError(f"{labels} is not Kaggle's LOC_val_solution.csv (columns ImageId, PredictionString)")
        out: Dict[str, str] = {}
        seen = set()
        for n, row in enumerate(reader, start=2):  # a row without a label leaves its image unplaced (and listed)
            image = (row.get("ImageId") or "").strip()
            if image and image in seen:
                raise ArtTRTError(f"{labels} line {n}: ImageId {image} appears twice: which label holds? Fix the file "
                                  "(nothing was placed)")
            seen.add(image)
            words = (row.get("PredictionString") or "").split()
            if image and words:
                out[image] = words[0]
    except csv.Error as err:
        raise ArtTRTError(f"{labels} is not a readable CSV file ({first_line(err)})") from err
    return out


def read_ground_truth(labels: Path) -> List[int]:
    """The devkit's ground truth: exactly one ILSVRC2012 ID per line, line i for ILSVRC2012_val_<i>. A blank line
    or two IDs on one line would shift every later label by one: refused, naming the line."""
    text = read_text(labels, "labels file")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # the final newline, and blank lines after the last ID (nothing follows them to shift)
    ids = []
    for n, line in enumerate(lines, start=1):
        words = line.split()
        if len(words) != 1:
            what = "is blank" if not words else f"holds {len(words)} values"
            raise ArtTRTError(f"{labels} line {n} {what}: the ground truth has one ILSVRC2012 ID per line, line i for "
                              "image i, so every later label would shift (nothing was placed)")
        try:
            ids.append(int(words[0]))
        except ValueError:
            raise ArtTRTError(f"{labels} line {n}: {words[0][:40]!r} is not an ILSVRC2012 ID (one integer per "
                              "line)") from None
    return ids


def read_labels(labels: Path, meta: Optional[Path]) -> Dict[str, str]:
    """File stem -> wnid from the devkit ground truth (with meta.mat) or Kaggle's LOC_val_solution.csv."""
    regular_file(labels, "labels file")
    if labels.suffix.lower() == ".csv":
        return read_csv_labels(labels)
    if meta is None:
        raise ArtTRTError("the devkit ground truth holds ILSVRC2012 IDs, whose order is not the sorted-wnid "
                          "order: pass --meta with the devkit's data/meta.mat")
    id_to_wnid = read_meta_mat(meta)
    ids = read_ground_truth(labels)
    out = {}
    for i, cls in enumerate(ids, start=1):
        if cls not in id_to_wnid:
            raise ArtTRTError(f"{labels} line {i}: ILSVRC2012 ID {cls} is not in {meta}")
        out[f"ILSVRC2012_val_{i:08d}"] = id_to_wnid[cls]
    return out


def _check_ground_truth_covers(files: List[Path], labels: Path, table: Dict[str, str]) -> None:
    """The devkit's ground truth must have a line for every ILSVRC2012_val_<i> image given: fewer lines than the
    highest i means lines are missing, and every label after the gap belongs to another image."""
    numbers = [int(m.group(1)) for f in files if (m := VAL_NAME_RE.match(f.name))]
    if numbers and labels.suffix.lower() != ".csv" and max(numbers) > len(table):
        raise ArtTRTError(f"{labels} has {len(table)} lines but the images go up to ILSVRC2012_val_{max(numbers):08d}: "
                          "lines are missing, so the labels cannot be matched to images (nothing was placed)")


def plan_placement(src: Path, labels: Optional[Path] = None, meta: Optional[Path] = None) -> Placement:
    """Works out which of the accepted forms `src` is in, and where each file goes."""
    if not src.is_dir():
        raise ArtTRTError(f"source folder {src} does not exist")
    known = imagenet_classes().index
    subdirs = sorted(p for p in src.iterdir() if p.is_dir())
    files = _image_files(src)
    if subdirs and not files:
        plan = Placement("class folders")
        for d in subdirs:
            for f in _image_files(d):
                if d.name in known:
                    plan.moves.append((f, d.name))
                else:
                    plan.unplaced.append((f, f"folder {d.name} is not an ImageNet-1k wnid"))
        return plan
    if not files:
        raise ArtTRTError(f"source folder {src} holds no images")

    if labels is not None:
        plan = Placement("flat with labels file")
        table = read_labels(labels, meta)
        _check_ground_truth_covers(files, labels, table)
        for f in files:
            wnid = table.get(f.stem)
            if wnid is None:
                plan.unplaced.append((f, f"not in {labels.name}"))
            elif wnid not in known:
                plan.unplaced.append((f, f"label {wnid} is not an ImageNet-1k wnid"))
            else:
                plan.moves.append((f, wnid))
        return plan

    plan = Placement("names that carry no class")  # what the files turn out to be names it
    wnids = imagenet_classes().wnids
    bare = 0
    for f in files:
        m = SUFFIX_WNID_RE.match(f.name)
        fb = FOOLBOX_RE.match(f.name)
        if m and m.group(1) in known:
            plan.form = "names ending in the synset"
            plan.moves.append((f, m.group(1)))
        elif fb and int(fb.group(1)) < len(wnids):
            plan.form = "foolbox imagenet_<i>_<class index>"
            plan.moves.append((f, wnids[int(fb.group(1))]))
        elif VAL_NAME_RE.match(f.name):
            bare += 1
            plan.unplaced.append((f, "needs --labels (devkit ground truth + --meta, or LOC_val_solution.csv)"))
        else:
            plan.unplaced.append((f, "name carries no synset and no labels file was given"))
    if not plan.moves and bare:  # the devkit's or Kaggle's flat folder: its classes are in a file not given
        raise ArtTRTError(f"{visible(str(src))} is a flat folder of ILSVRC2012_val_<n> images ({bare} of {len(files)} "
                          "files), whose classes are in a labels file: add --labels LOC_val_solution.csv (Kaggle) or "
                          "--labels ILSVRC2012_validation_ground_truth.txt --meta meta.mat (the devkit's); "
                          "nothing was placed")
    return plan


def check_destination(plan: Placement, dst: Path) -> None:
    """--dst and each class folder the plan writes into are folders (or can be made): one sentence otherwise,
    before any file is linked, copied or moved."""
    for folder in [dst, *sorted({dst / w for _, w in plan.moves})]:
        if folder.exists() and not folder.is_dir():
            what = "--dst" if folder == dst else "class folder"
            raise ArtTRTError(f"{what} {folder} is a file, not a folder: nothing was placed")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def apply_placement(plan: Placement, dst: Path, mode: str = "link", dry_run: bool = False) -> Summary:
    """Places the planned files under dst/<wnid>/; never overwrites a different file already there.

    Args:
        mode: "link" (hard link, falling back to copy), "copy" or "move".
        dry_run: count only, change nothing.
    """
    if mode not in ("link", "copy", "move"):
        raise ValueError(mode)
    check_destination(plan, dst)  # every folder it will write into, before anything is placed
    summary = Summary(unplaced=list(plan.unplaced))
    summary.classes = len({w for _, w in plan.moves})
    # where each file that is moved goes: a link to one of them is made to point to its new place
    planned = {_absolute(src): dst / wnid / src.name for src, wnid in plan.moves if not src.is_symlink()}
    for src, wnid in plan.moves:
        target = dst / wnid / src.name
        if src.is_symlink() and _link_target(src) not in planned and not os.path.exists(_link_target(src)):
            summary.unplaced.append((src, f"a link that points nowhere ({os.readlink(src)}): left as it is"))
            continue
        if target.exists():
            if _same_file(src, target):
                summary.already += 1
            else:
                summary.unplaced.append((src, f"{target} exists with other content (left as it is)"))
            continue
        if dry_run:
            summary.placed += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "move" and src.is_symlink():
            to = _link_target(src)
            _move_link(src, target, planned.get(to, Path(to)))
        elif mode == "move":
            try:
                os.rename(src, target)  # one filesystem: atomic
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                _copy_atomic(src, target)  # across filesystems: whole under the final name, or not at all
                src.unlink()
        elif mode == "link":
            try:
                os.link(src, target)
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                _copy_atomic(src, target)
                summary.copied_not_linked += 1
        else:
            _copy_atomic(src, target)
        summary.placed += 1
    return summary


def _absolute(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _link_target(link: Path) -> str:
    """Where a symbolic link points, as an absolute path (its text taken from the link's own folder)."""
    return os.path.normpath(os.path.join(os.path.abspath(link.parent), os.readlink(link)))


def _move_link(src: Path, target: Path, to: Path) -> None:
    """Moves a symbolic link so that it points where its file now is (`to`: its target, or where that target is
    moved): a relative link stays relative from its new folder (moved as it is, it would dangle), an absolute one
    absolute; made under a temporary name, then renamed."""
    text = os.readlink(src)
    new = str(to) if os.path.isabs(text) else os.path.relpath(_absolute(to), _absolute(target.parent))
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    os.symlink(new, tmp)
    try:
        os.replace(tmp, target)
    except OSError:
        tmp.unlink()
        raise
    src.unlink()


def _copy_atomic(src: Path, target: Path) -> None:
    """Copies src to target through a temporary name beside it: an interruption never leaves a partial file
    under the final name."""
    with atomic_path(target) as tmp:
        shutil.copy2(src, tmp)


LISTED = 10  # files not placed that the summary names one by one


def format_summary(plan: Placement, summary: Summary, dst: Path, mode: str, dry_run: bool) -> str:
    """The lines format_dataset.py prints: counts, then the first files it could not place (and the rest counted
    by reason)."""
    verb = {"link": "linked", "copy": "copied", "move": "moved"}[mode]
    lines = [f"source form: {plan.form}",
             f"{'would be ' if dry_run else ''}{verb}: {summary.placed}"
             + (f" ({summary.copied_not_linked} copied: hard links not possible)" if summary.copied_not_linked else ""),
             f"already in place: {summary.already}",
             f"classes: {summary.classes}",
             f"not placed: {len(summary.unplaced)}"]
    listed = summary.unplaced[:LISTED]
    lines += [f"  {visible(str(p))}: {visible(why)}" for p, why in listed]  # names as escapes
    if len(summary.unplaced) > len(listed):  # 50,000 lines help nobody: the rest counted by reason
        reasons = collections.Counter(why for _, why in summary.unplaced[len(listed):])  # in order first seen
        lines.append(f"  ... and {len(summary.unplaced) - len(listed)} more: "
                     + "; ".join(f"{n} {visible(why)}" for why, n in reasons.items()))
    lines.append(f"destination: {dst}")
    return "\n".join(lines)
