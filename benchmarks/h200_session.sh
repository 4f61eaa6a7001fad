#!/usr/bin/env bash
# The verification run on a borrowed H200 (device tool), in steps that each fit one call.
# Each step writes its logs and JSON under $OUT. Usage: bash benchmarks/h200_session.sh STEP
set -uo pipefail
export PYTHONUNBUFFERED=1 CI=true ARTTRT_WEIGHTS_DIR=/tmp/arttrt-weights ARTTRT_CACHE_DIR=/tmp/arttrt-cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
case "$1" in
  trust)  # issue 23 on the GPU: random ResNets in fp16 overflow; their outputs are counted, marked, gated
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry23/*.whl && export PYTHONPATH=/tmp/site
    nvidia-smi --query-gpu=name,driver_version --format=csv
    python3 main.py -v --networks resnet101 resnet152 --synthetic 1024 --device cuda --backends torch \
      --precisions fp32 fp16 bf16 --batch_sizes 1 256 --max_top1_drop 1 --quiet --output $OUT/nan > $OUT/nan.log 2>&1
    echo "exit $?" >> $OUT/nan.log; cat $OUT/nan.log
    python3 benchmarks/records_table.py $OUT/nan | tee $OUT/nan-records.log
    ;;
  measure)  # call 3: the sweep with telemetry, the harness overhead, the data path
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry3/*.whl && export PYTHONPATH=/tmp/site
    python3 main.py -v --network resnet50 --synthetic 4096 --device cuda --backend torch --precisions fp32 fp16 \
      --channels_last --batch_sizes 1 8 32 64 128 256 --telemetry --quiet --output $OUT/sweep 2>&1 | tee $OUT/sweep.log
    python3 main.py -v --network resnet50 --synthetic 4096 --device cuda --backend torch --precision fp16 \
      --channels_last --cuda_graph --batch_sizes 1 32 256 --quiet --output $OUT/sweep 2>&1 | tail -12 | tee -a $OUT/sweep.log
    python3 main.py -v --network resnet50 --synthetic 2048 --device cuda --backend torch --precision fp16 \
      --channels_last --sync --batch_sizes 1 256 --quiet --output $OUT/sweep 2>&1 | tail -6 | tee -a $OUT/sweep.log
    python3 main.py --report $OUT/sweep > /dev/null
    python3 benchmarks/harness_overhead.py --out $OUT 2>&1 | tee $OUT/harness.log
    python3 benchmarks/datapath.py --num_images 50000 --workers 16 --photos datasets/demo --network efficientnet_lite0 --pretrained --out $OUT 2>&1 | grep -v Warn | tee $OUT/datapath.log
    ;;
  datapath)  # first passes (CPU; GPU with nvImageCodec from .carry5 and torchvision), cached pass; PROFILE=1 adds stage timings
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry5/*.whl .carry3/*.whl && export PYTHONPATH=/tmp/site
    mkdir -p /tmp/dp && python3 benchmarks/datapath.py --num_images 50000 --workers 16 --gpu_lanes ${LANES:-2} ${DP_ARGS:---repeat 3} --workdir /tmp/dp --photos datasets/demo --network efficientnet_lite0 --pretrained --out $OUT 2>&1 | grep -v -i "Warn\|nvtiff\|nvjpeg2k\|Note: If" | tee $OUT/datapath.log
    [ -n "${PROFILE:-}" ] && python3 benchmarks/decode_profile.py /tmp/dp/data --num_images 20000 ${PROFILE_ARGS:-} --out $OUT 2>&1 | grep -v -i "nvtiff\|nvjpeg2k\|Note: If" | tee $OUT/decode_profile.log
    ;;
  profile)  # stage and variant timings of the first pass (decoders, lanes, resize forms, PIL pool, cache writes)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry5/*.whl .carry3/*.whl && export PYTHONPATH=/tmp/site
    mkdir -p /tmp/dp && python3 -c "import sys; sys.path[:0]=['benchmarks','.']; import datapath as d; from pathlib import Path; d.make_folder(Path('/tmp/dp'), ${N:-20000}, d.source_photos(Path('datasets/demo')), 16)"
    python3 benchmarks/decode_profile.py /tmp/dp/data --num_images ${N:-20000} --out $OUT 2>&1 | grep -v -i "nvtiff\|nvjpeg2k\|Note: If" | tee $OUT/decode_profile.log
    ;;
  compile)  # call 4: is TensorRT worth it? eager vs torch.compile (and ONNX Runtime CUDA where it loads)
    for net in resnet50 mobilenet_v2; do
      python3 main.py -v --network $net --synthetic 2560 --device cuda --backends torch --precisions fp32 fp16 \
        --channels_last --batch_sizes 1 256 --quiet --output $OUT/worth 2>&1 | tail -4
      python3 main.py -v --network $net --synthetic 2560 --device cuda --backend compile --precision fp16 \
        --batch_sizes 1 256 --quiet --output $OUT/worth 2>&1 | tail -4
      python3 main.py -v --network $net --synthetic 256 --device cuda --backend onnxrt --provider cuda --precision fp32 \
        --batch_size 1 --quiet --output $OUT/worth 2>&1 | tail -1
    done | tee $OUT/worth.log
    python3 main.py -v --network resnet50 --synthetic 2560 --device cuda --backend compile --precision fp16 \
        --batch_sizes 1 256 --quiet --output $OUT/worth-rerun 2>&1 | tail -4 | tee -a $OUT/worth.log
    python3 main.py --report $OUT/worth > /dev/null; cp $OUT/worth/table_outputs/*side-by-side.md $OUT/ 2>/dev/null
    ;;
  edges1)  # issue 12, call 1: the feed benchmark, and accuracy through the new loop on the GPU
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
    python3 -c "import torch, cuda.bindings; print('torch', torch.__version__, 'GPUs', torch.cuda.device_count())"
    python3 benchmarks/feed.py --images 50000 --batch_sizes 64 256 1024 --workdir /tmp/feed --out $OUT 2>&1 | tee $OUT/feed.log
    for extra in "" "--cuda_graph"; do  # 20 photos at batch 8: two full batches and a short one of 4
      python3 main.py -v --network efficientnet_lite0 --pretrained --dataset datasets/demo --device cuda --backend torch \
        --batch_sizes 1 8 $extra --quiet --output $OUT/acc 2>&1 | tail -4
    done
    python3 main.py -v --network efficientnet_lite0 --pretrained --dataset datasets/demo --device cuda:0 --backend compile \
      --batch_sizes 8 --quiet --output $OUT/acc 2>&1 | tail -3
    python3 main.py -v --network efficientnet_lite0 --pretrained --dataset datasets/demo --device cuda --backend torch \
      --batch_size 8 --sync --quiet --output $OUT/acc 2>&1 | tail -3
    python3 benchmarks/records_table.py $OUT/acc | tee $OUT/acc.log
    ;;
  edges2)  # issue 12, call 2: a short last batch (50,000 vs 49,920 images at batch 256) and the compile ratio
    for n in 49920 50000; do
      python3 main.py -v --network resnet50 --synthetic $n --device cuda --backend compile --precision fp16 \
        --batch_size 256 --quiet --output $OUT/edge 2>&1 | grep -i "error\|warn" | head -3
      python3 main.py -v --network resnet50 --synthetic $n --device cuda --backend torch --precision fp16 \
        --channels_last --cuda_graph --batch_size 256 --quiet --output $OUT/edge 2>&1 | grep -i "error\|warn" | head -3
    done
    python3 main.py -v --network resnet50 --synthetic 50000 --device cuda --backend torch --precision fp16 \
      --channels_last --batch_size 256 --quiet --output $OUT/edge 2>&1 | grep -i "error\|warn" | head -3
    python3 benchmarks/records_table.py $OUT/edge | tee $OUT/edge.log
    ;;
  checks)  # issues 12 and 13 on the GPU: feed with and without the checksum check, GPU-only behaviours
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 benchmarks/feed.py --images 50000 --batch_sizes 256 1024 --workdir /tmp/feed --out $OUT 2>&1 | tee $OUT/feed.log
    python3 benchmarks/gpu_checks.py --dataset datasets/demo --out $OUT 2>&1 | grep -v "^WARNING.*latency varies" | tee $OUT/gpu_checks.log
    ;;
  rtx1|rtx2)  # issue 15, calls 1-2: park a third of TensorRT-RTX's libs wheel and half of the ONNX files in /tmp
    mkdir -p /tmp/rtx /tmp/onnx && cp .rtx/p*/part_* /tmp/rtx/ && cp .trtbuild/*/*.onnx /tmp/onnx/ && ls -la /tmp/rtx /tmp/onnx
    ;;
  look)  # issue 17: where a batch's time goes (--profile), eager vs CUDA graph, batch 1 and 256; NVTX phases on a GPU
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
    for prec in fp32 fp16; do
      for extra in "" "--cuda_graph"; do
        python3 main.py -v --network resnet50 --synthetic 2048 --device cuda --backend torch --precision $prec \
          --channels_last --batch_sizes 1 256 $extra --profile --quiet --output $OUT/look 2>&1 | grep -v USDT | tail -3
      done
    done | tee $OUT/look.log
    python3 main.py -v --network resnet50 --synthetic 2048 --device cuda --backend compile --precision fp16 \
      --batch_sizes 1 256 --profile --quiet --output $OUT/look 2>&1 | grep -v USDT | tail -3 | tee -a $OUT/look.log
    python3 main.py --report $OUT/look > /dev/null
    python3 -c "import sys, json; sys.path.insert(0, '.'); from utils.report.records import load_records; \
from utils.report.tables import profile_markdown, latest_per_config; \
print(profile_markdown(latest_per_config(load_records(__import__('pathlib').Path('$OUT/look'), 'validate'))))" \
      | tee $OUT/profiles.md
    find $OUT/look/profiles -name "*bs256*" -delete  # the batch-1 traces are the ones to open
    ;;
  rtx3)  # issue 15, call 3 (within 30 s of call 2): join, install, build every precision (benchmarks/trt_builds.py)
    cp .rtx/p3/part_ac /tmp/rtx/ && cat /tmp/rtx/part_aa /tmp/rtx/part_ab /tmp/rtx/part_ac \
      > /tmp/rtx/tensorrt_rtx_cu13_libs-1.7.1.116-py3-none-manylinux_2_28_x86_64.whl || exit 1
    python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/rtx/tensorrt_rtx_cu13_libs-*.whl .rtx/p3/*.whl || exit 1
    export PYTHONPATH=/tmp/site LD_LIBRARY_PATH=/tmp/site/tensorrt_rtx_libs:${LD_LIBRARY_PATH:-}
    mkdir -p .trtbuild/all && cp /tmp/onnx/*.onnx .trtbuild/all/
    python3 benchmarks/trt_builds.py --build .trtbuild/all --out $OUT 2>&1 | tee $OUT/trt_builds.log
    ;;
  st1|st2|st3|st4)  # issue 14: park a part of onnxruntime-gpu 1.31.1 (CUDA 13; .ort/pN, 30 MiB each) in /tmp/ort;
    # st1 also makes the 50,000-JPEG folder and runs a small study twice (resume); st4 joins and installs ORT + ModelOpt
    mkdir -p /tmp/ort /tmp/st && cp .ort/p*/part_* /tmp/ort/ && ls /tmp/ort
    if [ "$1" = st1 ]; then
      nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
      python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
      t0=$(date +%s%N)
      python3 -c "import sys; sys.path[:0]=['benchmarks','.']; import datapath as d; from pathlib import Path; d.make_folder(Path('/tmp/st'), 50000, d.source_photos(Path('datasets/demo')), 16)"
      echo "50,000-JPEG folder made in $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(du -sh /tmp/st/data)" | tee $OUT/folder.log
      TIMEFORMAT="mini study run: %R s"
      for k in ${MINI:-}; do  # the same small study twice: the second finds every job done
        time python3 main.py -v --networks resnet18 mobilenet_v2 --backends torch compile \
          --precisions fp32 fp16 bf16 int8 --batch_sizes 1 64 --synthetic 2048 --device cuda --duration 0.3 --quiet \
          --output $OUT/mini 2>&1 | tail -22
      done 2>&1 | tee $OUT/mini.log
    fi
    if [ "$1" = st4 ]; then
      mkdir -p /tmp/ortsite && cat /tmp/ort/part_* | xz -d -T16 | tar -x -C /tmp/ortsite
      python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl .mo/nvidia_modelopt*.whl \
        .mo/onnx_graphsurgeon*.whl .mo/onnxslim*.whl .mo/lief*.whl
      python3 -c "import onnxscript" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --target /tmp/site .mo/onnx*script*.whl .mo/onnx_ir*.whl
      export PYTHONPATH=/tmp/ortsite:/tmp/site
      python3 -c "import torch, onnxruntime as ort, modelopt.onnx.autocast; print('onnxruntime', ort.__version__, ort.get_device(), ort.get_available_providers(), ort.__file__)" 2>&1 | tee $OUT/ort.log
      python3 benchmarks/ort_beside_torch.py 2>&1 | grep -v "plugin EP device" | tee -a $OUT/ort.log
      bash benchmarks/h200_session.sh study
    fi
    ;;
  c1|c2|c3|c4|c5|mut)  # issue 28 (2026-12-03): each call carries one 48 MiB part of onnxruntime-gpu 1.31.1 (.ort/pN, an
    # xz tar of the unpacked wheel) and does work beside it; the study's parts add up in /tmp/st/wall (cold time).
    # The parts, made here: pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
    # manylinux_2_28_x86_64 onnxruntime-gpu==1.31.1; unzip it into a folder; drop onnxruntime/capi/
    # libonnxruntime_providers_tensorrt.so; (cd folder && tar -c . | xz -9e -T2 > ort.tar.xz) (203 MB);
    # split -n 4 -d ort.tar.xz part_; put part_0N in .ort/pN. .whl: pydantic, pydantic_core, annotated_types,
    # typing_inspection, nvidia-modelopt 0.47.0, polygraphy, onnxslim, lief, onnx_graphsurgeon (WHL= another folder
    # of them: .whl1 on 2026-12-07, .whl holding torchao then); .mut: mutmut 3.8.1, libcst, setproctitle, textual,
    # mdit_py_plugins, platformdirs. Carry: c1 .ort/p0 .whl; c2 .ort/p1; c3 .ort/p2; c4 .ort/p3; c5 (MUT_S=... for
    # the GPU mutants) .mut.
    mkdir -p /tmp/ort /tmp/st && cp .ort/p*/part_* /tmp/ort/ 2>/dev/null; ls /tmp/ort
    [ -d /tmp/site/pydantic ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site ${WHL:-.whl}/*.whl || exit 1
    export PYTHONPATH=/tmp/site
    case "$1" in
      c1)  # the GPU's facts, the 50,000-JPEG folder, the GPU tests, then the study's PyTorch part
        nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv | tee $OUT/gpu.log
        t0=$(date +%s%N)
        python3 -c "import sys; sys.path[:0]=['benchmarks','.']; import datapath as d; from pathlib import Path; d.make_folder(Path('/tmp/st'), 50000, d.source_photos(Path('datasets/demo')), 16)"
        echo "50,000-JPEG folder made in $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(du -sh /tmp/st/data)" | tee -a $OUT/gpu.log
        python3 -m pytest -q -p no:cacheprovider tests/measure/test_timing_gpu.py 2>&1 | tail -15 | tee -a $OUT/gpu.log
        STUDY_S=${STUDY_S:-420} BACKENDS="torch compile" bash benchmarks/h200_session.sh study ;;
      c2)  # the PyTorch part's rest
        STUDY_S=${STUDY_S:-400} BACKENDS="torch compile" bash benchmarks/h200_session.sh study ;;
      mut)  # the loop's GPU mutants (tools/mutation.py "timing on a GPU"), bounded by MUT_S
        python3 -m pip install -q --no-index --no-deps --target /tmp/site .mut/*.whl
        [ -d .git ] || { git init -q . && git add -A > /dev/null; }
        mkdir -p $OUT/mut
        timeout -s INT ${MUT_S:-240} python3 tools/mutation.py "timing on a GPU" --max_children 14 --workdir /tmp/mut \
          --json $OUT/mut/gpu.json > $OUT/mut/gpu.log 2>&1; echo "mutation exit $?" >> $OUT/mut/gpu.log
        (cd "/tmp/mut/timing-on-a-GPU" && python3 -m mutmut results --all true > $OUT/mut/results.txt 2>&1)
        grep -v "^ *$" $OUT/mut/gpu.log | tail -5; awk -F': ' '{print $2}' $OUT/mut/results.txt | sort | uniq -c ;;
      c4|c5)  # join and unpack ONNX Runtime GPU once, then the study with every backend (resumed)
        if [ ! -d /tmp/ortsite/onnxruntime ]; then
          mkdir -p /tmp/ortsite && cat /tmp/ort/part_* | xz -d -T16 | tar -x -C /tmp/ortsite || exit 1
          export PYTHONPATH=/tmp/ortsite:/tmp/site
          python3 -c "import torch, onnxruntime as ort, modelopt.onnx.autocast, polygraphy; print('onnxruntime', ort.__version__, ort.get_device(), ort.get_available_providers())" 2>&1 | tail -2 | tee $OUT/ort.log
        fi
        STUDY_S=${STUDY_S:-520} bash benchmarks/h200_session.sh study
        [ "$1" = c5 ] && bash benchmarks/h200_session.sh rerun
        [ "$1" = c5 ] && [ -n "${MUT_S:-}" ] && bash benchmarks/h200_session.sh mut ;;
    esac
    ;;
  serve)  # issue 24: the harness ceiling, then a network under LoadGen Offline and Server (RUNNERS: backend:precision[:graph];
    # 2026-12-04's figures: RUNNERS="compile:fp16:graph torch:fp16:graph torch:fp32:graph" CEILING=0 SERVE_S=5 SETUP_S=300,
    # one call each at most: the compile job takes about 200 s, each torch job about 65 s). Consecutive calls (each within
    # 30 s of the last) may carry one part of onnxruntime-gpu each (.ort/pN, parked in /tmp/ort; ORT=1 joins them),
    # ModelOpt's wheels (.mo, for ONNX Runtime fp16) and EfficientNet-Lite0's weights with 20 photos (.eff: NET=
    # efficientnet_lite0 DATA=.eff/demo EXTRA=--pretrained); ABLATE="as-built pad-up ..." runs benchmarks/serving_ablation.py.
    mkdir -p /tmp/ort && cp .ort/p*/part_* /tmp/ort/ 2>/dev/null; ls /tmp/ort
    PYTHONPATH=/tmp/site python3 -c "import mlperf_loadgen, pydantic" 2>/dev/null || \
      python3 -m pip install -q --no-index --no-deps --target /tmp/site .lg/*.whl .whl/*.whl || exit 1  # carry .lg .whl once
    for w in .mo .eff; do [ -d $w ] && python3 -m pip install -q --no-index --no-deps --target /tmp/site $w/*.whl; done
    if [ -n "${ORT:-}" ] && [ ! -d /tmp/ortsite/onnxruntime ]; then
      mkdir -p /tmp/ortsite && cat /tmp/ort/part_* | xz -d -T16 | tar -x -C /tmp/ortsite || exit 1
    fi
    export PYTHONPATH=/tmp/ortsite:/tmp/site
    [ -n "${ORT:-}" ] && python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" | tee $OUT/ort.log
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv | tee $OUT/gpu.log
    [ -n "${GPU_TESTS:-}" ] && python3 -m pytest -q -p no:cacheprovider $GPU_TESTS 2>&1 | tail -4 | tee -a $OUT/gpu.log
    [ "${CEILING:-1}" = 1 ] && python3 benchmarks/serving_ceiling.py --device cuda --max_batch 256 --duration ${SERVE_S:-3} --out $OUT 2>&1 | tail -2 | tee $OUT/ceiling.log
    [ -d /tmp/sv/data ] || python3 -c "import sys; sys.path[:0]=['benchmarks','.']; import datapath as d; from pathlib import Path; d.make_folder(Path('/tmp/sv'), 5000, d.source_photos(None), 16)"
    [ -n "${ABLATE:-}" ] && timeout -s INT ${SETUP_S:-240} python3 benchmarks/serving_ablation.py --variants $ABLATE --out $OUT/ablation -- \
      -v --network resnet50 --dataset /tmp/sv/data --device cuda --backend torch --precision fp16 --channels_last --cuda_graph \
      --scenario offline server --find_peak --max_batch 256 --duration ${SERVE_S:-3} --quiet 2>&1 | grep -v "^INFO\|^records\|^tables\|^plots\|^report" | tail -8 | tee $OUT/ablation.log
    for spec in ${RUNNERS:-}; do  # graph: --cuda_graph
      IFS=: read -r backend prec graph <<< "$spec"
      timeout -s INT ${SETUP_S:-240} python3 main.py -v --network ${NET:-resnet50} --dataset ${DATA:-/tmp/sv/data} --device cuda \
        --backend $backend --precision $prec ${graph:+--cuda_graph} $([ $backend = torch ] && echo --channels_last) --scenario ${SCEN:-offline server} --find_peak \
        --max_batch ${MAXB:-256} --duration ${SERVE_S:-3} ${EXTRA:-} --quiet --output $OUT/serve 2>&1 | tail -2; echo "$spec exit $?"
    done | tee $OUT/serve.log
    python3 - "$OUT/serve" <<'PY' | tee -a $OUT/serve.log
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).rglob("records/*.json")):
    r = json.loads(p.read_text())
    if r.get("error"):
        continue
    if r.get("role") != "scenario":  # a plain validation job beside the scenarios (EXTRA=--batch_sizes ...)
        print(r["network"], r["backend"], r["precision"], "validate bs", r.get("batch_size"), "top1", r.get("top1"),
              "images", r.get("images"), "images/s", r.get("images_per_s"))
        continue
    lat = r.get("latency_ms") or {}
    print(r["network"], r["backend"], r["precision"], "graph" if r.get("cuda_graph") else "", r["scenario"], "samples/s",
          r.get("samples_per_s"), "peak_qps", r.get("peak_qps"), "p50", lat.get("p50"), "p99", lat.get("p99"),
          "valid", r.get("loadgen_valid"), "top1", r.get("top1"), "mean_batch", r.get("mean_batch"),
          "service_ms", r.get("batch_service_ms"), "respond_ms", r.get("batch_respond_ms"), "busy", r.get("sut_busy"), "prepare_s", r.get("runner_prepare_s"),
          "steps", [(s["target_qps"], s["loadgen_valid"], s["latency_ms"].get("p99"), s.get("mean_batch"),
                     (s.get("batch_service_ms") or {}).get("p50"), s.get("sut_busy"))
                    for s in r.get("peak_steps") or []])
PY
    ;;
  study)  # issue 14: the study (resumable: STUDY_S bounds this call's part); its wall time adds up in /tmp/st/wall
    export PYTHONPATH=/tmp/ortsite:/tmp/site
    t0=$(date +%s%N)
    timeout -s INT ${STUDY_S:-530} python3 main.py -v --networks resnet18 resnet34 resnet50 resnet101 resnet152 mobilenet_v2 \
      --backends ${BACKENDS:-torch compile onnxrt} --precisions fp32 fp16 --batch_sizes ${BS:-1 256} --dataset /tmp/st/data \
      --device cuda --output /tmp/st/out --quiet > /tmp/st/last.log 2>&1; rc=$?
    dt=$(( ($(date +%s%N) - t0) / 1000000 )); echo "$dt $rc" >> /tmp/st/wall
    echo "this part: $dt ms, exit $rc; parts so far (ms, exit):"; cat /tmp/st/wall
    grep -v "latency varies" /tmp/st/last.log | tail -60
    ls /tmp/st/out/records | wc -l
    mkdir -p $OUT/study && cp /tmp/st/last.log /tmp/st/wall $OUT/study/ && cp -r /tmp/st/out/table_outputs $OUT/study/ 2>/dev/null
    cp -r /tmp/st/out/records $OUT/study/ 2>/dev/null  # the records so far come back with every part
    ;;
  rerun)  # issue 14: the same study again: every job found done; then the records themselves come back (BACKENDS=
    # the backends whose part finished, where the cold study did not: a rerun times only jobs found done)
    export PYTHONPATH=/tmp/ortsite:/tmp/site
    TIMEFORMAT="rerun: %R s"
    time python3 main.py -v --networks resnet18 resnet34 resnet50 resnet101 resnet152 mobilenet_v2 \
      --backends ${BACKENDS:-torch compile onnxrt} --precisions fp32 fp16 --batch_sizes ${BS:-1 256} --dataset /tmp/st/data --device cuda \
      --output /tmp/st/out --quiet > /tmp/st/rerun.log 2>&1; tail -4 /tmp/st/rerun.log | tee $OUT/rerun.log
    cat /tmp/st/wall | tee -a $OUT/rerun.log
    mkdir -p $OUT/records && cp -r /tmp/st/out/records /tmp/st/out/table_outputs /tmp/st/out/report.html $OUT/records/
    ;;
esac
# $OUT returns at most 8 files: pack every folder the step wrote into one archive
for d in $OUT/*/; do [ -d "$d" ] && tar czf "$OUT/$(basename "$d")-$1.tgz" -C "$OUT" "$(basename "$d")" && rm -rf "$d"; done
ls -la $OUT
