#!/usr/bin/env bash
# Re-split a bundle made by scripts/build_gpu_bundle.sh into chunks of another size, without
# rebuilding it (the archive is the same bytes; its checksums, id, bundle.env and stage.sh change):
#
#   bash scripts/rechunk_gpu_bundle.sh CHUNK_BYTES [BUNDLE_DIR]      (BUNDLE_DIR default .gpu)
#
# A device call carries the working tree plus its carried paths up to a fixed size, so the fewest
# calls come from chunks as large as that limit minus the working tree, .gpu/lib and stage.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
size=${1:?usage: rechunk_gpu_bundle.sh CHUNK_BYTES [BUNDLE_DIR]}
out=${2:-.gpu}
case $size in ''|*[!0-9]*) echo "rechunk_gpu_bundle: CHUNK_BYTES must be a whole number of bytes, got '$size'" >&2; exit 2;; esac
[ -f "$out/chunks.sha256" ] || { echo "rechunk_gpu_bundle: no bundle in $out (chunks.sha256 missing)" >&2; exit 2; }
(cd "$out" && sha256sum --quiet -c chunks.sha256) || { echo "rechunk_gpu_bundle: $out's chunks do not match chunks.sha256" >&2; exit 1; }
pyver=$(sed -n 's/.*for CPython \([0-9.]*\).*/\1/p' "$out/stage.sh" | head -1)
tmp=$(mktemp -d "$out/.rechunk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat "$out"/chunk.?? | split -b "$size" -d -a 2 - "$tmp/chunk."
rm -f "$out"/chunk.??
mv "$tmp"/chunk.?? "$out/"
read -r id n < <(bash "$here/write_bundle_meta.sh" "$out" "${pyver:-unknown}" scripts/rechunk_gpu_bundle.sh)
echo "bundle $id: $n chunk(s) of at most $size bytes in $out"
