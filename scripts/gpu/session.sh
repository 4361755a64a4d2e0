#!/usr/bin/env bash
# The GPU session, in stages that each fit one device call (<= 10 min). Run from the repository root
# after `source .gpu/stage.sh` (see scripts/build_gpu_bundle.sh):
#
#   bash scripts/gpu/session.sh STAGE [STAGE ...]
#
# Stages (time on a warm machine; a cold FlashInfer JIT cache adds 20-60 s per new kernel):
#   tests              GPU tests: pytest -m gpu tests/ (TEST_WORKERS=N: N xdist workers)   ~3-6 min
#   sweep              gdnlab sweep $SWEEP_ARGS (set SWEEP_ARGS; $GDNLAB_OUT = this stage's folder)
#   sweep_t            draft length T as a dimension: every verify strategy's step on gdnlab's Triton
#                      backend at T 2..8, each T at the acceptance curve's accept length
#                      ($ACCEPT_CURVE), B 1..256, bf16 then fp32 state (no FlashInfer needed)
#   sweep_t_flashinfer the same on FlashInfer at T 4 and 8 (its ring's draft lengths)
#   sweep_engines      the engines' own paths: SGLang's and vLLM's verify strategies at T 2/4/8, then
#                      their decode and verify kernel calls, B 1..256, bf16 then fp32 state
#   traces_triton      nsys traces, Triton backend: one per verify strategy + decode      ~3-5 min
#   traces_flashinfer  the same on FlashInfer (strategies it cannot run are logged)       ~5-9 min
#   traces             traces_triton then traces_flashinfer (one call only on a warm cache)
#   traces_engines     the engines' own full_cache verify at the seed's settings: SGLang's FlashInfer
#                      path (float32 state, as SGLang runs it on SM90) and SGLang's Triton path (float32
#                      and bfloat16)                                                       ~1-2 min
#   bench              benchmarks/bench_harness_overhead.py --quick                       ~4-7 min
#   components         scripts/gpu/run_components.py --engine: engine-grade components     ~4-5 min
#
# Traces use the seed's settings: Qwen3.5-397B-A17B at TP=4 (45 GDN layers), concurrency 64, OSL 512,
# T=4, accept length 3.17, bf16 state, the whole step (every layer's verify + commit) in one CUDA graph;
# 2 warm-up steps, 8 measured steps inside the capture range; SQLite exports only (no .nsys-rep), plus
# each run's workload summary as JSON. Every capture is bounded by CAPTURE_TIMEOUT seconds and a stage
# stops starting new work once STAGE_BUDGET_S seconds have passed.
#
# Each stage logs to <stage>.log and is packed into $OUT/<stage>.tgz (log + results) as soon as it
# ends, so a later stage that runs out of time loses nothing before it (a device call returns at most
# 8 files of 16 MB). A failing command is logged and the stage goes on with the next one.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
STAGE_BUDGET_S=${STAGE_BUDGET_S:-540}
STRATEGIES=${STRATEGIES:-full_cache token_slots recompute recompute_fused replay_ring}
SEED_ARGS=(--preset qwen3.5-397b-a17b --tp 4 --state-dtype bfloat16 --batch 64 --osl 512
           --warmup-steps 2 --capture-steps 8 --cuda-graph)

log() { echo "[$(date -u +%H:%M:%S) +${SECONDS}s] $*"; }

run_bounded() {   # run_bounded SECONDS CMD...: run CMD with a time limit, log a failure, never fail
  local limit=$1; shift
  if [ "$limit" -lt 10 ]; then log "SKIPPED (stage budget spent): $*"; return 0; fi
  timeout --signal=INT --kill-after=20 "$limit" "$@"
  local rc=$? why=""
  [ "$rc" -eq 124 ] && why=", timed out after ${limit}s"
  [ "$rc" -eq 0 ] || log "FAILED (exit $rc$why): $*"
  return 0
}

full_log() {      # full_log NAME CMD...: the whole output to NAME.out in the stage folder, its tail here
  local name=$1; shift
  "$@" > "$GDNLAB_OUT/$name.out" 2>&1
  tail -n "${TAIL_LINES:-40}" "$GDNLAB_OUT/$name.out"
}

budget_left() { echo $(( STAGE_BUDGET_S - (SECONDS - STAGE_START) )); }

tests() {   # TEST_WORKERS=N: N pytest-xdist workers, one test file each (needs pytest-xdist there)
  local par=()
  [ -n "${TEST_WORKERS:-}" ] && par=(-n "$TEST_WORKERS" --dist loadfile)
  full_log pytest run_bounded "$(budget_left)" "$PY" -m pytest -q -p no:cacheprovider -rs --durations=15 \
    "${par[@]}" -m gpu tests/
}

sweep() {
  if [ -z "${SWEEP_ARGS:-}" ]; then
    log "FAILED: set SWEEP_ARGS to the arguments of gdnlab sweep (\$GDNLAB_OUT is this stage's folder)"
    return 0
  fi
  log "gdnlab sweep $SWEEP_ARGS"
  # eval: SWEEP_ARGS may name \$GDNLAB_OUT, e.g. SWEEP_ARGS='--out $GDNLAB_OUT/sweep.parquet ...'
  eval "full_log sweep run_bounded \"\$(budget_left)\" \"\$PY\" -m gdnlab sweep $SWEEP_ARGS --no-progress"
}

