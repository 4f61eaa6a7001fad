"""Backends: the one Runner interface and run specification (`base`), the one table of backends
(`registry`), and one module per backend, each owning its runner, its options (its own argparse group),
its preparation, its install hint and its record fields: `torch_eager` (PyTorch, "Vanilla"), `compile`
(torch.compile), `onnxrt` (ONNX Runtime) and `tensorrt/` (TensorRT; the only place that imports it).

Adding a backend is one module (Options, add_args, make, optionally check/variants/label) and one row in
`registry.BACKENDS` (docs/architecture.md shows one). Nothing above this layer compares backend names.

May import: utils.core, utils.data, utils.models. Knows nothing of measurements, records or reports.
"""
