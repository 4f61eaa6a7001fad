"""PyTorch -> ONNX export, checked and self-describing (the logic behind onnx_transform.py).

The exported file is checked with onnx.checker (full check), run with ONNX Runtime on a random
batch against PyTorch (max abs difference under EXPORT_ATOL), and carries in its metadata the
network name, input size, preprocessing (normalisation) and class count.

Usage:
    info = export_onnx(net, "weights/onnx/resnet18.onnx", input_shape=(-1, 3, 224, 224))
    meta = read_metadata("weights/onnx/resnet18.onnx")
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

import numpy as np

from utils.core.errors import ArtTRTError, first_line
from utils.core.fileio import atomic_path
from utils.data.preprocess import Preprocess
from utils.models.networks import Network

if TYPE_CHECKING:
    import onnx
    import torch
else:
    from utils.core.deps import onnx, torch


log = logging.getLogger(__name__)

OPSET = 18
# fp32 ONNX Runtime vs fp32 PyTorch on CPU: kernels differ in summation order only; 1e-3 on logits
# of magnitude ~10 leaves room for deep networks while catching any real export error.
EXPORT_ATOL = 1e-3
# ... plus this share of the largest logit: random-weight deep networks (ResNet-152 in eval mode) give logits of
# 1e5 and more, where fp32 summation order alone moves the last digits (H200 run of 2026-11-29: 58 absolute)
EXPORT_RTOL = 1e-4
META_PREFIX = "arttrt."


ORT_INSTALL_HINT = "pip install onnxruntime-gpu (or onnxruntime on machines without NVIDIA GPUs)"


def import_onnxruntime() -> Any:
    """ONNX Runtime, or one sentence saying how to install it (the export check and the onnxrt backend need it)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ArtTRTError(f"ONNX Runtime is not installed: {ORT_INSTALL_HINT}") from err
    return ort


def session_options(ort: Any) -> Any:
    """ONNX Runtime session options as the onnxrt backend and the mixed-precision search both run a file, so the
    search measures what the backend runs.

    Q/DQ int8 stays int8 in ONNX Runtime's fused kernels. By default its x86 CPU provider turns int8 activations
    into uint8, whose AVX2 kernels can overflow on CPUs without VNNI: on this project's 2-core AMD EPYC (AVX2, no
    VNNI) EfficientNet-Lite0 int8 gave 14 of 20 top-1 (relative L2 error 0.86 against fp32) where the same file
    gives 17 of 20 (error 0.14) with this setting, or with no graph optimisation at all."""
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.qdqisint8allowed", "1")
    return opts


def parse_input_shape(shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """--input_shape B C H W; B = -1 for a dynamic batch."""
    if len(shape) != 4:
        raise ArtTRTError(f"--input_shape takes 4 numbers (batch channels height width), got {len(shape)}")
    b, c, h, w = (int(v) for v in shape)
    if b == 0 or b < -1 or c != 3 or h <= 0 or w <= 0:
        raise ArtTRTError(f"--input_shape {b} {c} {h} {w} is not valid: batch -1 (dynamic) or >0, 3 channels, "
                          "positive height and width")
    return b, c, h, w


def _export(model: torch.nn.Module, dummy: torch.Tensor, tmp: Path, dynamic: bool, exporter: str) -> str:
    """Exports with the dynamo exporter (a clean graph), falling back to the legacy TorchScript one."""
    kwargs: Dict[str, Any] = dict(input_names=["input"], output_names=["logits"], opset_version=OPSET)
    errors = []
    order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    for kind in order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
                    torch.onnx.export(model, (dummy,), str(tmp), dynamo=True, dynamic_shapes=shapes,
                                      external_data=False, verbose=False, **kwargs)
                else:
                    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
                    torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, dynamic_axes=axes,
                                      **{**kwargs, "opset_version": 17})
            return kind
        except Exception as err:  # exporters raise many kinds; we report each and try the next
            errors.append(f"{kind}: {type(err).__name__}: {first_line(err)}")
            log.info("the %s exporter failed (%s)", kind, errors[-1])
    raise ArtTRTError("ONNX export failed: " + " | ".join(errors))


