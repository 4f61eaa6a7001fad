"""torchvision's ViT, Swin and ConvNeXt (issue 42) through the ONNX chain on the CPU: the export (checked against
PyTorch by export_onnx itself), ModelOpt's AutoCast to fp16 and bf16, and ModelOpt's int8 Q/DQ, which quantizes a
transformer's MatMuls as well as its convolutions. The networks are the torchvision classes at small sizes (the
same operators: nn.MultiheadAttention, shifted-window attention with its relative position bias, depthwise
convolutions with LayerNorm and layer scale), so each file takes seconds, not minutes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torchvision.models import convnext, swin_transformer, vision_transformer

from utils.backends.onnxrt import OnnxRuntimeRunner
from utils.data.options import DataOptions
from utils.models.chain import onnx_for
from utils.models.networks import Network, Preprocess
from utils.models.precision import CalibOptions, convert_precision

pytest.importorskip("modelopt.onnx.quantization")
pytestmark = pytest.mark.slow  # three real exports and ModelOpt conversions (about 20 s)

CROP = 32


def _vit() -> torch.nn.Module:
    return vision_transformer.VisionTransformer(image_size=CROP, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=64, mlp_dim=128, num_classes=1000)


def _swin() -> torch.nn.Module:
    return swin_transformer.SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                                            window_size=[4, 4], num_classes=1000)


def _convnext() -> torch.nn.Module:
    return convnext.ConvNeXt([convnext.CNBlockConfig(32, 64, 1), convnext.CNBlockConfig(64, None, 1)],
                             num_classes=1000)


BUILDERS = {"vit": _vit, "swin": _swin, "convnext": _convnext}


def _net(kind: str) -> Network:
    torch.manual_seed(0)
    model = BUILDERS[kind]().eval()
    for m in model.modules():  # torchvision starts ViT's head at zero (every class alike): give it weights
        if isinstance(m, torch.nn.Linear) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.05)
    return Network(f"tiny_{kind}", model, Preprocess(resize=CROP, crop=CROP), 1000, "seeded")


def _ops(path: Path) -> list:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _ort(path: Path, x: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """The file through ArtTRT's ONNX Runtime runner, as a run would (an fp16 file on the CPU at the "extended"
    optimisation level: "all" crashes ONNX Runtime 1.24 on ModelOpt's fp16 ViT, and does here on this tiny one)."""
    with OnnxRuntimeRunner(path, Preprocess(resize=CROP, crop=CROP), "cpu", precision) as runner:
        return runner.infer(torch.from_numpy(x)).float().numpy()


@pytest.mark.parametrize("kind", ["vit", "swin", "convnext"])
def test_export_autocast_and_qdq(kind, demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTTRT_WEIGHTS_DIR", str(tmp_path / "weights"))
    net = _net(kind)
    src, facts = onnx_for(net, (-1, 3, CROP, CROP))
    assert facts["max_abs_diff"] < 1e-3  # export_onnx ran the file beside PyTorch
    x = np.random.default_rng(0).random((2, 3, CROP, CROP), dtype=np.float32)
    with torch.inference_mode():
        ref = net.model(torch.from_numpy(x)).numpy()
    ops = _ops(src)
    assert "MatMul" in ops or "Gemm" in ops

    half, hf = convert_precision(src, "fp16", net)
    assert hf["tool"] == "modelopt.onnx.autocast"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(half)).graph.initializer)
    got = _ort(half, x, "fp16")
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 0.05 * np.abs(ref).max() + 1e-3

    bf16, bf = convert_precision(src, "bf16", net)
    assert bf["tool"] == "modelopt.onnx.autocast" and bf16 != half
    assert any(i.data_type == onnx.TensorProto.BFLOAT16 for i in onnx.load(str(bf16)).graph.initializer)

    calib = CalibOptions(calib_method="max", calib_size=8, quantizer="modelopt")
    q, qf = convert_precision(src, "int8", net, calib, DataOptions(str(demo_data)))
    graph = onnx.load(str(q)).graph
    made_by = {o: n for n in graph.node for o in n.output}

    def dequantized(node) -> bool:  # both inputs come through a DequantizeLinear (possibly after a Transpose)
        def through(name):
            n = made_by.get(name)
            while n is not None and n.op_type in ("Transpose", "Reshape"):
                n = made_by.get(n.input[0])
            return n is not None and n.op_type == "DequantizeLinear"
        return all(through(i) for i in node.input[:2])

    products = [n for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    quantized = [n.op_type for n in products if dequantized(n)]
    assert quantized, f"no quantized product in {kind}: {sorted({n.op_type for n in products})}"
    if kind != "convnext":  # a transformer's MatMuls, not only its patch-embedding convolution
        assert "MatMul" in quantized or "Gemm" in quantized
    got = _ort(q, x, "int8")
    assert np.isfinite(got).all()
    print(f"{kind}: {len(quantized)} of {len(products)} products quantized ({sorted(set(quantized))}); "
          f"fp16 max diff {np.abs(_ort(half, x, 'fp16') - ref).max():.2e}")
