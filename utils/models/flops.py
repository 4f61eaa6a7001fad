"""What one image costs a network: floating-point operations and activations, counted once per network on the CPU
(fp32, one image of its crop) by PyTorch's own counter, torch.utils.flop_counter.FlopCounterMode (built into
PyTorch, kept in step with its operators, so no extra package; fvcore, which timm's benchmark.py uses, is no longer
maintained). FLOPs count a multiply-add as 2 (matmul, convolution, attention), as FlopCounterMode and NVIDIA's peak
figures do; activations are the elements written by those same operators (fvcore's definition, which timm reports).

Usage:
    cost = image_cost(net)     # {"gflops_per_image": 4.09, "activations_per_image": 11.1e6, ...}
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    import torch
    from utils.models.networks import Network
else:
    from utils.core.deps import torch

COUNTER = "torch.utils.flop_counter.FlopCounterMode"


def counted_cost(net: "Network") -> Dict[str, Any]:
    """The cost image_cost counted on this network before (the study counts it before a network's first runner is
    made, which may move or convert the model); {} where it was not counted."""
    return dict(getattr(net, "_image_cost", None) or {})


def image_cost(net: "Network") -> Dict[str, Any]:
    """{"gflops_per_image", "activations_per_image", "flops_counter"} of net on one image (cached on the Network)."""
    if counted_cost(net):
        return counted_cost(net)
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    counted = {torch.ops.aten.convolution.default, torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
               torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default,
               torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
               torch.ops.aten._scaled_dot_product_efficient_attention.default,
               torch.ops.aten._scaled_dot_product_flash_attention.default}

    class Activations(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.elements = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            if func in counted:
                first = out[0] if isinstance(out, (tuple, list)) else out
                self.elements += int(first.numel())
            return out

    crop = int(net.preprocess.crop)
    param = next(net.model.parameters(), None)
    x = torch.zeros(1, 3, crop, crop, device=param.device if param is not None else "cpu")
    flops = FlopCounterMode(display=False)
    acts = Activations()
    model = net.model
    # attention counted as the matrix products it is: PyTorch's fused paths (nn.MultiheadAttention's fast path, the
    # CPU flash kernel of scaled_dot_product_attention) are not operators FlopCounterMode knows, the math path is
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), flops, acts:
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    cost: Dict[str, Any] = {"gflops_per_image": round(flops.get_total_flops() / 1e9, 4),
                            "activations_per_image": acts.elements, "flops_counter": COUNTER}
    object.__setattr__(net, "_image_cost", cost)
    return dict(cost)