ACCEPT_CURVE=${ACCEPT_CURVE:-inferencex-golden-thinking-on}
STEP_BATCHES=${STEP_BATCHES:-1,4,16,64,128,256}
sweep_part() {    # sweep_part NAME SHARE_PCT ARGS...: one gdnlab sweep into NAME.parquet, SHARE_PCT % of the budget left
  local name=$1 share=$2; shift 2
  local limit=$(( $(budget_left) * share / 100 ))
  log "gdnlab sweep $name (limit ${limit}s): $*"
  full_log "$name" run_bounded "$limit" "$PY" -m gdnlab sweep --out "$GDNLAB_OUT/$name.parquet" \
    --repeats "${REPEATS:-20}" --no-progress "$@"
}
sweep_t() {
  sweep_part sweep_t 100 --modes none --strategy-backends triton --strategies all \
    --strategy-draft-tokens 2,3,4,5,6,7,8 --strategy-batches "$STEP_BATCHES" --accept-curve "$ACCEPT_CURVE" \
    --state-dtypes bfloat16,float32
}
sweep_t_flashinfer() {
  sweep_part sweep_t_flashinfer 100 --modes none --strategy-backends flashinfer --strategies all \
    --strategy-draft-tokens 4,8 --strategy-batches "$STEP_BATCHES" --accept-curve "$ACCEPT_CURVE" \
    --state-dtypes bfloat16,float32
}
sweep_engines() {
  sweep_part sweep_engine_steps 65 --modes none --strategy-backends sglang_triton,sglang_flashinfer,vllm_triton,vllm_cuda \
    --strategies all --strategy-draft-tokens 2,4,8 --strategy-batches "$STEP_BATCHES" --accept-len 3.17 \
    --state-dtypes bfloat16,float32
  sweep_part sweep_engine_calls 100 --strategies none --backends sglang_triton,sglang_flashinfer,sglang_cutedsl,vllm_triton \
    --modes decode,verify --draft-tokens 2,4,8 --buffer-scopes batch --batches "$STEP_BATCHES" \
    --state-dtypes bfloat16,float32
}

capture_one() {   # capture_one NAME BACKEND TIMEOUT [WORKLOAD ARGS...]
  local name=$1 be=$2 limit=$3; shift 3
  local left; left=$(budget_left)
  if [ "$left" -lt 30 ]; then log "SKIPPED $name: stage budget spent"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "capture $name (limit ${limit}s)"
  run_bounded "$limit" "$PY" -m gdnlab capture --out "$GDNLAB_OUT/$name" --workload --backend "$be" \
    "${SEED_ARGS[@]}" --json "$GDNLAB_OUT/$name.json" "$@" > "$GDNLAB_OUT/$name.out" 2>&1
  tail -n 4 "$GDNLAB_OUT/$name.out"
  rm -f "$GDNLAB_OUT/$name.nsys-rep" "$GDNLAB_OUT"/*.qdstrm "$GDNLAB_OUT"/*-partial-*
}

traces_be() {     # traces_be BACKEND TIMEOUT: one capture per strategy at T=4, then plain decode
  local be=$1 limit=$2 s
  for s in $STRATEGIES; do
    capture_one "${be}_c64_osl512_t4_${s}" "$be" "$limit" --draft-tokens 4 --accept-len 3.17 --strategy "$s"
  done
  capture_one "${be}_c64_osl512_decode" "$be" "$limit"
  ls -la "$GDNLAB_OUT"
}
traces_triton() { traces_be triton "${CAPTURE_TIMEOUT:-120}"; }
traces_flashinfer() { traces_be flashinfer "${CAPTURE_TIMEOUT:-150}"; }
traces() { traces_triton; traces_flashinfer; }
traces_engines() {
  local limit=${CAPTURE_TIMEOUT:-120}
  capture_one sglang_flashinfer_c64_osl512_t4_full_cache_fp32 sglang_flashinfer "$limit" --draft-tokens 4 \
    --accept-len 3.17 --strategy full_cache --state-dtype float32
  capture_one sglang_triton_c64_osl512_t4_full_cache_fp32 sglang_triton "$limit" --draft-tokens 4 \
    --accept-len 3.17 --strategy full_cache --state-dtype float32
  capture_one sglang_triton_c64_osl512_t4_full_cache sglang_triton "$limit" --draft-tokens 4 \
    --accept-len 3.17 --strategy full_cache
  ls -la "$GDNLAB_OUT"
}

bench() {
  full_log bench run_bounded "$(budget_left)" "$PY" benchmarks/bench_harness_overhead.py --quick \
    --out-dir "$GDNLAB_OUT" --nsys-timeout "${BENCH_NSYS_TIMEOUT:-300}"
}

components() {
  full_log components run_bounded "$(budget_left)" "$PY" scripts/gpu/run_components.py --engine \
    --out "$GDNLAB_OUT/engine_components" --tps 4,8 --budget-s "${COMPONENTS_BUDGET_S:-200}" --attn-probe-timeout 60
}

STAGES=(tests sweep sweep_t sweep_t_flashinfer sweep_engines traces_triton traces_flashinfer traces traces_engines bench components)
for st in "$@"; do
  if ! printf '%s\n' "${STAGES[@]}" | grep -qx "$st"; then
    log "unknown stage $st (stages: ${STAGES[*]})"; continue
  fi
  export GDNLAB_OUT=$OUT/res_$st; mkdir -p "$GDNLAB_OUT"
  STAGE_START=$SECONDS
  echo "=================== $st ($(date -u +%H:%M:%S))"
  "$st" 2>&1 | tee "$GDNLAB_OUT/$st.log" | tail -n 25
  log "$st done in $((SECONDS - STAGE_START)) s"
  tar czf "$OUT/$st.tgz" -C "$GDNLAB_OUT" . && rm -rf "$GDNLAB_OUT"
  size=$(stat -c %s "$OUT/$st.tgz" 2>/dev/null || echo 0)
  [ "$size" -gt 16000000 ] && log "WARNING: $OUT/$st.tgz is $size bytes (> 16 MB will not come back)"
done
ls -la "$OUT"
