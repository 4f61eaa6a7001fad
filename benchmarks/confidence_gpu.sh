#!/bin/bash
# Issue 41 on a GPU (the device tool's H100/H200): the same study run twice, and once with a planted slowdown
# (CUDA_LAUNCH_BLOCKING=1: every kernel launch waits for the one before), each compared with the first by
# --report NEW --baseline OLD --max_regression 5. Prints the exit codes; leaves the tables under $OUT.
# Usage (on the device machine, from the repository root): bash benchmarks/confidence_gpu.sh
set -u
OUT=${OUT:-/tmp/confidence-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
STUDY=(-v --network resnet50 --synthetic 1024 --device cuda --backends torch --precisions fp32 fp16 --channels_last
       --batch_sizes 1 64 --duration 2 --quiet)
for run in A B; do
  python3 main.py "${STUDY[@]}" --output /tmp/cg/$run 2>&1 | tail -3
  echo "study $run: exit $?"
done
CUDA_LAUNCH_BLOCKING=1 python3 main.py "${STUDY[@]}" --output /tmp/cg/C 2>&1 | tail -3
echo "study C (CUDA_LAUNCH_BLOCKING=1): exit $?"
for run in B C; do
  python3 main.py --report /tmp/cg/$run --baseline /tmp/cg/A --max_regression 5 --quiet > "$OUT/$run-vs-A.txt" 2>&1
  echo "report $run vs A: exit $?" | tee -a "$OUT/$run-vs-A.txt"
done
cp /tmp/cg/A/table_outputs/speed.md "$OUT/speed-A.md"
cat "$OUT"/B-vs-A.txt "$OUT"/C-vs-A.txt
