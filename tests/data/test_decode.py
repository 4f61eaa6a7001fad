"""Which files go to the GPU decoder, and which GPU decoder is chosen."""
from __future__ import annotations

import pytest

from tests.conftest import write_jpeg
from utils.core.errors import ArtTRTError


def test_jpeg_layout_sorts_what_nvjpeg_gets(tmp_path):
    from utils.data.decode import gpu_decodable, jpeg_layout

    base = write_jpeg(tmp_path / "a.jpg").read_bytes()
    prog = write_jpeg(tmp_path / "b.jpg", progressive=True).read_bytes()
    gray = write_jpeg(tmp_path / "c.jpg", mode="L").read_bytes()
    cmyk = write_jpeg(tmp_path / "d.jpg", mode="CMYK").read_bytes()
    assert jpeg_layout(base) == (3, False) and jpeg_layout(prog) == (3, True)
    assert jpeg_layout(gray) == (1, False) and jpeg_layout(cmyk)[0] == 4
    assert jpeg_layout(b"\x89PNG\r\n") is None
    assert [gpu_decodable(d) for d in (base, prog, gray, cmyk)] == [True, True, True, False]


def test_gpu_decoder_choice():
    from utils.data.decode import gpu_jpeg_decoder

    assert gpu_jpeg_decoder("torchvision")[0] == "torchvision" and gpu_jpeg_decoder("torchvision")[2] is False
    with pytest.raises(ArtTRTError, match="--gpu_decoder must be one of"):
        gpu_jpeg_decoder("pillow-simd")
    try:
        import nvidia.nvimgcodec  # noqa: F401
    except ImportError:
        with pytest.raises(ArtTRTError, match="pip install 'nvidia-nvimgcodec-cu13"):
            gpu_jpeg_decoder("nvimgcodec")
        assert gpu_jpeg_decoder("auto")[0] == "torchvision"
