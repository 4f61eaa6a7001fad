"""The decoded dataset cache: pixels, labels, keys, invalidation, truncation, bad images, full disks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import write_jpeg
from utils.core.errors import ArtTRTError
from utils.data.cache import open_dataset
from utils.data.decode import decode_pil
from utils.data.preprocess import Preprocess, transform_uint8

PP = Preprocess(resize=64, crop=56)


def test_cached_pixels_and_labels_equal_the_uncached_transform(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=1)
    assert len(ds) == 6 and ds.images.shape == (6, 3, 56, 56)
    for i, rel in enumerate(ds.files):
        direct = transform_uint8(decode_pil((tiny_dataset / rel).read_bytes()), PP).numpy()
        assert np.array_equal(ds.images[i], direct)
    # labels are ImageNet class indices of the wnid folders (tench 0, goldfish 1, great white shark 2)
    assert sorted(set(ds.labels.tolist())) == [0, 1, 2]
    assert ds.meta["decoder"]["cpu"] == 6


def test_grayscale_and_cmyk_are_converted_not_failed(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=1)
    assert not ds.meta["skipped"]
    gray = ds.files.index("n01443537/img4.jpg")
    img = ds.images[gray].astype(int)
    assert np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])  # gray replicated to RGB


def test_cache_is_reused_then_invalidated_when_the_dataset_changes(tiny_dataset, tmp_path):
    c = tmp_path / "c"
    first = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    data_file = next(c.glob("*.u8"))
    mtime = data_file.stat().st_mtime_ns
    again = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert again.meta["key"] == first.meta["key"] and data_file.stat().st_mtime_ns == mtime
    write_jpeg(tiny_dataset / "n01484850" / "new.jpg", seed=9)
    changed = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert changed.meta["key"] != first.meta["key"] and len(changed) == 7
    # another transform is another cache
    other = open_dataset(tiny_dataset, Preprocess(resize=64, crop=48), cache_dir=c, gpu_decode=False, workers=1)
    assert other.images.shape[-1] == 48


def test_another_resize_with_the_same_crop_is_another_cache(tiny_dataset, tmp_path):
    """Same crop, other resize (ResNet's 256 vs timm's 232 for 224): other pixels, never the cached ones."""
    c = tmp_path / "c"
    a = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    other_pp = Preprocess(resize=80, crop=56)
    b = open_dataset(tiny_dataset, other_pp, cache_dir=c, gpu_decode=False, workers=1)
    assert b.meta["key"] != a.meta["key"] and not b.meta["cached"]
    assert not np.array_equal(np.asarray(a.images), np.asarray(b.images))
    for i, rel in enumerate(b.files):
        assert np.array_equal(b.images[i], transform_uint8(decode_pil((tiny_dataset / rel).read_bytes()),
                                                           other_pp).numpy())
    back = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert np.array_equal(np.asarray(back.images), np.asarray(a.images))


def test_truncated_and_foreign_caches_are_rebuilt(tiny_dataset, tmp_path):
    c = tmp_path / "c"
    good = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    ref = np.array(good.images)
    data_file = next(c.glob("*.u8"))
    with open(data_file, "r+b") as f:
        f.truncate(1000)
    rebuilt = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert np.array_equal(np.asarray(rebuilt.images), ref)
    meta_file = next(c.glob("*.json"))
    meta_file.write_text(json.dumps({"magic": "something else"}))
    again = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert np.array_equal(np.asarray(again.images), ref)
    meta_file.write_text("{not json")
    assert len(open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)) == 6
    # pixels lost after the meta was written (a power cut before write-back): a sampled digest differs
    with open(data_file, "r+b") as f:
        f.seek(5 * 3 * 56 * 56)
        f.write(bytes(3 * 56 * 56))
    lost = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert np.array_equal(np.asarray(lost.images), ref)


def test_corrupt_jpeg_is_skipped_and_counted_or_fatal_with_strict(tiny_dataset, tmp_path):
    good = tiny_dataset / "n01440764" / "img0.jpg"
    bad = tiny_dataset / "n01440764" / "broken.jpg"
    bad.write_bytes(good.read_bytes()[:300])  # a truncated JPEG
    ds = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=1)
    assert len(ds) == 6 and [s[0] for s in ds.meta["skipped"]] == ["n01440764/broken.jpg"]
    with pytest.raises(ArtTRTError, match="--strict"):
        open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c2", gpu_decode=False, workers=1, strict=True)
    assert not list((tmp_path / "c2").glob("*.json"))  # no cache that looks valid was left
    assert bad.is_file()  # the user's file is untouched


def test_full_disk_is_one_sentence_and_leaves_no_cache(tiny_dataset, tmp_path, monkeypatch):
    import errno

    import utils.data.cache as d

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(d, "decode_all", full)
    with pytest.raises(ArtTRTError, match="is full"):
        open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=1)
    assert list((tmp_path / "c").iterdir()) == []  # nothing half-written, nothing that looks valid


def test_cache_size_on_disk_and_batches_read_from_it(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=1)
    data = next((tmp_path / "c").glob("*.u8"))
    assert data.stat().st_size == ds.meta["bytes"] == 6 * 3 * 56 * 56
    got = torch.cat([x for x, _, _ in ds.batches(4)])
    assert torch.equal(got, torch.from_numpy(np.asarray(ds.images)))
    picked = [x for x, _, _ in ds.batches(2, indices=[5, 0, 3])]
    assert torch.equal(picked[0][0], torch.from_numpy(np.asarray(ds.images[5])))


def test_gpu_decode_needs_a_gpu(tiny_dataset, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ArtTRTError, match="needs a CUDA GPU"):
        open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=True)


@pytest.mark.parametrize("key, edit", [
    ("files", lambda m: m["files"].reverse()),
    ("labels", lambda m: m["labels"].__setitem__(0, (m["labels"][0] + 1) % 3)),
    ("class_names", lambda m: m["class_names"].__setitem__(0, "n99999999")),
    ("checksums", lambda m: m["checksums"].__setitem__(0, m["checksums"][0] + 1)),
    ("count", lambda m: m.__setitem__("count", m["count"] - 1)),
    ("crop", lambda m: m.__setitem__("crop", 28)),
])
def test_every_fact_of_an_edited_sidecar_means_a_rebuild(tiny_dataset, tmp_path, key, edit):
    """The sidecar says which file each row is, its label, the class names, the pixel checksums, how many rows
    and their size: an edit of any of them (by hand, by a bug, by another version) must not be believed."""
    c = tmp_path / "c"
    first = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    sidecar = next(c.glob("*.json"))
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))
    again = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert not again.meta["cached"], key
    assert again.files == first.files and again.labels.tolist() == first.labels.tolist()
    assert np.array_equal(np.asarray(again.images), np.asarray(first.images))


@pytest.mark.parametrize("row", [0, -1])
def test_zeroed_pixels_at_either_end_are_caught_at_load(tiny_dataset, tmp_path, row):
    """What a power cut before write-back leaves: zeros under a valid name. The sampled digests cover the first
    and the last image."""
    c = tmp_path / "c"
    first = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    ref = np.array(first.images)  # a copy: the memory map would show the zeros written below
    data = next(c.glob("*.u8"))
    n = len(first)
    raw = np.memmap(data, dtype=np.uint8, mode="r+", shape=(n, 3, 56, 56))
    raw[row] = 0
    raw.flush()
    del raw
    again = open_dataset(tiny_dataset, PP, cache_dir=c, gpu_decode=False, workers=1)
    assert not again.meta["cached"] and np.array_equal(np.asarray(again.images), ref)


def test_the_sampled_digests_spread_over_the_whole_cache(tmp_path):
    from utils.data.cache import _digest, _sample_digests

    images = np.random.default_rng(0).integers(0, 256, (100, 3, 4, 4), dtype=np.uint8)
    path = tmp_path / "c.u8"
    images.tofile(path)
    os_mode = path.stat().st_mode
    path.chmod(0o444)  # read-only: the check only reads
    samples = _sample_digests(path, 100, 4)
    assert len(samples) == 64 and samples[0][0] == 0 and samples[-1][0] == 99
    assert all(d == _digest(images[i]) for i, d in samples) and len(samples[0][1]) == 16
    assert [i for i, _ in _sample_digests(path, 5, 4)] == [0, 1, 2, 3, 4] and _sample_digests(path, 0, 4) == []
    path.chmod(os_mode)


def test_a_skipped_unreadable_file_that_can_be_read_now_means_a_rebuild(tmp_path):
    from utils.data.cache import _unreadable_now_readable
    from utils.data.lanes import UNREADABLE

    write_jpeg(tmp_path / "n01440764" / "a.jpg")
    check = _unreadable_now_readable(tmp_path)
    assert check({"skipped": [["n01440764/a.jpg", UNREADABLE + "Permission denied"]]}) == \
        "skipped n01440764/a.jpg as unreadable, and it can be read now"
    assert check({"skipped": [["n01440764/a.jpg", "cannot identify image file"]]}) is None  # broken, not unreadable
    assert check({"skipped": [["n01440764/gone.jpg", UNREADABLE + "Permission denied"]]}) is None
    assert check({}) is None and check({"skipped": []}) is None


def test_the_feed_fits_the_gpu():
    """A discrete GPU: the cache page-locked in place where CUDA allows, else a pinned copy; an integrated GPU (a
    Jetson) page-locks nothing (one memory: a pinned staging copy buys no DMA); the CPU: host."""
    from utils.data.hostmem import feed_choice

    asked = []

    def pin(ok):
        return lambda: asked.append(ok) or ok

    assert feed_choice(True, False, pin(True)) == (True, False, "page-locked cache (cuMemHostRegister)")
    assert feed_choice(True, False, pin(False)) == (False, True, "pinned copy per batch")
    assert feed_choice(True, True, pin(True)) == (False, False, "pageable copy (integrated GPU: host and GPU share "
                                                               "one memory)")
    assert feed_choice(False, False, pin(True)) == (False, False, "host")
    assert asked == [True, False]  # page-locking is tried on a discrete GPU only
