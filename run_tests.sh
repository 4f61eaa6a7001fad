#!/usr/bin/env bash
# The test command: type-check the TensorRT code against stubs of NVIDIA's own bindings (11.4, the newest and the
# oldest 10.x wheels); check statically that the project needs no Python newer than 3.10; run the
# TensorRT tests (ArtTRT's real TensorRT code against the contract fake, tests/fakes/tensorrt) under coverage and fail
# if runner.py, build.py, api.py, engine_layers.py, engine.py or weak.py fall below 90 % of their statements; then
# every other test.
# The stubs are made once by tools/make_trt_stubs.py (it downloads three ~1.3 MB wheels). With arguments, mypy and
# then pytest with those arguments only.
set -euo pipefail
cd "$(dirname "$0")"
python tools/make_trt_stubs.py
TRT=utils/backends/tensorrt
STRONG="$TRT/__init__.py $TRT/api.py $TRT/build.py $TRT/engine.py $TRT/runner.py $TRT/engine_layers.py"
MYPYPATH=.mypy_stubs/trt11 python -m mypy --cache-dir .mypy_cache/trt11 $STRONG          # TensorRT 11.4
MYPYPATH=.mypy_stubs/trt10 python -m mypy --cache-dir .mypy_cache/trt10 $STRONG $TRT/weak.py  # TensorRT 10.x, newest
MYPYPATH=.mypy_stubs/trt10.8 python -m mypy --cache-dir .mypy_cache/trt10.8 $STRONG $TRT/weak.py  # 10.x, oldest wheel
# Python 3.10 (JetPack 6's): the whole project's minimum version, read statically (no 3.10 interpreter needed)
vermin -t=3.10- --no-tips --violations --eval-annotations main.py build_trt.py onnx_transform.py \
  format_dataset.py utils tools benchmarks
if [ "$#" -gt 0 ]; then  # a chosen selection (./run_tests.sh tests/backends, -m "not slow"): just that
  exec python -m pytest -q "$@"
fi
COVERAGE_FILE="$(mktemp -d)/.coverage"
export COVERAGE_FILE
python -m pytest -q -k "tensorrt or trt" --cov="$TRT" --cov-report=
python tools/coverage_gate.py 90 "$TRT/runner.py" "$TRT/build.py" "$TRT/api.py" "$TRT/engine_layers.py" "$TRT/engine.py" "$TRT/weak.py"
python -m pytest -q -k "not (tensorrt or trt)"
