"""What a TensorRT engine runs, layer by layer, from TensorRT's engine inspector: name, type, the precision of
the data it reads, the tactic (kernel) chosen. ArtTRT builds engines with ProfilingVerbosity.DETAILED (as trtexec
--profilingVerbosity=detailed); an engine built with less gives names only, and says so.

The inspector's JSON (IEngineInspector.getEngineInformation(kJSON)) is {"Layers": [...], "Bindings": [...]},
a layer being a name alone (LAYER_NAMES_ONLY) or {"Name", "LayerType", "Inputs": [{"Name", "Dimensions",
"Format/Datatype"}], "Outputs": [...], "TacticName" or "TacticValue", ...} (DETAILED). With a dynamic-shape
engine the formats read "N/A due to dynamic shapes" unless an execution context with its input shape set is
given. Type-checked by mypy against TensorRT's stubs.

Usage:
    info = engine_information(engine, context)     # the runner's engine and context
    rows = engine_layers(info); print(engine_precision_counts(rows))
"""
from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from utils.backends.tensorrt.api import trt

# words of the inspector's "Format/Datatype" strings, most specific first
DATATYPE_WORDS = (("int8", "int8"), ("fp8", "fp8"), ("e4m3", "fp8"), ("bf16", "bf16"), ("bfloat16", "bf16"),
                  ("fp16", "fp16"), ("half", "fp16"), ("fp32", "fp32"), ("float", "fp32"), ("int32", "int32"),
                  ("int64", "int64"), ("bool", "bool"), ("fp4", "fp4"), ("int4", "int4"), ("uint8", "uint8"))


def engine_information(engine: trt.ICudaEngine, context: Optional[trt.IExecutionContext] = None) -> Dict[str, Any]:
    """The engine inspector's JSON, parsed (with the context, formats of a dynamic engine are resolved)."""
    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return info if isinstance(info, dict) else {"Layers": info}


def datatype(fmt: str) -> str:
    """'Thirty-two wide channel vectorized row major Int8 format.' -> 'int8'; '?' where it does not say."""
    low = fmt.lower()
    for word, name in DATATYPE_WORDS:
        if word in low:
            return name
    return "?"


def engine_layers(info: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per engine layer: name, type, precision (of the data it reads), tactic."""
    rows = []
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):  # built with LAYER_NAMES_ONLY
            rows.append({"name": str(layer), "type": "?", "precision": "?", "tactic": ""})
            continue
        tensors = layer.get("Inputs") or layer.get("Outputs") or [{}]
        first = tensors[0] if isinstance(tensors[0], dict) else {}
        rows.append({"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", "?")),
                     "precision": datatype(str(first.get("Format/Datatype", ""))),
                     "tactic": str(layer.get("TacticName") or layer.get("TacticValue") or "")})
    return rows


def engine_precision_counts(rows: List[Dict[str, Any]]) -> Dict[str, int]:
    """How many engine layers read each precision, most first (Reformat layers included: they run too)."""
    return dict(collections.Counter(r["precision"] for r in rows).most_common())


def engine_layers_markdown(title: str, rows: List[Dict[str, Any]]) -> str:
    from utils.core.markdown import markdown_table

    counts = ", ".join(f"{p} {n}" for p, n in engine_precision_counts(rows).items())
    note = "" if any(r["type"] != "?" for r in rows) else (
        " The engine was built without ProfilingVerbosity.DETAILED: names only.")
    return (f"# {title}\n\n{len(rows)} engine layers ({counts}).{note}\n\n"
            + markdown_table(["#", "type", "precision", "name", "tactic"],
                             [[i, r["type"], r["precision"], r["name"], r["tactic"]] for i, r in enumerate(rows)])
            + "\n")
