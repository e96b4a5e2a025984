#!/usr/bin/env bash
# Runs pdist's tests: every unit, property, multi-part and CLI test, then the doc tests.
# On a fresh machine it first installs what the build and the tests need (see .ci/env.sh; the
# first run builds RocksDB's static library once, about 20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"
source .ci/env.sh
pdist_setup
pdist_test_tools
if ! cargo nextest --version >/dev/null 2>&1; then
    pdist_log "installing cargo-nextest"
    cargo install cargo-nextest --locked --quiet
fi
profile=default
[ -n "${CI:-}" ] && profile=ci
# Doc tests first: nextest's summary must be the last word.
cargo test --workspace --doc --quiet
cargo nextest run --workspace --profile "$profile" "$@"
