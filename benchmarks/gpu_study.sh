#!/bin/bash
# Issues 42 and 44 on a GPU (the device tool's H100/H200), in steps that each fit one call. Records are kept when a
# step is stopped by its time limit; the study folder goes back as $OUT/study.tgz, and a later call resumes it when
# given that archive (RESUME=path/to/study.tgz, carried in an ignored folder).
#   eager    NETS x PyTorch eager x fp32/fp16/bf16 x batch 1 and 256 (efficientnet_lite0 with its packaged weights)
#   ao       torchao (issue 44): AO_NETS x int8 dynamic and fp8, then int8 weight-only, batch 1 and 256
#   compile  NETS x torch.compile x PRECS, batch 1 and 256, as far as LIMIT seconds go
#   report   the tables of everything in the study
# Usage (from the repository root): [NETS=...] [AO_NETS=...] [PRECS=...] [LIMIT=s] bash benchmarks/gpu_study.sh STEP ...
set -u
OUT=${OUT:-/tmp/gpu-study}
STUDY=/tmp/gpu-study-records
LIMIT=${LIMIT:-500}
NETS=${NETS:-"resnet50 vit_b_16 convnext_tiny timm:vit_base_patch16_224 efficientnet_lite0"}
AO_NETS=${AO_NETS:-"vit_b_16 resnet50"}
PRECS=${PRECS:-"fp16 bf16 fp32"}
mkdir -p "$OUT" "$STUDY"
[ -n "${RESUME:-}" ] && tar xzf "$RESUME" -C "$STUDY"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site
export PYTHONUNBUFFERED=1 ARTTRT_CACHE_DIR=/tmp/arttrt-cache
START=$(date +%s)
save() { tar czf "$OUT/study.tgz" -C "$STUDY" . ; }
trap save EXIT
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
run() {  # a study, stopped by SIGINT (records kept) when the step's time is up
  local t; t=$(left); [ "$t" -gt 20 ] || { echo "skipped (no time left): $*" | tee -a "$OUT/log.txt"; return; }
  local s0; s0=$(date +%s)
  timeout -s INT "$t" python3 main.py -v --synthetic 1024 --device cuda --batch_sizes 1 256 --duration 1 --quiet \
    --output "$STUDY" "$@" >> "$OUT/log.txt" 2>&1
  echo "exit $? in $(( $(date +%s) - s0 )) s: $*" | tee -a "$OUT/log.txt"
}
each() {  # $1: backend, $2: precisions; the packaged-weights network in a run of its own (--pretrained)
  local random="" net
  for net in $NETS; do [ "$net" = efficientnet_lite0 ] || random="$random $net"; done
  [ -n "$random" ] && run --networks $random --backends "$1" --precisions $2
  case " $NETS " in *" efficientnet_lite0 "*) run --network efficientnet_lite0 --pretrained --backends "$1" --precisions $2 ;; esac
}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv | tee -a "$OUT/gpu.txt"
for step in "$@"; do
  case "$step" in
    eager) each torch "fp32 fp16 bf16" ;;
    ao)
      python3 -c "import torchao, torch; print('torchao', torchao.__version__, 'torch', torch.__version__)" 2>&1 | tail -1 | tee -a "$OUT/log.txt"
      [ -z "${AO_WO_ONLY:-}" ] && run --networks $AO_NETS --backends torchao --precisions int8 fp8
      run --networks $AO_NETS --backends torchao --precisions int8 --ao_int8 weight_only ;;
    compile) for p in $PRECS; do each compile "$p"; done ;;
    report)
      python3 main.py --report "$STUDY" --quiet > "$OUT/report.txt" 2>&1
      cp "$STUDY"/table_outputs/compute.md "$STUDY"/table_outputs/worth-it.md "$OUT/" 2>/dev/null
      python3 benchmarks/records_table.py "$STUDY" > "$OUT/records.txt" 2>&1 ;;  # $OUT: 8 files at most
  esac
done
