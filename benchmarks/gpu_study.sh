#!/bin/bash
# Issues 42 and 44 on a GPU (the device tool's H100/H200), in steps that each fit one call. Records are kept when a
# step is stopped by its time limit; the study folder goes back as $OUT/study.tgz, and a later call resumes it when
# given that archive (RESUME=path/to/study.tgz, carried in an ignored folder).
#   eager    NETS x PyTorch eager x fp32/fp16/bf16 x batch 1 and 256 (efficientnet_lite0 with its packaged weights)
#   ao       torchao (issue 44): AO_NETS x int8 dynamic and fp8, then int8 weight-only, batch 1 and 256
#   compile  NETS x torch.compile x PRECS, batch 1 and 256, as far as LIMIT seconds go
#   park     copy the carried parts of onnxruntime-gpu (.ort/pN/part_*, one part per call) into /tmp/ort, which lives
#            while the machine stays warm (the parts: see benchmarks/h200_session.sh c1..c5)
#   ort      join and unpack the parked parts into /tmp/ortsite once, show that the CUDA provider loads (a one-node
#            model, $OUT/ort.txt), then NETS x ONNX Runtime CUDA x ORT_PRECS, batch 1 and 256
#   report   the tables of everything in the study
# Usage (from the repository root): [NETS=...] [AO_NETS=...] [PRECS=...] [ORT_PRECS=...] [LIMIT=s] [WHL=folder]
#   bash benchmarks/gpu_study.sh STEP ...
set -u
OUT=${OUT:-/tmp/gpu-study}
STUDY=/tmp/gpu-study-records
LIMIT=${LIMIT:-500}
NETS=${NETS:-"resnet50 vit_b_16 convnext_tiny timm:vit_base_patch16_224 efficientnet_lite0"}
AO_NETS=${AO_NETS:-"vit_b_16 resnet50"}
PRECS=${PRECS:-"fp16 bf16 fp32"}
ORT_PRECS=${ORT_PRECS:-"fp32 fp16 bf16"}
mkdir -p "$OUT" "$STUDY"
[ -n "${RESUME:-}" ] && tar xzf "$RESUME" -C "$STUDY"
[ -d /tmp/site/pydantic ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site ${WHL:-.whl}/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site
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
each() {  # $1: backend, $2: precisions, then the backend's own options; the packaged-weights network in a run of
  # its own (--pretrained)
  local backend=$1 precs=$2 random="" net; shift 2
  for net in $NETS; do [ "$net" = efficientnet_lite0 ] || random="$random $net"; done
  [ -n "$random" ] && run --networks $random --backends "$backend" --precisions $precs "$@"
  case " $NETS " in *" efficientnet_lite0 "*) run --network efficientnet_lite0 --pretrained --backends "$backend" --precisions $precs "$@" ;; esac
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
    park) mkdir -p /tmp/ort && cp .ort/p*/part_* /tmp/ort/ 2>/dev/null; ls -l /tmp/ort | tee -a "$OUT/log.txt" ;;
    ort)
      if [ ! -d /tmp/ortsite/onnxruntime ]; then
        mkdir -p /tmp/ortsite && cat /tmp/ort/part_* | xz -d -T16 | tar -x -C /tmp/ortsite || { echo "ONNX Runtime parts did not unpack" | tee -a "$OUT/ort.txt"; continue; }
      fi
      export PYTHONPATH=/tmp/ortsite:/tmp/site
      python3 - <<'PY' 2>&1 | grep -v "plugin EP device" | tail -12 | tee -a "$OUT/ort.txt"
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper
print("onnxruntime", ort.__version__, ort.get_device(), ort.get_available_providers(), ort.__file__)
ort.preload_dlls()  # CUDA and cuDNN of the pip packages (torch's), as ArtTRT's runner does
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)  # onnx 1.23 writes IR 14; ORT 1.31 reads <= 13
so = ort.SessionOptions(); so.log_severity_level = 1
s = ort.InferenceSession(m.SerializeToString(), so, providers=["CUDAExecutionProvider"])
print("session providers:", s.get_providers(), "out", s.run(None, {"x": np.array([-1, 0, 1, 2], np.float32)})[0])
PY
      each onnxrt "$ORT_PRECS" --provider cuda ;;
    report)
      python3 main.py --report "$STUDY" --quiet > "$OUT/report.txt" 2>&1
      cp "$STUDY"/table_outputs/compute.md "$STUDY"/table_outputs/worth-it.md "$OUT/" 2>/dev/null
      python3 benchmarks/records_table.py "$STUDY" > "$OUT/records.txt" 2>&1 ;;  # $OUT: 8 files at most
  esac
done
