# Stage an offline GPU bundle made by scripts/build_gpu_bundle.sh. SOURCE it (do not run it), from the
# checkout root, at the start of every command on the GPU machine:
#     source .gpu/stage.sh                 (the copy the build wrote, with the bundle's checksums), or
#     source scripts/stage_gpu_bundle.sh   (reads .gpu/bundle.env)
# Each call copies the chunks it finds in $GPU_BUNDLE_DIR (default ./.gpu) to a spool directory,
# checking their sha256; once all chunks are there it unpacks them into $GPU_SITE (default
# /tmp/site) — so chunks may arrive over several calls, as long as the machine (its /tmp) stays the
# same. Then it sets PYTHONPATH (the unpacked site, the paths its .pth files add, and this checkout),
# PYTHONUNBUFFERED, and NSYS / QDSTRM_IMPORTER / LD_LIBRARY_PATH for Nsight Systems where found.
# It never exits the calling shell; GDNLAB_BUNDLE_READY=1 tells that everything is in place.

_gb_dir=${GPU_BUNDLE_DIR:-$PWD/.gpu}
if [ -z "${GDNLAB_BUNDLE_ID:-}" ] && [ -f "$_gb_dir/bundle.env" ]; then . "$_gb_dir/bundle.env"; fi
if [ -z "${GDNLAB_BUNDLE_SUMS:-}" ] && [ -f "$_gb_dir/chunks.sha256" ]; then GDNLAB_BUNDLE_SUMS=$(cat "$_gb_dir/chunks.sha256"); fi
_gb_id=${GDNLAB_BUNDLE_ID:-unknown}
_gb_n=${GDNLAB_BUNDLE_CHUNKS:-${GPU_CHUNKS:-2}}
_gb_spool=${GPU_BUNDLE_SPOOL:-/tmp/gpu-bundle}/$_gb_id
_gb_site=${GPU_SITE:-/tmp/site}
GDNLAB_BUNDLE_READY=0
mkdir -p "$_gb_spool"

for _gb_c in "$_gb_dir"/chunk.*; do
  [ -f "$_gb_c" ] || continue
  _gb_name=${_gb_c##*/}
  [ -f "$_gb_spool/$_gb_name" ] && continue
  _gb_want=$(printf '%s\n' "${GDNLAB_BUNDLE_SUMS:-}" | awk -v n="$_gb_name" '$2 == n {print $1}')
  _gb_have=$(sha256sum "$_gb_c" | cut -d' ' -f1)
  if [ -n "$_gb_want" ] && [ "$_gb_want" != "$_gb_have" ]; then
    echo "stage: $_gb_name does not match bundle $_gb_id (sha256 $_gb_have); rebuild or re-copy it" >&2
    continue
  fi
  cp "$_gb_c" "$_gb_spool/$_gb_name.part" && mv "$_gb_spool/$_gb_name.part" "$_gb_spool/$_gb_name"
done

if [ -f "$_gb_site/.unpacked-$_gb_id" ]; then
  GDNLAB_BUNDLE_READY=1
elif [ -f "$_gb_site/.unpacked" ] && ! ls "$_gb_spool"/chunk.?? >/dev/null 2>&1; then
  # staged earlier by shared/device/stage.sh (no bundle id): use it rather than ask for chunks again
  GDNLAB_BUNDLE_READY=1
  echo "stage: using the bundle unpacked earlier in $_gb_site (by shared/device/stage.sh; id unknown)"
else
  _gb_got=$(ls "$_gb_spool"/chunk.?? 2>/dev/null | wc -l)
  if [ "$_gb_got" -ge "$_gb_n" ]; then
    if [ -d "$_gb_site" ] && [ -n "$(ls -A "$_gb_site" 2>/dev/null)" ] && ! ls "$_gb_site"/.unpacked* >/dev/null 2>&1; then
      echo "stage: $_gb_site exists and is not a bundle site; set GPU_SITE to an empty directory" >&2
    else
      rm -rf "$_gb_site" && mkdir -p "$_gb_site"
      if cat "$_gb_spool"/chunk.?? | xz -dc | tar xf - -C "$_gb_site"; then
        touch "$_gb_site/.unpacked-$_gb_id"
        GDNLAB_BUNDLE_READY=1
        echo "stage: bundle $_gb_id unpacked to $_gb_site ($(wc -l < "$_gb_site/.gdnlab-bundle-packages.txt" 2>/dev/null || echo '?') wheels)"
      else
        echo "stage: unpacking bundle $_gb_id failed (a chunk is damaged?)" >&2
      fi
    fi
  else
    _gb_missing=""
    for _gb_i in $(seq 0 $((_gb_n - 1))); do
      _gb_name=$(printf 'chunk.%02d' "$_gb_i")
      [ -f "$_gb_spool/$_gb_name" ] || _gb_missing="$_gb_missing $_gb_name"
    done
    echo "stage: have $_gb_got of $_gb_n chunks of bundle $_gb_id (missing:$_gb_missing); carry the next one in the next call (at once)"
  fi
fi

if [ "$GDNLAB_BUNDLE_READY" = 1 ]; then
  # the site and every path its .pth files add (nvidia-cutlass-dsl's .pth runs code: let Python do it)
  _gb_pp=$(PYTHONPATH="$_gb_site" python3 -c "import site, sys; b = set(sys.path); site.addsitedir('$_gb_site'); print(':'.join(['$_gb_site'] + [p for p in sys.path if p not in b and p != '$_gb_site']))" 2>/dev/null)
  [ -n "$_gb_pp" ] || _gb_pp=$_gb_site:$_gb_site/nvidia_cutlass_dsl/dsl_packages
  export PYTHONPATH=$_gb_pp:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
export FLASHINFER_DISABLE_VERSION_CHECK=${FLASHINFER_DISABLE_VERSION_CHECK:-1}

# Nsight Systems: the CLI that ships inside Nsight Compute, and the libdw its importer needs
if [ -z "${NSYS:-}" ] || [ ! -x "${NSYS:-}" ]; then
  _gb_nsys=$(command -v nsys 2>/dev/null || ls -d /opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys 2>/dev/null | tail -1)
  [ -n "$_gb_nsys" ] && export NSYS=$_gb_nsys
fi
_gb_q=$(ls /opt/nvidia/nsight-compute/*/host/linux-desktop-*/QdstrmImporter 2>/dev/null | tail -1)
[ -n "$_gb_q" ] && export QDSTRM_IMPORTER=$_gb_q
[ -d "$_gb_dir/lib" ] && export LD_LIBRARY_PATH=$_gb_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
unset _gb_dir _gb_id _gb_n _gb_spool _gb_site _gb_c _gb_name _gb_want _gb_have _gb_got _gb_missing _gb_i _gb_pp _gb_nsys _gb_q
