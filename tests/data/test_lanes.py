"""The first pass in lanes: processes (forked or from the fork server) and the GPU lane's logic give the cache
the same pixels; a full disk inside a lane is one sentence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import write_jpeg
from utils.core.errors import ArtTRTError
from utils.data.cache import open_dataset
from utils.data.decode import jpeg_layout
from utils.data.preprocess import Preprocess
from utils.data.scan import scan_dataset

PP = Preprocess(resize=64, crop=56)


@pytest.mark.slow
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
    import utils.data.lanes as d

    monkeypatch.setattr(d, "_start_method", lambda kind: "forkserver")
    c = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=3)
    assert np.array_equal(np.asarray(a.images), np.asarray(c.images)) and c.meta["decoder"]["cpu"] == 156


def test_full_disk_inside_a_decoding_lane_is_one_sentence(tiny_dataset, tmp_path, monkeypatch):
    import errno

    import utils.data.lanes as d

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(d, "CHUNK", 2)  # several lanes, as processes (forked: they inherit the patch)
    monkeypatch.setattr(d.os, "pwrite", full)
    with pytest.raises(ArtTRTError, match="is full: the dataset cache was not written"):
        open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "c", gpu_decode=False, workers=2)
    assert list((tmp_path / "c").iterdir()) == []


def test_gpu_lane_batches_refusals_and_failures(tiny_dataset, tmp_path, monkeypatch):
    """The GPU lane's logic, run on the CPU with torchvision's CPU JPEG decoder standing in for nvJPEG
    (same batched call); like nvImageCodec, the stand-in refuses progressive JPEGs."""
    import utils.data.lanes as d
    from torchvision.io import ImageReadMode, decode_jpeg

    def cpu_decoder(kind="auto", cpu_threads=0):
        def decode(datas):
            return [None if jpeg_layout(b)[1] else decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8),
                                                                 mode=ImageReadMode.RGB) for b in datas]
        return "stand-in", decode, False

    monkeypatch.setattr(d, "gpu_jpeg_decoder", cpu_decoder)
    monkeypatch.setattr(d, "_start_method", lambda kind: "fork")  # the lanes inherit the stand-in
    monkeypatch.setattr(d, "CHUNK", 4)  # several claims of GPU_CLAIM chunks, and CPU lanes beside
    for i in range(30):
        write_jpeg(tiny_dataset / "n01484850" / f"x{i:02d}.jpg", size=(90, 70), seed=i, progressive=(i % 7 == 0))
    (tiny_dataset / "n01484850" / "x99.jpg").write_bytes(b"\xff\xd8\xff\xc0 broken")
    index = scan_dataset(tiny_dataset)
    ref = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "ref", gpu_decode=False, workers=1)
    for workers, lanes in ((1, 1), (3, 1), (3, 3)):
        out = tmp_path / f"out{workers}{lanes}.u8"
        shape = (len(index.files), 3, 56, 56)
        out.write_bytes(bytes(int(np.prod(shape))))
        stats = d.DecodeStats()
        ok = d.decode_all(index, PP, out, shape, workers, lanes, stats, progress=False)
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


def test_a_gpu_decoder_that_cannot_decode_is_found_before_the_first_file(tiny_dataset, tmp_path, monkeypatch):
    """A torchvision built without nvJPEG (some Jetson builds): decode_jpeg on CUDA raises for every file. The lane
    checks once, says why in the stats, and decodes on the CPU: no file counted as refused by the GPU."""
    import utils.data.lanes as d
    from utils.data.decode import gpu_decoder_fails

    def broken(kind="auto", cpu_threads=0):
        def decode(datas):
            raise RuntimeError("torchvision.io.decode_jpeg: not compiled with nvjpeg support\nmore")
        return "torchvision", decode, False

    said = "RuntimeError: torchvision.io.decode_jpeg: not compiled with nvjpeg support"
    assert gpu_decoder_fails(broken()[1]) == said
    assert gpu_decoder_fails(lambda datas: [None]) == "it refused a plain baseline JPEG"
    monkeypatch.setattr(d, "gpu_jpeg_decoder", broken)
    monkeypatch.setattr(d, "_start_method", lambda kind: "fork")
    index = scan_dataset(tiny_dataset)
    out = tmp_path / "out.u8"
    shape = (len(index.files), 3, 56, 56)
    out.write_bytes(bytes(int(np.prod(shape))))
    stats = d.DecodeStats()
    ok = d.decode_all(index, PP, out, shape, 1, 1, stats, progress=False)
    assert len(ok) == len(index.files) and stats.gpu == 0 and stats.gpu_refused == 0
    assert stats.gpu_library == f"none (torchvision cannot decode on this GPU: {said}): decoded on the CPU"
    ref = open_dataset(tiny_dataset, PP, cache_dir=tmp_path / "ref", gpu_decode=False, workers=1)
    got = np.memmap(out, dtype=np.uint8, mode="r", shape=shape)
    assert np.array_equal(got[ok], np.asarray(ref.images))  # the CPU lane's pixels: PIL's, identical
