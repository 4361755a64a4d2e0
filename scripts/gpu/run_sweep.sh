#!/usr/bin/env bash
# gdnlab kernel sweep + harness-overhead benchmark on a GPU machine.
#
# Assumes: `source .gpu/stage.sh` was done in this shell (PYTHONPATH holds FlashInfer + this checkout,
# $NSYS is set), $GDNLAB_OUT is the output directory, cwd = repository root.
#
#   bash scripts/gpu/run_sweep.sh tests sweep      # call 1 (<= ~8 min): GPU tests of the timing harness,
#                                                  #   the FlashInfer backend, then the sweep
#   bash scripts/gpu/run_sweep.sh workload bench   # call 2 (<= ~6 min): workload smoke + harness benchmark
#   bash scripts/gpu/run_sweep.sh sweep            # the sweep alone (resumable: run again to continue)
#   bash scripts/gpu/run_sweep.sh                  # = tests sweep workload bench (may pass 10 min on a cold
#                                                  #   JIT cache: prefer the two calls above)
#
# Outputs in $GDNLAB_OUT: sweep.parquet (read it with gdnlab.results.load_sweep), sweep.log,
# workload_*.json, harness_overhead.json, harness_overhead.sqlite, harness_overhead.log.
# Time: sweep ~1.5-3 min once FlashInfer's JIT cache (~/.cache/flashinfer) is warm; a cold cache adds
# 1.5-15 s per new kernel shape. The sweep is stopped at SWEEP_TIMEOUT (default 400 s) and keeps every
# completed point (in .sweep.parquet.parts/ until the run completes): run
# `bash scripts/gpu/run_sweep.sh sweep` again and it resumes with the points not yet measured.
set -uo pipefail
STAGES=("$@"); [ ${#STAGES[@]} -eq 0 ] && STAGES=(tests sweep workload bench)
OUT=${GDNLAB_OUT:-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
rc=0

run_tests() {
  "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_instrument.py tests/kernels/test_flashinfer_backend.py 2>&1 \
    | tail -n 15 || rc=1
}

run_sweep() {
  # default grid: every available backend except reference (flashinfer, triton) x batch
  # 1,4,16,32,64,128,256 x {decode, verify T=2,4,8 x buffer scope batch|pool} x state
  # float32|bfloat16, qwen3.5-397b-a17b@tp4; amortised timing (n calls on disjoint pool rows in one CUDA
  # graph, >= 50 µs per sample), L2 flushed, 5 warm-up + 40 timed replays per point.
  timeout --signal=INT --kill-after=20 "${SWEEP_TIMEOUT:-400}" \
    "$PY" -m gdnlab sweep --out "$OUT/sweep.parquet" --resume 2>&1 | tee -a "$OUT/sweep.log" | tail -n 60
  local s=${PIPESTATUS[0]}
  if [ "$s" -eq 124 ] || [ "$s" -eq 130 ]; then
    echo "run_sweep.sh: sweep stopped at the time limit; finished points are stored — run 'bash scripts/gpu/run_sweep.sh sweep' again to resume"
    rc=1
  elif [ "$s" -ne 0 ]; then
    echo "run_sweep.sh: sweep exited with $s"; rc=1
  fi
}

run_workload() {
  # decode-loop smoke runs (what `gdnlab capture` runs under nsys): 45 GDN layers, C=64, OSL=128
  "$PY" -m gdnlab workload --backend flashinfer --preset qwen3.5-397b-a17b --tp 4 --batch 64 --osl 128 \
    --json "$OUT/workload_flashinfer_c64_decode.json" 2>&1 | tail -n 4 || rc=1
  "$PY" -m gdnlab workload --backend flashinfer --preset qwen3.5-397b-a17b --tp 4 --batch 64 --osl 128 \
    --draft-tokens 4 --accept-len 2.8 --capture-steps 8 \
    --json "$OUT/workload_flashinfer_c64_verify4.json" 2>&1 | tail -n 4 || rc=1
}

run_bench() {
  # CUDA-event time (as the sweep measures) vs the kernels' nsys durations, B = 1,16,64,256
  timeout --signal=INT --kill-after=20 "${BENCH_TIMEOUT:-300}" \
    "$PY" benchmarks/bench_harness_overhead.py --backends flashinfer --nsys-timeout 200 2>&1 | tee "$OUT/harness_overhead.log" | tail -n 40
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
}

for stage in "${STAGES[@]}"; do
  echo "=== run_sweep.sh: $stage ($(date -u +%H:%M:%S))"
  case "$stage" in
    all)      run_tests; run_sweep; run_workload; run_bench ;;
    tests)    run_tests ;;
    sweep)    run_sweep ;;
    workload) run_workload ;;
    bench)    run_bench ;;
    *) echo "usage: bash scripts/gpu/run_sweep.sh [tests] [sweep] [workload] [bench]"; exit 2 ;;
  esac
done
ls -la "$OUT"
exit $rc
