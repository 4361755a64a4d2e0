#!/usr/bin/env bash
# The lead's GPU session, in stages that each fit one device call (<= 10 min). Run from the repo root
# after `source .gpu/stage.sh` (see scripts/build_gpu_bundle.sh / ../shared/device/README.md).
#   bash scripts/gpu/session.sh STAGE [STAGE ...]
# Every stage logs to $OUT/<stage>.log; results are collected under $OUT/res and packed into
# $OUT/<stage>.tgz at the end (the device call returns at most 8 files).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export NCU=${NCU:-/usr/local/cuda/bin/ncu}

triton_tests() {
  "$PY" -m pytest -q -p no:cacheprovider -rs -m gpu tests/ 2>&1 | tail -n 30
}
gpu_tests() {   # every GPU test (FlashInfer cases run once the bundle is unpacked)
  "$PY" -m pytest -q -p no:cacheprovider -rs -m gpu tests/ 2>&1 | tail -n 30
}
sweep_be() {    # sweep_be BACKEND: the default grid for one backend, CUDA-graph and eager timing
  timeout --signal=INT --kill-after=20 "${SWEEP_TIMEOUT:-300}" "$PY" -m gdnlab sweep --backends "$1" \
    --timing graph eager --out "$GDNLAB_OUT/sweep_$1.parquet" --resume --no-progress 2>&1 | tail -n 25
}
sweep_triton() { sweep_be triton; }
sweep_flashinfer() { sweep_be flashinfer; }
traces_be() {   # traces_be BACKEND: decode and T=4 verify decode loops at the seed's settings under nsys
  mkdir -p "$GDNLAB_OUT"
  for mode in decode verify4; do
    extra=(); [ "$mode" = verify4 ] && extra=(--draft-tokens 4 --accept-len 3.17)
    timeout 150 "$PY" -m gdnlab capture --out "$GDNLAB_OUT/$1_c64_osl512_${mode}" --workload \
      --backend "$1" --preset qwen3.5-397b-a17b --tp 4 --state-dtype bfloat16 --batch 64 --osl 512 \
      --capture-steps 8 "${extra[@]}" 2>&1 | tail -n 8
  done
  rm -f "$GDNLAB_OUT"/*.nsys-rep "$GDNLAB_OUT"/*.qdstrm
  ls -la "$GDNLAB_OUT"
}
traces_triton() { traces_be triton; }
traces_flashinfer() { traces_be flashinfer; }
metrics() {
  GDNLAB_METRICS_BUDGET_S=${GDNLAB_METRICS_BUDGET_S:-150} timeout 240 "$PY" scripts/gpu/run_metrics.py 2>&1 | tail -n 40
}
bench() {       # harness vs nsys kernel durations, both backends; JSON in $GDNLAB_OUT (copy to benchmarks/results)
  timeout --signal=INT --kill-after=10 "${BENCH_TIMEOUT:-540}" "$PY" benchmarks/bench_harness_overhead.py \
    ${BENCH_ARGS:-} --nsys-timeout "${BENCH_NSYS_TIMEOUT:-360}" 2>&1 | tail -n 45
}

for st in "$@"; do   # one archive per stage, so a later stage that runs out of time loses nothing before it
  export GDNLAB_OUT=$OUT/res_$st; mkdir -p "$GDNLAB_OUT"
  echo "=================== $st ($(date -u +%H:%M:%S))"
  "$st" 2>&1 | tee "$GDNLAB_OUT/$st.log" | tail -n 25
  tar czf "$OUT/$st.tgz" -C "$GDNLAB_OUT" . && rm -rf "$GDNLAB_OUT"
done
ls -la "$OUT"
