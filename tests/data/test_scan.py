"""Scanning class folders: bad folders refused in one sentence, classes matched by name."""
from __future__ import annotations

import pytest

from tests.conftest import write_jpeg
from utils.core.errors import ArtTRTError
from utils.data.scan import scan_dataset


@pytest.mark.parametrize("setup, message", [
    (lambda r: None, r"^dataset folder \S+/ds does not exist$"),
    (lambda r: r.mkdir(), r"^dataset folder \S+/ds holds no class folders \(expected \S+/ds/<wnid>/<image>; "
                          r"format_dataset.py makes that layout\)$"),
    (lambda r: (r / "n01440764").mkdir(parents=True), r"^dataset folder \S+/ds holds class folders but no images$"),
    (lambda r: write_jpeg(r / "cats" / "a.jpg"), r"^class folder 'cats' in \S+/ds is not among ImageNet-1k wnids "
                                                 r"\(pass --class_map FILE for other classes\)$"),
])
def test_bad_dataset_folders(tmp_path, setup, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(ArtTRTError, match=message):
        scan_dataset(root)


def test_class_map_for_other_class_counts(tmp_path):
    root = tmp_path / "ds"
    write_jpeg(root / "cats" / "a.jpg")
    write_jpeg(root / "dogs" / "b.jpg")
    cmap = tmp_path / "classes.txt"
    cmap.write_text("dogs\ncats\n")
    idx = scan_dataset(root, num_classes=2, class_map=cmap)
    assert idx.labels == [1, 0]  # by the map, not by folder sort order
    with pytest.raises(ArtTRTError, match="names 2 classes but the network has 10"):
        scan_dataset(root, num_classes=10, class_map=cmap)
    with pytest.raises(ArtTRTError, match=r"^the network has 2 outputs, not the 1000 ImageNet classes: pass "
                                          r"--class_map FILE naming the class folders in output order$"):
        scan_dataset(root, num_classes=2)


def test_wnid_folders_map_to_imagenet_indices_not_folder_order(tmp_path):
    """Two of the 1000 folders: tench is output 0, toilet tissue output 999 (by folder order they would be
    0 and 1). Hidden folders, other files and upper-case extensions are handled."""
    root = tmp_path / "ds"
    write_jpeg(root / "n15075141" / "b.JPG")
    write_jpeg(root / "n01440764" / "a.jpg")
    write_jpeg(root / "n01440764" / "c.jpeg")
    (root / "n01440764" / "notes.txt").write_text("not an image")
    write_jpeg(root / ".thumbs" / "x.jpg")
    idx = scan_dataset(root)
    assert idx.files == ["n01440764/a.jpg", "n01440764/c.jpeg", "n15075141/b.JPG"]
    assert idx.labels == [0, 0, 999] and len(idx.class_names) == 1000 and idx.class_names[999] == "n15075141"


def test_class_map_files_are_checked(tmp_path):
    root = tmp_path / "ds"
    write_jpeg(root / "cats" / "a.jpg")
    with pytest.raises(ArtTRTError, match=r"^class map file \S+none.txt does not exist$"):
        scan_dataset(root, num_classes=1, class_map=tmp_path / "none.txt")
    twice = tmp_path / "twice.txt"
    twice.write_text("cats\ncats\n")
    with pytest.raises(ArtTRTError, match=r"^class map file \S+twice.txt names a class twice$"):
        scan_dataset(root, num_classes=2, class_map=twice)
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("\n dogs \n\ncats\n")
    assert scan_dataset(root, num_classes=2, class_map=spaced).labels == [1]
    with pytest.raises(ArtTRTError, match="'cats' in .* is not among the class map$"):
        scan_dataset(root, num_classes=1, class_map=_write(tmp_path / "dogs.txt", "dogs\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_the_fingerprint_changes_with_every_fact_of_every_file(tmp_path):
    """Stale pixels come from a fingerprint that misses a change: each of these must change it."""
    import os
    import shutil

    root = tmp_path / "ds"
    a = write_jpeg(root / "n01440764" / "a.jpg", seed=1)
    write_jpeg(root / "n01443537" / "b.jpg", seed=2)

    def fp():
        return scan_dataset(root).fingerprint()

    first = fp()
    assert fp() == first  # nothing changed, nothing to rebuild
    seen = {first}

    def changed(what):
        now = fp()
        assert now not in seen, what
        seen.add(now)

    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed("modification time")
    write_jpeg(a, seed=3, quality=50)  # rewritten in place, same name
    changed("content rewritten in place")
    st = a.stat()
    data = a.read_bytes()
    a.write_bytes(data[::-1][:len(data)])  # same size, other bytes, old times restored (touch -r)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed("same size and mtime, new ctime")
    shutil.copy2(a, tmp_path / "copy.jpg")
    os.replace(tmp_path / "copy.jpg", a)  # same bytes, same mtime, another inode
    changed("replaced by a copy")
    (root / "n01443537" / "b.jpg").rename(root / "n01443537" / "c.jpg")
    changed("renamed")
    (root / "n01484850").mkdir()
    (root / "n01443537" / "c.jpg").rename(root / "n01484850" / "c.jpg")
    changed("moved to another class")
    write_jpeg(root / "n01484850" / "d.jpg")
    changed("added")
