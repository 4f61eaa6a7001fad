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


def test_parallel_decoding_gives_the_same_cache(tiny_dataset, tmp_path, monkeypatch):
    for i in range(150):  # more than two chunks, so the lanes run as processes sharing the work
        write_jpeg(tiny_dataset / "n01440764" / f"extra{i}.jpg", seed=i)
    (tiny_dataset / "n01440764" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    a = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "a", gpu_decode=False, workers=1)
    b = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "b", gpu_decode=False, workers=3)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and a.files == b.files
    assert len(b) == 156 and b.meta["decoder"]["cpu"] == 156 and b.meta["decoder"]["workers"] == 3
    assert [f for f, _ in b.meta["skipped"]] == ["n01440764/broken.jpg"]
    # lanes started by the fork server (as GPU lanes always are) give the same cache too
    import utils.datasets as d

    monkeypatch.setattr(d, "_start_method", lambda kind: "forkserver")
    c = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=3)
    assert np.array_equal(np.asarray(a.images), np.asarray(c.images)) and c.meta["decoder"]["cpu"] == 156


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


def test_full_disk_inside_a_decoding_lane_is_one_sentence(tiny_dataset, tmp_path, monkeypatch):
    import errno

    import utils.datasets as d

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(d, "CHUNK", 2)  # several lanes, as processes (forked: they inherit the patch)
    monkeypatch.setattr(d.os, "pwrite", full)
    with pytest.raises(ArtTRTError, match="is full: the dataset cache was not written"):
        open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=2)
    assert list((tmp_path / "c").iterdir()) == []


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


def _photo_crops(foolbox_dir, n=24):
    """Real photos cut to many different sizes (the mix a batch of ImageNet files has)."""
    photos = [decode_pil(p.read_bytes()) for p in sorted(foolbox_dir.glob("imagenet_*.jpg"))[:4]]
    rng = np.random.default_rng(0)
    crops = []
    for k in range(n):
        src = photos[k % len(photos)]
        h, w = int(rng.integers(60, src.shape[1] + 1)), int(rng.integers(60, src.shape[2] + 1))
        crops.append(src[:, :h, :w].contiguous())
    return crops


@pytest.mark.parametrize("pp", [PP, Preprocess(), Preprocess(resize=232, crop=224)])
def test_batched_matrix_transform_matches_the_one_by_one_transform(foolbox_dir, pp):
    from utils.resample import transform_padded

    crops = _photo_crops(foolbox_dir)
    one_by_one = torch.stack([transform_uint8(im, pp) for im in crops]).int()
    batched = transform_padded(crops, pp)
    diff = (batched.int() - one_by_one).abs()
    # torch's uint8 resize keeps 16-bit weights, this one float32: off by one at most, and rarely
    assert batched.shape == (len(crops), 3, pp.crop, pp.crop) and int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) < 0.005
    hwc = transform_padded([im.permute(1, 2, 0).contiguous() for im in crops], pp, hwc=True)
    assert torch.equal(hwc, batched)


def test_gpu_lane_batches_refusals_and_failures(tiny_dataset, tmp_path, monkeypatch):
    """The GPU lane's logic, run on the CPU with torchvision's CPU JPEG decoder standing in for nvJPEG
    (same batched call); like nvImageCodec, the stand-in refuses progressive JPEGs."""
    import utils.datasets as d
    from torchvision.io import ImageReadMode, decode_jpeg

    def cpu_decoder(kind="auto", cpu_threads=0):
        def decode(datas):
            return [None if d.jpeg_layout(b)[1] else decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8),
                                                                 mode=ImageReadMode.RGB) for b in datas]
        return "stand-in", decode, False

    monkeypatch.setattr(d, "gpu_jpeg_decoder", cpu_decoder)
    monkeypatch.setattr(d, "_start_method", lambda kind: "fork")  # the lanes inherit the stand-in
    monkeypatch.setattr(d, "CHUNK", 4)  # several claims of GPU_CLAIM chunks, and CPU lanes beside
    for i in range(30):
        write_jpeg(tiny_dataset / "n01484850" / f"x{i:02d}.jpg", size=(90, 70), seed=i, progressive=(i % 7 == 0))
    (tiny_dataset / "n01484850" / "x99.jpg").write_bytes(b"\xff\xd8\xff\xc0 broken")
    index = d.scan_dataset(tiny_dataset)
    ref = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "ref", gpu_decode=False, workers=1)
    for workers, lanes in ((1, 1), (3, 1), (3, 3)):
        out = tmp_path / f"out{workers}{lanes}.u8"
        shape = (len(index.files), 3, 56, 56)
        out.write_bytes(bytes(int(np.prod(shape))))
        stats = d.DecodeStats()
        ok = d._decode_all(index, PP, out, shape, workers, lanes, stats, progress=False)
        assert ok == [i for i, f in enumerate(index.files) if f != "n01484850/x99.jpg"]
        assert stats.gpu_library == "stand-in" and stats.skipped[0][0] == "n01484850/x99.jpg"
        got = np.memmap(out, dtype=np.uint8, mode="r", shape=shape)[ok]
        diff = np.abs(got.astype(int) - np.asarray(ref.images, dtype=int))
        assert diff.max() <= 1  # the batched transform against PIL + torch's uint8 resize
        progressive, cmyk = 5, 1  # x00 x07 x14 x21 x28; img5 is CMYK
        if lanes == workers:  # every file went through a GPU lane
            assert stats.gpu_refused == progressive + cmyk and stats.gpu == len(ok) - stats.gpu_refused
        for i, f in enumerate(ref.files):  # what the GPU refused went through PIL: identical pixels
            if f in ("n01484850/x00.jpg", "n01484850/img5.jpg"):
                assert np.array_equal(got[i], ref.images[i])


def test_gpu_decoder_choice():
    from utils.datasets import gpu_jpeg_decoder

    assert gpu_jpeg_decoder("torchvision")[0] == "torchvision" and gpu_jpeg_decoder("torchvision")[2] is False
    with pytest.raises(ArtTRTError, match="--gpu_decoder must be one of"):
        gpu_jpeg_decoder("pillow-simd")
    try:
        import nvidia.nvimgcodec  # noqa: F401
    except ImportError:
        with pytest.raises(ArtTRTError, match="pip install 'nvidia-nvimgcodec-cu13"):
            gpu_jpeg_decoder("nvimgcodec")
        assert gpu_jpeg_decoder("auto")[0] == "torchvision"
