"""Does ONNX Runtime's CUDA provider leave the process's CUDA runtime in a state PyTorch trips over?

Runs a PyTorch kernel, an ONNX Runtime CUDA session (IO-bound to PyTorch tensors, as the onnxrt backend does),
then asks the CUDA runtime for its last error (what PyTorch's next kernel-launch check would read) and runs
PyTorch again. An H200 study of 2026-11-29 saw "CUDA error: resource already mapped" in PyTorch after ONNX
Runtime setups; since then a study runs every ONNX Runtime GPU setup in a process of its own.

Usage (GPU, onnxruntime-gpu): python benchmarks/ort_beside_torch.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch
    import torchvision

    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    import onnxruntime as ort
    from cuda.bindings import runtime as rt

    from utils.backends.onnxrt import OnnxRuntimeRunner
    from utils.data.preprocess import Preprocess

    x = torch.randn(8, 3, 224, 224, device="cuda")
    torch.relu(x).sum().item()
    model = torchvision.models.resnet18().eval()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r18.onnx"
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}})
        with OnnxRuntimeRunner(path, Preprocess(), provider="cuda") as r:
            for bs in (1, 8, 256):
                y = r.infer(torch.randn(bs, 3, 224, 224, device="cuda"))
                print(f"onnxruntime {ort.__version__} bs{bs}: output {tuple(y.shape)}, providers {r.providers_used[:1]}")
    err = rt.cudaGetLastError()[0]
    print("CUDA runtime last error after ONNX Runtime:", err.name if hasattr(err, "name") else err)
    try:
        torch.relu(x).sum().item()
        z = torch.empty(256, 64, 112, 112, device="cuda")
        print("PyTorch after ONNX Runtime: fine,", f"{torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB free", z.shape[0])
    except Exception as e:  # noqa: BLE001 - the finding itself
        print("PyTorch after ONNX Runtime:", type(e).__name__, str(e).splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
