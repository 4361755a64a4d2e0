#!/usr/bin/env bash
# Install what gdnlab's SGLang engine backends need to import SGLang's own GDN kernels on a CPU machine
# (tests/kernels/test_engine_*.py run them in Triton's CPU interpreter):
#   * sglang==0.5.23 itself with --no-deps (its ~39 MB wheel; none of its server dependencies), and
#   * the few light packages the imported modules need: msgspec, orjson, pybase64, starlette, einops,
#     pyzmq, pydantic, pillow, psutil, requests, packaging, typing_extensions (sglang/srt/utils imports
#     them at module level; a fresh machine may lack any of them).
# gdnlab imports SGLang through a bare package (gdnlab/kernels/_engine_import.py), so sglang/__init__.py
# and the server never run. vLLM is not installed here: its wheel is ~336 MB; the vLLM tests skip on a
# CPU machine without it and say why (they run on the GPU machine, from the offline bundle).
# Idempotent. Never fails the caller: without network the engine tests skip and say so.
# Usage: bash scripts/install_engines_cpu.sh   (PYTHON=... to pick the interpreter)
#        ENGINES_VLLM=1 bash scripts/install_engines_cpu.sh   also installs vllm==0.33.0 --no-deps (336 MB
#        download) and regex, so the vLLM interpreter tests run too (not done in CI)
set -uo pipefail

PY="${PYTHON:-python3}"
SGLANG="sglang==0.5.23"
DEPS=("msgspec>=0.18,<1" "orjson>=3.9,<4" "pybase64>=1.3,<2" "starlette>=0.36,<2" "einops>=0.7,<1"
      "pyzmq>=25,<28" "pydantic>=2.5,<3" "pillow>=10,<14" "psutil>=5.9,<8" "requests>=2.31,<3"
      "packaging>=23" "typing_extensions>=4.8")

have=$("$PY" -c "from importlib.metadata import version; print(version('sglang'))" 2>/dev/null || true)
if [ "$have" = "${SGLANG#sglang==}" ]; then
    echo "sglang $have already installed"
elif ! "$PY" -m pip install -q --no-deps "$SGLANG"; then
    echo "install_engines_cpu.sh: could not install $SGLANG; the SGLang engine tests will skip and say so" >&2
    exit 0
fi
log=$(mktemp)
# pip's resolver lists every server dependency sglang declares but --no-deps left out: expected, so quiet
if ! "$PY" -m pip install -q "${DEPS[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_engines_cpu.sh: could not install ${DEPS[*]}; the SGLang engine tests will skip and say why" >&2
fi
rm -f "$log"
if [ "${ENGINES_VLLM:-0}" = 1 ]; then
    "$PY" -m pip install -q --no-deps "vllm==0.33.0" && "$PY" -m pip install -q "regex>=2023" \
        || echo "install_engines_cpu.sh: could not install vllm==0.33.0; the vLLM engine tests will skip" >&2
fi
"$PY" - <<'PYEOF'
from gdnlab.kernels import _engine_import as eng
print("engines:", "; ".join(f"{e}: {eng.check(e)[1]}" for e in ("sglang", "vllm")))
PYEOF
exit 0
