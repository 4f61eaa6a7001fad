"""The dataset scan and the decoded cache: keys, invalidation, truncation, bad images, identical pixels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import write_jpeg
from utils.datasets import Normalizer, decode_pil, open_dataset, scan_dataset, transform_uint8
from utils.errors import ArtTRTError
from utils.networks import LITE_PREPROCESS, Preprocess

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


def test_parallel_decoding_gives_the_same_cache(tiny_dataset, tmp_path):
    for i in range(20):
        write_jpeg(tiny_dataset / "n01440764" / f"extra{i}.jpg", seed=i)
    a = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "a", gpu_decode=False, workers=1)
    b = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "b", gpu_decode=False, workers=2)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and a.files == b.files


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


def test_normalizer_matches_the_formula():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    y = Normalizer(LITE_PREPROCESS, torch.device("cpu"))(x)
    assert torch.allclose(y, x.float() / 127.5 - 1.0, atol=1e-6)
    assert float(y.min()) >= -1.0 - 1e-6 and float(y.max()) <= 1.0 + 1e-6


def test_full_disk_is_one_sentence_and_leaves_no_cache(tiny_dataset, tmp_path, monkeypatch):
    import errno

    import utils.datasets as d

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(d, "_decode_all", full)
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


def test_jpeg_layout_sorts_what_nvjpeg_gets(tmp_path):
    from utils.datasets import _gpu_decodable, jpeg_layout

    base = write_jpeg(tmp_path / "a.jpg").read_bytes()
    prog = write_jpeg(tmp_path / "b.jpg", progressive=True).read_bytes()
    gray = write_jpeg(tmp_path / "c.jpg", mode="L").read_bytes()
    cmyk = write_jpeg(tmp_path / "d.jpg", mode="CMYK").read_bytes()
    assert jpeg_layout(base) == (3, False) and jpeg_layout(prog) == (3, True)
    assert jpeg_layout(gray) == (1, False) and jpeg_layout(cmyk)[0] == 4
    assert jpeg_layout(b"\x89PNG\r\n") is None
    assert [_gpu_decodable(d) for d in (base, prog, gray, cmyk)] == [True, True, True, False]


def test_grouped_transform_equals_one_by_one():
    from utils.datasets import transform_grouped

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
            for h, w in ((60, 80), (70, 64), (60, 80), (90, 90))]
    together = transform_grouped(imgs, PP)
    for k, im in enumerate(imgs):
        assert torch.equal(together[k], transform_uint8(im, PP))


def test_gpu_decoder_choice():
    from utils.datasets import gpu_jpeg_decoder

    assert gpu_jpeg_decoder("torchvision")[0] == "torchvision"
    with pytest.raises(ArtTRTError, match="--gpu_decoder must be one of"):
        gpu_jpeg_decoder("pillow-simd")
    try:
        import nvidia.nvimgcodec  # noqa: F401
    except ImportError:
        with pytest.raises(ArtTRTError, match="pip install 'nvidia-nvimgcodec-cu13"):
            gpu_jpeg_decoder("nvimgcodec")
        assert gpu_jpeg_decoder("auto")[0] == "torchvision"
