"""Decoding one image: PIL for every format (grayscale, CMYK and palette converted to RGB), the JPEG layout
read from its SOF marker, and the batched GPU JPEG decoders (nvImageCodec, else torchvision's nvJPEG).

Usage:
    img = decode_pil(Path("a.jpg").read_bytes())          # uint8 CHW
    library, decode, hwc = gpu_jpeg_decoder("auto")       # decode(list of bytes) -> CUDA tensors or None
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from PIL import Image

from utils.core.errors import ArtTRTError

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    from utils.core.deps import np, torch


# Pillow's modes of more than 8 bits per pixel, and the value each takes for white (a 16-bit PNG or TIFF is "I;16" or,
# in older Pillow, "I" holding 0..65535): scaled to 8 bits as libpng and OpenCV's IMREAD_COLOR do (v / 257)
WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def decode_pil(data: bytes) -> torch.Tensor:
    """Decodes any image with PIL (grayscale, CMYK, palette converted to RGB); raises on broken files."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # raises OSError on a truncated file (LOAD_TRUNCATED_IMAGES stays False)
        if im.mode in WIDE_MODES or im.mode == "F":  # wider than 8 bits: Pillow's convert would clip it
            wide = np.asarray(im).astype(np.float64)
            top = float(np.nanmax(wide)) if wide.size else 0.0
            if im.mode == "F":  # float: 0..1 as most writers mean it, else 0..255
                white = 1.0 if top <= 1.0 else 255.0
            else:  # 16-bit: 0..65535, unless the values are 8-bit ones in a wider mode (convert("I") writes those)
                white = WIDE_MODES[im.mode] if top > 255 else 255.0
            arr = np.clip(np.round(np.nan_to_num(wide) * (255.0 / white)), 0, 255).astype(np.uint8)
            return torch.from_numpy(np.repeat(arr[None], 3, axis=0).copy())
        rgb = im.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def jpeg_layout(data: bytes) -> Optional[Tuple[int, bool]]:
    """(colour components, progressive) read from a JPEG's SOF marker; None if not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD9:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 < n:
            return data[i + 9], marker in (0xC2, 0xC6, 0xCA, 0xCE)
        i += 2 + length
    return None


def gpu_decodable(data: bytes) -> bool:
    """RGB/gray JPEGs go to nvjpeg; CMYK/YCCK and non-JPEG files go to PIL. Progressive JPEGs are tried
    on the GPU and fall back to PIL where nvjpeg refuses them (counted as refused)."""
    layout = jpeg_layout(data)
    return layout is not None and layout[0] in (1, 3)


GPU_DECODERS = ("auto", "nvimgcodec", "torchvision")
GpuDecode = Callable[[List[bytes]], List[Optional["torch.Tensor"]]]


def gpu_jpeg_decoder(kind: str = "auto", cpu_threads: int = 0) -> Tuple[str, GpuDecode, bool]:
    """A batched GPU JPEG decoder: (library, decode, hwc). decode returns uint8 CUDA tensors, HWC where
    hwc is True (nvImageCodec's native interleaved layout) else CHW, and None where it refuses a file.

    nvImageCodec (NVIDIA's codec library) is preferred: it uses the GPU's hardware JPEG engines where
    the GPU has them (A100, H100, H200), then CUDA nvJPEG, and its pixels are nearer PIL's. torchvision's
    decode_jpeg (CUDA nvJPEG) is the fallback that needs no extra package.
    """
    if kind not in GPU_DECODERS:
        raise ArtTRTError(f"--gpu_decoder must be one of {', '.join(GPU_DECODERS)}")
    if kind in ("auto", "nvimgcodec"):
        try:
            from nvidia import nvimgcodec
        except ImportError as err:
            if kind == "nvimgcodec":
                raise ArtTRTError("--gpu_decoder nvimgcodec needs nvImageCodec: pip install "
                                  "'nvidia-nvimgcodec-cu13[nvjpeg]' (or -cu12)") from err
        else:
            dec = nvimgcodec.Decoder(max_num_cpu_threads=cpu_threads,
                                     backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY),
                                               nvimgcodec.Backend(nvimgcodec.BackendKind.GPU_ONLY)])
            # EXIF orientation is not applied, as in the PIL path; interleaved RGB is the engines' own layout.
            params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB,
                                             sample_format=nvimgcodec.SampleFormat.I_RGB)

            def decode_nvimgcodec(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
                stream = torch.cuda.current_stream().cuda_stream
                images = dec.decode([nvimgcodec.CodeStream(d) for d in datas], params=params, cuda_stream=stream)
                # torch.as_tensor keeps each nvImageCodec image alive through __cuda_array_interface__
                out: List[Optional[torch.Tensor]] = []
                for im in images:
                    t = None if im is None else torch.as_tensor(im, device="cuda")
                    out.append(t if t is not None and t.dim() == 3 and t.shape[2] == 3 else None)
                return out

            return "nvimgcodec", decode_nvimgcodec, True
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode_torchvision(datas: List[bytes]) -> List[Optional[torch.Tensor]]:
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda"))
        except RuntimeError:
            out: List[Optional[torch.Tensor]] = []
            for t in tensors:  # find the ones nvJPEG refuses
                try:
                    out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device="cuda"))
                except RuntimeError:
                    out.append(None)
            return out

    return "torchvision", decode_torchvision, False


def gpu_decoder_fails(decode: GpuDecode) -> Optional[str]:
    """Why this GPU decoder cannot decode a plain baseline JPEG, or None where it can: checked once before a lane's
    first file rather than assumed (a torchvision built without nvJPEG, as some of NVIDIA's Jetson builds are, refuses
    every file; each would go through PIL and count as refused)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 64, 32)).save(buf, "JPEG", quality=90)
    try:
        got = decode([buf.getvalue()])
    except Exception as err:  # a library's own error type: RuntimeError, NotImplementedError, its own
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no message'}"
    if not got or got[0] is None:
        return "it refused a plain baseline JPEG"
    return None
