"""Scanning class folders: bad folders refused in one sentence, classes matched by name."""
from __future__ import annotations

import pytest

from tests.conftest import write_jpeg
from utils.core.errors import ArtTRTError
from utils.data.scan import scan_dataset


@pytest.mark.parametrize("setup, message", [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "holds no class folders"),
    (lambda r: (r / "n01440764").mkdir(parents=True), "no images"),
    (lambda r: write_jpeg(r / "cats" / "a.jpg"), "not among ImageNet-1k wnids"),
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
    with pytest.raises(ArtTRTError, match="--class_map"):
        scan_dataset(root, num_classes=2)
