"""ONNX Runtime static quantization in the form TensorRT's parser accepts, run as its own process.

QDQ format, symmetric int8 activations and weights, per-channel weights, biases left in float
(TensorRT rejects int32 biases: NVIDIA/TensorRT#3360, microsoft/onnxruntime#17738).

Usage:
    python -m utils.models.ort_quantize SRC.onnx OUT.onnx max|entropy CALIB.npy WORKDIR [EXCLUDE.json]

EXCLUDE.json: a JSON list of node names kept in float (quantize_static's nodes_to_exclude).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np


def quantize(src: str, out: str, method: str, calib_npy: str, work: str, exclude_json: str = "") -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.load(calib_npy)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            if self.i >= len(data):
                return None
            self.i += 1
            return {"input": data[self.i - 1:self.i]}

    pre = Path(work) / "pre.onnx"
    quant_pre_process(src, str(pre))  # the quantizer needs inferred shapes on every tensor
    exclude = json.loads(Path(exclude_json).read_text()) if exclude_json else []
    cm = {"max": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[method]
    quantize_static(str(pre), out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=cm,
                    nodes_to_exclude=exclude or None,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})


if __name__ == "__main__":
    quantize(*sys.argv[1:7])
