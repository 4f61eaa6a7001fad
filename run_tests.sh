#!/usr/bin/env bash
# The test command: type-check the TensorRT code against stubs of NVIDIA's own bindings (11.4 and 10.x), then
# the test suite. The stubs are made once by tools/make_trt_stubs.py (it downloads two ~1.3 MB wheels).
set -euo pipefail
cd "$(dirname "$0")"
python tools/make_trt_stubs.py
TRT=utils/backends/tensorrt
STRONG="$TRT/__init__.py $TRT/api.py $TRT/build.py $TRT/engine.py $TRT/runner.py $TRT/engine_layers.py"
MYPYPATH=.mypy_stubs/trt11 python -m mypy --cache-dir .mypy_cache/trt11 $STRONG          # TensorRT 11.4
MYPYPATH=.mypy_stubs/trt10 python -m mypy --cache-dir .mypy_cache/trt10 $STRONG $TRT/weak.py  # TensorRT 10.x
python -m pytest -q "$@"
