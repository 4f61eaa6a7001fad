#!/bin/bash
# Issue 41 on a GPU (the device tool's H100/H200): the same study run twice, and once with a planted slowdown
# (CUDA_LAUNCH_BLOCKING=1: every kernel launch waits for the one before), each compared with the first by
# --report NEW --baseline OLD --max_regression 5. Each row is timed REPEATS whole runs (--repeats; default 5), so
# its interval holds run-to-run noise; REPEATS=1 gives the within-run (bootstrap) intervals alone.
# Prints the exit codes; leaves the tables under $OUT.
# Usage (on the device machine, from the repository root): [REPEATS=5] bash benchmarks/confidence_gpu.sh
set -u
OUT=${OUT:-/tmp/confidence-gpu}
REPEATS=${REPEATS:-5}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
STUDY=(-v --network resnet50 --synthetic 1024 --device cuda --backends torch --precisions fp32 fp16 --channels_last
       --batch_sizes 1 64 --duration 1 --repeats "$REPEATS" --quiet)
for run in A B; do
  python3 main.py "${STUDY[@]}" --output /tmp/cg/$run > "$OUT/study-$run.txt" 2>&1
  echo "study $run: exit $?"
done
CUDA_LAUNCH_BLOCKING=1 python3 main.py "${STUDY[@]}" --output /tmp/cg/C > "$OUT/study-C.txt" 2>&1
echo "study C (CUDA_LAUNCH_BLOCKING=1): exit $?"
for run in B C; do
  python3 main.py --report /tmp/cg/$run --baseline /tmp/cg/A --max_regression 5 --quiet > "$OUT/$run-vs-A.txt" 2>&1
  echo "report $run vs A: exit $?" | tee -a "$OUT/$run-vs-A.txt"
done
cp /tmp/cg/A/table_outputs/speed.md "$OUT/speed-A.md"
cp /tmp/cg/B/table_outputs/speed.md "$OUT/speed-B.md"
python3 - "$OUT/repeats.txt" <<'PY'
import glob, json, sys
with open(sys.argv[1], "w") as out:
    for run in "ABC":
        for f in sorted(glob.glob(f"/tmp/cg/{run}/records/*.json")):
            r = json.load(open(f))
            if r.get("role") == "timing":
                out.write(f"{run} {r.get('precision')} bs{r.get('batch_size')} {r.get('images_per_s'):.1f} "
                          f"{(r.get('speed_ci') or {}).get('images_per_s')} "
                          f"{[round(x['images_per_s'], 1) for x in r.get('repeats') or []]}\n")
PY
cat "$OUT"/repeats.txt "$OUT"/B-vs-A.txt "$OUT"/C-vs-A.txt