def export_onnx(net: Network, output: str | os.PathLike[str], input_shape: Sequence[int] = (-1, 3, 224, 224),
                exporter: str = "auto", atol: float = EXPORT_ATOL, seed: int = 0,
                shown_as: Optional[str] = None) -> Dict[str, Any]:
    """Exports net to ONNX at `output` (written atomically) and verifies it; shown_as is how the log line names
    the file where `output` is a temporary name (the cache's: its folder), never the temporary itself.

    Returns:
        A dict with the exporter used, opset, node count, max_abs_diff vs PyTorch and seconds.
    """

    b, c, h, w = parse_input_shape(input_shape)
    bad = [name for name, t in [*net.model.named_parameters(), *net.model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # before the export (seconds to minutes), not after it
        raise ArtTRTError(f"the weights of {net.name} hold NaN or Inf ({bad[0]}"
                          + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                          + "): no ONNX file can be checked against outputs that are not numbers; fix the weights")
    if h != net.preprocess.crop or w != net.preprocess.crop:
        log.warning("input %dx%d differs from the network's crop %d: preprocessing will crop %dx%d",
                    h, w, net.preprocess.crop, h, w)
    dynamic = b == -1
    dummy_b = 2 if dynamic else b
    torch.manual_seed(seed)
    dummy = torch.randn(dummy_b, c, h, w)
    model = net.model.eval()
    t0 = time.perf_counter()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        used = _export(model, dummy, raw, dynamic, exporter)
        proto = onnx.load(str(raw))
    # The dynamo exporter names the input after the forward() argument: keep one name for all.
    _rename_io(proto)
    pp = Preprocess(resize=net.preprocess.resize, crop=h, mean=net.preprocess.mean, std=net.preprocess.std)
    set_metadata(proto, {"network": net.name, "input_shape": [b, c, h, w], "preprocess": pp.as_dict(),
                         "num_classes": net.num_classes, "weights": net.weights, "exporter": used,
                         "made_by": "arttrt onnx_transform"})
    try:  # full_check: also strict shape inference, so declared shapes that contradict the graph are refused
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ArtTRTError(f"the exported ONNX file fails ONNX's full check ({first_line(err)}): the export is "
                          "wrong, not trusted") from err
    with atomic_path(out) as tmp:  # checked before it takes its name: a wrong export is never left behind
        onnx.save(proto, str(tmp))
        seconds = time.perf_counter() - t0
        diff, scale = compare_with_torch(tmp, model, (dummy_b, c, h, w), seed)
        tolerance = atol + EXPORT_RTOL * scale
        if not diff <= tolerance:
            raise ArtTRTError(f"the exported ONNX file differs from PyTorch by {diff:.3g} (> {tolerance:.3g}: "
                              f"{atol:g} + {EXPORT_RTOL:g} x the largest logit {scale:.3g}) on a random batch: the "
                              "export is wrong, not trusted")
    nodes = len(onnx.load(str(out), load_external_data=False).graph.node)
    log.info("exported %s -> %s (%s exporter, opset %d, %d nodes, max |ORT - torch| = %.2e, tolerance %.2e)",
             net.name, shown_as or out, used, OPSET if used == "dynamo" else 17, nodes, diff, tolerance)
    return {"exporter": used, "opset": OPSET if used == "dynamo" else 17, "nodes": nodes,
            "max_abs_diff": diff, "atol": atol, "rtol": EXPORT_RTOL, "max_abs_logit": scale,
            "tolerance": tolerance, "seconds": round(seconds, 3)}


def _rename_io(proto: Any) -> None:
    g = proto.graph
    renames = {g.input[0].name: "input", g.output[0].name: "logits"}
    for old, new in renames.items():
        if old == new:
            continue
        for node in g.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
    g.input[0].name = "input"
    g.output[0].name = "logits"


def set_metadata(proto: Any, meta: Dict[str, Any]) -> None:
    """Stores each key as arttrt.<key> = JSON in the model's metadata_props."""
    existing = {p.key: p for p in proto.metadata_props}
    for k, v in meta.items():
        key = META_PREFIX + k
        if key in existing:
            existing[key].value = json.dumps(v)
        else:
            p = proto.metadata_props.add()
            p.key, p.value = key, json.dumps(v)


def read_metadata(path: str | os.PathLike[str]) -> Dict[str, Any]:
    """ArtTRT's metadata of an ONNX file ({} for a foreign file); a broken file is a user error."""

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise ArtTRTError(f"{path} is not a readable ONNX file: {first_line(err)}") from err
    if not proto.graph.input or not proto.graph.output:
        raise ArtTRTError(f"{path} holds no model with an input and an output (an empty or foreign file)")
    check_io(proto, path)
    out: Dict[str, Any] = {}
    for p in proto.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                raise ArtTRTError(f"{path}: its metadata {p.key} is not JSON: not a file ArtTRT wrote, or a damaged "
                                  "one (export it again with onnx_transform.py)") from None
    check_metadata(out, path)
    dims = [d.dim_value if d.HasField("dim_value") else -1
            for d in proto.graph.input[0].type.tensor_type.shape.dim]
    out["graph_input_shape"] = dims
    return out


# the input types an image classifier's ONNX file may take (onnx.TensorProto: FLOAT, FLOAT16, BFLOAT16)
IMAGE_INPUT_TYPES = {1: "float32", 10: "float16", 16: "bfloat16"}


def check_io(proto: Any, path: Any) -> None:
    """One image input (a float tensor of rank 4, NCHW) and one output of class scores: a file with several outputs
    would be scored on its first without a word, an integer input fed floats; each one sentence when it is opened."""
    weights = {t.name for t in proto.graph.initializer}  # older exporters list initializers among the inputs
    inputs = [i for i in proto.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ArtTRTError(f"{path} takes {len(inputs)} inputs ({', '.join(i.name for i in inputs[:4])}): ArtTRT "
                          "runs image classifiers of one input, the NCHW image batch")
    if len(proto.graph.output) != 1:
        raise ArtTRTError(f"{path} has {len(proto.graph.output)} outputs ({', '.join(o.name for o in proto.graph.output[:4])}"
                          "): ArtTRT scores one output of class scores and would not guess which; export the "
                          "classifier with its logits as the only output")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type not in IMAGE_INPUT_TYPES:
        raise ArtTRTError(f"{path} takes input {inputs[0].name!r} of type "
                          f"{onnx.TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type else 'unknown'}, "
                          f"not an image batch of {', '.join(IMAGE_INPUT_TYPES.values())}")
    if len(tensor.shape.dim) != 4:
        raise ArtTRTError(f"{path} takes input {inputs[0].name!r} of rank {len(tensor.shape.dim)}, not an NCHW image "
                          "batch (rank 4)")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_metadata(meta: Dict[str, Any], path: Any) -> None:
    """ArtTRT's metadata of an ONNX file is trusted only in the shapes ArtTRT writes it: one sentence otherwise."""
    def bad(key: str, why: str) -> ArtTRTError:
        return ArtTRTError(f"{path}: its metadata arttrt.{key} {why}: not a file ArtTRT wrote, or a damaged one "
                           "(export it again with onnx_transform.py)")

    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000

    if "network" in meta and not (isinstance(meta["network"], str) and 0 < len(meta["network"]) <= 200):
        raise bad("network", "is not a network name")
    if "num_classes" in meta and not count(meta["num_classes"]):
        raise bad("num_classes", "is not a class count")
    if "precision" in meta and meta["precision"] not in ("fp32", "fp16", "bf16", "int8", "fp8"):
        raise bad("precision", "is not a precision")
    if "weights" in meta and not isinstance(meta["weights"], (str, type(None))):
        raise bad("weights", "is not a text")
    if "input_shape" in meta and not (isinstance(meta["input_shape"], list) and len(meta["input_shape"]) == 4 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in meta["input_shape"])):
        raise bad("input_shape", "is not 4 integers")
    if "preprocess" in meta:
        pp = meta["preprocess"]
        numbers = (lambda v: isinstance(v, list) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
        if not (isinstance(pp, dict) and set(pp) == {"resize", "crop", "mean", "std"} and count(pp["resize"])
                and count(pp["crop"]) and numbers(pp["mean"]) and numbers(pp["std"]) and all(x for x in pp["std"])):
            raise bad("preprocess", "is not resize, crop, mean and std")


def check_input_shape(path: str | os.PathLike[str], input_shape: Sequence[int]) -> Dict[str, Any]:
    """Refuses an ONNX file whose input size differs from --input_shape."""
    meta = read_metadata(path)
    dims = meta["graph_input_shape"]
    want = parse_input_shape(input_shape)
    if len(dims) != 4 or dims[1:] != list(want[1:]):
        raise ArtTRTError(f"ONNX file {path} takes input {dims}, but --input_shape is {list(want)}")
    if want[0] != -1 and dims[0] not in (-1, want[0]):
        raise ArtTRTError(f"ONNX file {path} has a static batch of {dims[0]}, but --input_shape asks {want[0]}")
    return meta


def check_against_torch(path: Path, model: torch.nn.Module, shape: Tuple[int, int, int, int], seed: int = 0,
                        provider: Optional[str] = None) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch (CPU, fp32) on one random batch."""
    return compare_with_torch(path, model, shape, seed)[0]


def compare_with_torch(path: Path, model: torch.nn.Module, shape: Tuple[int, int, int, int],
                       seed: int = 0) -> Tuple[float, float]:
    """(max |ONNX Runtime - PyTorch|, max |PyTorch|) on one random batch, both on the CPU in fp32."""
    ort = import_onnxruntime()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(*shape, generator=g)
    with torch.inference_mode():
        ref = model(x).float().numpy()
    if not np.isfinite(ref).all():
        raise ArtTRTError("PyTorch's own outputs hold NaN or Inf on the export check's random batch: the weights are "
                          "not numbers (or overflow), so no export can be checked against them")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise ArtTRTError(f"the exported ONNX output has shape {got.shape}, PyTorch's {ref.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - ref))), float(np.max(np.abs(ref)))


def network_from_onnx(path: str | os.PathLike[str]) -> Network:
    """The name, preprocessing and class count recorded in an ArtTRT ONNX file, as a Network without a
    PyTorch module (build_trt.py needs no weights: calibration reads the preprocessing from here)."""
    meta = read_metadata(path)
    if "network" not in meta:
        raise ArtTRTError(f"{path} carries no ArtTRT metadata (network, preprocessing): export it with "
                          "onnx_transform.py")
    pp = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocess"].items()})
    return Network(meta["network"], torch.nn.Identity(), pp, int(meta["num_classes"]), str(meta.get("weights")))
