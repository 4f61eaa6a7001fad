"""What an ONNX file holds, layer by layer: op type, name, input and output types and shapes, whether the layer
sits behind Q/DQ nodes (and so runs quantized in TensorRT), its parameter count, the precision it runs at.

Shapes come from ONNX shape inference; the text dump beside the table is Polygraphy's own (`polygraphy inspect
model FILE --show layers attrs`, through its Python API), for those who know that format.

Usage:
    layers = onnx_layers(Path("weights/onnx/resnet18.onnx"))
    print(precision_counts(layers))          # {'int8': 21, 'fp32': 49}
    text = polygraphy_text(Path("x.onnx"))    # (the tables are drawn by utils/report/sections/look_inside_tables.py)
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    import onnx
else:
    from utils.core.deps import onnx


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# ONNX TensorProto element types -> the names ArtTRT uses for precisions
ELEM_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16", 3: "int8", 2: "uint8", 17: "fp8", 18: "fp8", 19: "fp8",
                  20: "fp8", 6: "int32", 7: "int64", 9: "bool"}


def tensor_types(model: Any) -> Dict[str, Tuple[int, List[Any]]]:
    """name -> (element type, shape with symbolic dims as strings), after shape inference."""

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference cannot follow: types from what the file states
        inferred = model
    out: Dict[str, Tuple[int, List[Any]]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        out[vi.name] = (t.elem_type, dims)
    for init in g.initializer:
        out[init.name] = (init.data_type, list(init.dims))
    return out


def is_layer(node: Any) -> bool:
    """A layer as --inspect counts it: any node but a Q/DQ node or a Constant."""
    return node.op_type not in QDQ_OPS and node.op_type != "Constant"


def layer_count(graph: Any) -> int:
    """The layers of an ONNX graph (a QDQ file of a 94-layer network has 290 nodes and 94 layers)."""
    return sum(1 for n in graph.node if is_layer(n))


def onnx_layers(path: Path) -> List[Dict[str, Any]]:
    """One row per layer (is_layer: not a Q/DQ node, not a Constant), in graph order."""
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    types = tensor_types(model)

    def describe(name: str) -> str:
        elem, dims = types.get(name, (0, []))
        return f"{name}: {ELEM_PRECISION.get(elem, 'type' + str(elem))}[{'x'.join(str(d) for d in dims)}]"

    def dq_source(name: str) -> Optional[Any]:
        node = producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def weight_source(name: str) -> Optional[str]:
        """The initializer behind an input: itself, or through DequantizeLinear (and QuantizeLinear before it)."""
        for _ in range(3):
            if name in inits:
                return name
            node = producer.get(name)
            if node is None or node.op_type not in QDQ_OPS:
                return None
            name = node.input[0]
        return None

    rows: List[Dict[str, Any]] = []
    for node in g.node:
        if not is_layer(node):
            continue
        data_inputs = [i for i in node.input if i]
        params = 0
        weights: List[str] = []
        activations: List[str] = []
        fenced: List[bool] = []
        quant_types = set()
        for i in data_inputs:
            dq = dq_source(i)
            src = weight_source(i)
            if src is not None:  # a weight, directly or through Q/DQ
                size = int(np.prod(inits[src].dims)) if inits[src].dims else 1
                if size > 1 and inits[src].data_type in (1, 10, 16):  # not shapes, axes or scalar constants
                    params += size
                    weights.append(src)
                continue
            activations.append(i)
            if types.get(i, (0,))[0] in (1, 10, 16) or dq is not None:  # float data (not shapes or indices)
                fenced.append(dq is not None)
                if dq is not None:
                    zp = dq.input[2] if len(dq.input) > 2 and dq.input[2] else ""
                    quant_types.add(ELEM_PRECISION.get(types.get(zp, (3,))[0], "int8") if zp else
                                    ELEM_PRECISION.get(types.get(dq.input[0], (3,))[0], "int8"))
        qdq = bool(fenced) and all(fenced)
        out_elem = types.get(node.output[0], (0, []))[0] if node.output else 0
        precision = sorted(quant_types)[0] if qdq and quant_types else ELEM_PRECISION.get(out_elem, "?")
        rows.append({"name": node.name or node.output[0], "op": node.op_type, "qdq": qdq, "precision": precision,
                     "params": params, "weight": weights[0] if weights else "",
                     "inputs": [describe(i) for i in activations],
                     "outputs": [describe(o) for o in node.output if o]})
    return rows


def precision_counts(layers: List[Dict[str, Any]]) -> Dict[str, int]:
    """How many layers run at each precision, most first."""
    return dict(collections.Counter(r["precision"] for r in layers).most_common())


def polygraphy_text(path: Path) -> str:
    """Polygraphy's `inspect model --show layers attrs` text for the file."""
    from polygraphy.backend.onnx.util import str_from_onnx

    return str(str_from_onnx(onnx.load(str(path), load_external_data=False), show_layers=True, show_attrs=True))
