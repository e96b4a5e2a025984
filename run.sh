#!/usr/bin/env bash
# Builds pdist (release) and runs it. With no arguments it does pdist's main job on its
# embedded defaults: it hashes a 1 GiB sample into content information and prints the ticket,
# then shows the BranchCache (MS-PCCRC V1) form of the same content. With arguments it runs
# `pdist ARGS...`. On a fresh machine it first installs what the build needs (.ci/env.sh).
set -euo pipefail
cd "$(dirname "$0")"
source .ci/env.sh
pdist_setup
cargo build --release --quiet -p pdist-cli -p pdist-fixtures
bin="$CARGO_TARGET_DIR/release"
if [ $# -gt 0 ]; then
    exec "$bin/pdist" "$@"
fi
sample="$PDIST_CACHE/sample-1G.bin"
if [ ! -f "$sample" ]; then
    pdist_log "writing a 1 GiB sample to $sample"
    "$bin/gen-content" 1G 1 "$sample"
fi
echo "\$ pdist hash $sample"
"$bin/pdist" hash "$sample"
echo
v1="$PDIST_CACHE/sample.pccrc"
echo "\$ pdist hash $sample --format pccrc-v1 -o $v1"
"$bin/pdist" hash "$sample" --format pccrc-v1 -o "$v1" >/dev/null
echo "\$ pdist inspect $v1 | head -n 12"
"$bin/pdist" inspect "$v1" | head -n 12
