#!/bin/bash
# Issue 42 on a GPU (the device tool's H100/H200): today's classifiers (torchvision's ResNet-50, ViT-B/16 and
# ConvNeXt-T, timm's ViT-B/16) in eager fp32 and fp16 at batch 1 and 256, and ResNet-50 torch.compile fp16 with a
# CUDA graph at 256: FLOPs per image, achieved TFLOP/s and % of the GPU's dense peak, where each batch's time goes
# (trtexec's diagnosis) and each runner's cold start. Random weights, synthetic images. Leaves the tables under $OUT.
# Usage (on the device machine, from the repository root): [NETWORKS="resnet50 vit_b_16"] [COMPILE=0] bash benchmarks/compute_gpu.sh
set -u
OUT=${OUT:-/tmp/compute-gpu}
NETWORKS=${NETWORKS:-"resnet50 vit_b_16 convnext_tiny timm:vit_base_patch16_224"}
COMPILE=${COMPILE:-1}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
python3 main.py -v --networks $NETWORKS --synthetic 1024 \
  --device cuda --backends torch --precisions fp32 fp16 --batch_sizes 1 256 --duration 1 --quiet \
  --output /tmp/cg42 > "$OUT/study-eager.txt" 2>&1
echo "eager study: exit $?"
if [ "$COMPILE" = 1 ]; then
  python3 main.py -v --network resnet50 --synthetic 1024 --device cuda --backends compile --precisions fp16 \
    --cuda_graph --batch_sizes 256 --duration 1 --quiet --output /tmp/cg42 > "$OUT/study-compile.txt" 2>&1
  echo "compile study: exit $?"
fi
python3 main.py --report /tmp/cg42 --quiet > /dev/null 2>&1
cp /tmp/cg42/table_outputs/compute.md "$OUT/compute.md"
cat "$OUT/compute.md"
