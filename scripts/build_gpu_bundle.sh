#!/usr/bin/env bash
# Build an offline bundle of gdnlab's GPU-side Python packages for a GPU machine without internet:
# FlashInfer + CuTe DSL (nvidia-cutlass-dsl and its libs) + apache-tvm-ffi + cuda-tile + cuda-python
# + nvtx + tqdm + anything in GPU_EXTRA_WHEELS, as xz-compressed chunks that can be carried one at a
# time, plus the script that stages them there (scripts/stage_gpu_bundle.sh, with the chunk count
# and checksums baked in). Torch, triton, numpy and pandas are expected on the GPU machine already.
#
# Run on a machine with internet, from anywhere in the checkout:   bash scripts/build_gpu_bundle.sh
# Writes $GPU_BUNDLE_DIR (default <checkout>/.gpu, git-ignored):
#   chunk.00, chunk.01, ...  (<= GPU_CHUNK_MB each)   stage.sh   bundle.env   chunks.sha256
#   packages.txt (wheel, sha256)   lib/ (libdw, libelf: what nsys needs to import its captures)
# Then on the GPU machine, from the checkout root, once per chunk (or all chunks at once):
#   source .gpu/stage.sh          (PYTHONPATH, NSYS, LD_LIBRARY_PATH set; see stage_gpu_bundle.sh)
#
# Environment (all optional):
#   GPU_BUNDLE_DIR    output directory                                  (<checkout>/.gpu)
#   GPU_CHUNK_MB      chunk size, MB (1e6 bytes)                        (40)
#   GPU_EXTRA_WHEELS  more requirement specs, e.g. "fla-core==0.6.0 einops==0.8.1" (pin versions)
#   GPU_PACKAGES      replaces the default package list entirely (e.g. for a CUDA 12 machine:
#                     swap nvidia-cutlass-dsl-libs-cu13 for -cu12 and pick a cuda-python 12.x)
#   GPU_PYTHON        target Python version                             (3.12)
#   GPU_PLATFORMS     pip --platform tags, space separated              (manylinux x86_64 2014..2_28)
#   GPU_WHEEL_CACHE   download cache reused between runs                (/tmp/gdnlab-gpu-wheels)
#   GPU_XZ_LEVEL      xz compression level (-9 is ~3x slower for a few % less)  (6)
#   GPU_KEEP_JIT_SOURCES=1  keep flashinfer/data/{csrc,cutlass,cccl}: only nvcc-JIT kernels (not the
#                     CuTe-DSL GDN kernels) need them; they add ~100 MB
#   GPU_NSYS_LIBS=0   do not copy libdw/libelf
#   GPU_ENGINES=1     also carry the serving engines' own GDN code for the engine backends
#                     (gdnlab/kernels/sglang.py, vllm.py): the sglang 0.5.23 package unpacked from its
#                     CPython wheel without its Rust extensions (*.so, unused), vLLM 0.33.0's Python files
#                     (vllm/**/*.py + dist-info, not its 336 MB of compiled code), and the light packages
#                     their imported modules need that the GPU image lacks (GPU_ENGINE_DEPS)
#   GPU_VLLM_C=1      with GPU_ENGINES=1: also vllm/_C_stable_libtorch.abi3.so (93 MB raw, built for torch
#                     2.11 + CUDA 13): vLLM's compiled fused_gdn_decode_post_conv_mtp (backend vllm_cuda), and
#                     on a CUDA machine every vLLM path needs it: resolving vLLM's CUDA platform (which its
#                     Triton ops do at import) imports it (vllm/platforms/cuda.py L23). Without it the vLLM
#                     backends say so and the SGLang ones run.
#   GPU_ENGINE_DEPS   replaces the light-dependency list of GPU_ENGINES
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
out=${GPU_BUNDLE_DIR:-$root/.gpu}
chunk_mb=${GPU_CHUNK_MB:-40}
pyver=${GPU_PYTHON:-3.12}
cache=${GPU_WHEEL_CACHE:-/tmp/gdnlab-gpu-wheels}
platforms=${GPU_PLATFORMS:-"manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64"}
default_pkgs="flashinfer-python==0.7.4 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1
nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 apache-tvm-ffi==0.1.15.post2
cuda-tile==1.7.0 cuda-python==13.4.4 nvtx==0.2.17 tqdm==4.67.1"
# what sglang/srt/utils and vllm's ops import at module level, absent from the GPU image (anyio, einops,
# regex, requests, psutil, pillow, typing-extensions, nvidia-ml-py are there)
engine_deps=${GPU_ENGINE_DEPS:-"msgspec==0.23.0 orjson==3.13.0 pybase64==1.5.1 starlette==1.10.0 pyzmq==27.3.0
pydantic-core==2.50.5"}
engine_wheels="sglang==0.5.23 vllm==0.33.0"
pkgs="${GPU_PACKAGES:-$default_pkgs} ${GPU_EXTRA_WHEELS:-}"
if [ "${GPU_ENGINES:-0}" = 1 ]; then pkgs="$pkgs $engine_deps"; fi

for tool in python3 unzip xz tar split sha256sum; do
  command -v "$tool" >/dev/null || { echo "build_gpu_bundle: '$tool' is needed" >&2; exit 1; }
done
case "$out" in "$root"/*)  # keep the bundle out of git
  rel=${out#"$root"}
  git -C "$root" check-ignore -q "$out" 2>/dev/null || echo "$rel/" >> "$root/.git/info/exclude" ;;
esac

mkdir -p "$cache" "$out/lib"
dl=$(mktemp -d); site=$(mktemp -d); edl=$(mktemp -d)
trap 'rm -rf "$dl" "$site" "$edl"' EXIT
plat_args=(); for p in $platforms; do plat_args+=(--platform "$p"); done

# 1. wheels: exactly this run's set lands in $dl (cached files are reused through --find-links)
echo "build_gpu_bundle: downloading for CPython $pyver: $(echo $pkgs | wc -w) packages"
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  "${plat_args[@]}" --find-links "$cache" -d "$dl" $pkgs 2>&1 | grep -v '^WARNING: Location' || true
n_whl=$(ls "$dl"/*.whl 2>/dev/null | wc -l)
[ "$n_whl" -ge "$(echo $pkgs | wc -w)" ] || { echo "build_gpu_bundle: got $n_whl wheels for $(echo $pkgs | wc -w) specs" >&2; exit 1; }
cp -n "$dl"/*.whl "$cache"/ 2>/dev/null || true
dups=$(ls "$dl"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z.-' 'a-z__' | sort | uniq -d)
[ -z "$dups" ] || { echo "build_gpu_bundle: more than one version of: $dups" >&2; exit 1; }

# 2. unpack into one site directory, slim it, record what is inside
for w in "$dl"/*.whl; do unzip -q -o "$w" -d "$site"; done
if [ "${GPU_KEEP_JIT_SOURCES:-0}" != 1 ]; then rm -rf "$site"/flashinfer/data/{csrc,cutlass,cccl}; fi
find "$site" -name __pycache__ -prune -exec rm -rf {} +
# 2b. the engines' own packages (GPU_ENGINES=1), unpacked in part: their metadata says what they are
if [ "${GPU_ENGINES:-0}" = 1 ]; then
  echo "build_gpu_bundle: engine packages: $engine_wheels"
  # sglang's CPython wheel is tagged manylinux_2_34 (its Rust extensions, which are not unpacked)
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_34_x86_64 "${plat_args[@]}" --find-links "$cache" -d "$edl" $engine_wheels 2>&1 \
    | grep -v '^WARNING: Location' || true
  for w in $engine_wheels; do
    ls "$edl"/"${w%%==*}"-"${w##*==}"-*.whl >/dev/null 2>&1 || { echo "build_gpu_bundle: no wheel for $w" >&2; exit 1; }
  done
  cp -n "$edl"/*.whl "$cache"/ 2>/dev/null || true
  unzip -q -o "$edl"/sglang-*.whl -x '*.so' -d "$site"
  vllm_members=('vllm/*.py' 'vllm-*.dist-info/*')
  if [ "${GPU_VLLM_C:-0}" = 1 ]; then vllm_members+=('vllm/_C_stable_libtorch.abi3.so'); fi
  unzip -q -o "$edl"/vllm-*.whl "${vllm_members[@]}" -d "$site"
  find "$site" -name __pycache__ -prune -exec rm -rf {} +
fi
(cd "$dl" && sha256sum -- *.whl | awk '{print $2, $1}') > "$out/packages.txt"
if [ "${GPU_ENGINES:-0}" = 1 ]; then
  (cd "$edl" && sha256sum -- *.whl | awk '{print $2, $1 " (unpacked in part)"}') >> "$out/packages.txt"
fi
cp "$out/packages.txt" "$site/.gdnlab-bundle-packages.txt"

# 3. chunks + checksums
rm -f "$out"/chunk.*
tar cf - -C "$site" . | xz -T0 "-${GPU_XZ_LEVEL:-6}" | split -b "$((chunk_mb * 1000000))" -d -a 2 - "$out/chunk."
read -r id n < <(bash "$here/write_bundle_meta.sh" "$out" "$pyver" scripts/build_gpu_bundle.sh)

# 4. the stage script, with the bundle's identity baked in (so carrying stage.sh alone suffices):
#    written with chunks.sha256 and bundle.env by write_bundle_meta.sh above

# 5. nsys's importer (QdstrmImporter) needs libdw, which minimal GPU images lack
if [ "${GPU_NSYS_LIBS:-1}" = 1 ]; then
  for l in libdw.so.1 libelf.so.1; do
    cp -L "/usr/lib/x86_64-linux-gnu/$l" "$out/lib/" 2>/dev/null || cp -L "/lib/x86_64-linux-gnu/$l" "$out/lib/" 2>/dev/null \
      || echo "build_gpu_bundle: $l not found here; nsys exports may fail on the GPU machine" >&2
  done
fi

du -sh "$out"/chunk.* "$out/lib" | sed 's/^/  /'
echo "bundle $id ready in $out: $n chunk(s), $(wc -l < "$out/packages.txt") wheels (list: $out/packages.txt)"
echo "GPU machine: from the checkout root, 'source ${out#"$root"/}/stage.sh' with the chunks present;"
echo "a call-by-call transfer carries one chunk per call, back to back:"
for c in "$out"/chunk.*; do
  r=${c#"$root"/}; d=${out#"$root"/}
  echo "  carry [\"$r\", \"$d/stage.sh\", \"$d/lib\"]   command: source $d/stage.sh; ..."
done
