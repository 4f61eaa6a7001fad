"""Models: the table of networks and their weights (`networks`), the checked ONNX export (`onnx_export`),
precision as ONNX -> ONNX steps with real-image calibration (`precision`, `ort_quantize`), and the chain
that turns a network and a precision into the ONNX file a backend runs (`chain.model_file`), every step a
cached artefact under weights/ (`paths`).

May import: utils.core and utils.data. Knows nothing of runners, TensorRT, measurements or reports.
"""
