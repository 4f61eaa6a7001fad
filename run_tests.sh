#!/usr/bin/env bash
# The test command: type-check the TensorRT modules against tensorrt-stubs, then the test suite.
set -euo pipefail
cd "$(dirname "$0")"
python tools/prepare_trt_stubs.py
python -m mypy
python -m pytest -q "$@"
