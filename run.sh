#!/usr/bin/env bash
# Builds pdist (release) and runs it. With no arguments it does pdist's main job on its
# embedded defaults: `pdist gateway`, the HTTP caching proxy on 127.0.0.1:7480 with a LAN node
# built in, until Ctrl-C. With arguments it runs `pdist ARGS...`. On a fresh machine it first installs what the build needs (.ci/env.sh).
set -euo pipefail
cd "$(dirname "$0")"
source .ci/env.sh
pdist_setup
cargo build --release --quiet -p pdist-cli
bin="$CARGO_TARGET_DIR/release"
if [ $# -gt 0 ]; then
    exec "$bin/pdist" "$@"
fi
echo "pdist gateway: an HTTP caching proxy on http://127.0.0.1:7480 (stop with Ctrl-C)."
echo "Try it from another shell:  http_proxy=http://127.0.0.1:7480 curl -O http://HOST/FILE"
exec "$bin/pdist" gateway
