# shellcheck shell=bash
# Sourced by .ci/run, ./run.sh and ./test.sh: makes a machine ready to build pdist and exports the
# environment every cargo command needs.
#
# - Installs the Debian packages the build needs (libclang for bindgen, which librocksdb-sys runs on
#   every build) when they are missing and we are root.
# - Builds RocksDB's static library once (about 22 minutes on 2 cores), caches it outside the
#   repository keyed by librocksdb-sys version and features, and points librocksdb-sys at it
#   (ROCKSDB_LIB_DIR + ROCKSDB_STATIC), so no later build compiles RocksDB again.
# - Keeps cargo's target directory outside the work tree, shared by every clone on this machine.
#
# Keep ROCKSDB_CRATE / ROCKSDB_FEATURES in step with `rocksdb` in the workspace Cargo.toml.

PDIST_CACHE="${PDIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pdist}"
ROCKSDB_CRATE_VERSION="0.25.0"          # rocksdb crate; pins librocksdb-sys below
ROCKSDB_SYS_VERSION="0.19.0+11.8.1"     # librocksdb-sys that rocksdb 0.25.0 uses
ROCKSDB_FEATURES='"bindgen-runtime"'    # no compression libraries: metadata is hashes
ROCKSDB_KEY="librocksdb-sys-${ROCKSDB_SYS_VERSION}-nocompress"

pdist_log() { printf '[pdist setup] %s\n' "$*" >&2; }

pdist_need_cmd() { command -v "$1" >/dev/null 2>&1; }

pdist_apt_install() {
    # $@: Debian packages to install if missing.
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        pdist_log "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
        return 1
    fi
    pdist_log "installing ${missing[*]}"
    # Packages that bring a service (nginx) must not start it: tests start their own.
    local policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    fi
    if [ -z "${PDIST_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        PDIST_APT_UPDATED=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || rc=$?
    [ -n "$policy" ] && rm -f "$policy"
    return $rc
}

# The HTTP caching test suite (https://cache-tests.fyi), from npm, pinned.
CACHE_TESTS_VERSION="0.4.5"

pdist_test_tools() {
    # The clients and servers the tests run pdist against: curl, wget and pip through the
    # gateway, nginx as the origin; node and the HTTP caching test suite.
    pdist_apt_install curl wget nginx || return 1
    # node and npm: Debian's, unless the machine has them already (from elsewhere, whose
    # packages Debian's npm would conflict with).
    pdist_need_cmd node || pdist_apt_install nodejs || return 1
    pdist_need_cmd npm || pdist_apt_install npm || return 1
    python3 -m pip --version >/dev/null 2>&1 || pdist_apt_install python3-pip
    local suite="$PDIST_CACHE/http-cache-tests-$CACHE_TESTS_VERSION"
    if [ ! -f "$suite/node_modules/http-cache-tests/package.json" ]; then
        pdist_log "installing the HTTP caching test suite (npm http-cache-tests@$CACHE_TESTS_VERSION)"
        mkdir -p "$suite"
        npm install --prefix "$suite" --no-audit --no-fund --silent \
            "http-cache-tests@$CACHE_TESTS_VERSION" >&2 || return 1
    fi
    export PDIST_CACHE_TESTS="$suite/node_modules/http-cache-tests"
}

pdist_build_rocksdb() {
    local libdir="$PDIST_CACHE/rocksdb/$ROCKSDB_KEY"
    if [ -f "$libdir/librocksdb.a" ]; then
        export ROCKSDB_LIB_DIR="$libdir" ROCKSDB_STATIC=1
        return 0
    fi
    local work="$PDIST_CACHE/rocksdb/build-$ROCKSDB_KEY"
    pdist_log "building RocksDB's static library once (about 20 minutes on 2 cores) in $work"
    mkdir -p "$work/src"
    cat >"$work/Cargo.toml" <<TOML
[package]
name = "pdist-rocksdb-prebuild"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rocksdb = { version = "=${ROCKSDB_CRATE_VERSION}", default-features = false, features = [${ROCKSDB_FEATURES}] }
librocksdb-sys = "=${ROCKSDB_SYS_VERSION}"

[workspace]
TOML
    echo 'fn main() { let _ = rocksdb::Options::default(); }' >"$work/src/main.rs"
    (
        cd "$work" && unset ROCKSDB_LIB_DIR ROCKSDB_STATIC CARGO_TARGET_DIR &&
            cargo build --release --quiet
    ) || { pdist_log "RocksDB build failed"; return 1; }
    local built
    built=$(find "$work/target/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' | head -n 1)
    [ -n "$built" ] || { pdist_log "librocksdb.a not found after the build"; return 1; }
    mkdir -p "$libdir.tmp" && cp "$built" "$libdir.tmp/librocksdb.a" && rm -rf "$libdir" &&
        mv "$libdir.tmp" "$libdir" || return 1
    rm -rf "$work"
    pdist_log "cached $libdir/librocksdb.a"
    export ROCKSDB_LIB_DIR="$libdir" ROCKSDB_STATIC=1
}

pdist_setup() {
    pdist_need_cmd cargo || {
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
        pdist_need_cmd cargo || { pdist_log "cargo not found: install Rust from rustup.rs first"; return 1; }
    }
    # libclang for bindgen (both packages: libclang1 alone fails on stdbool.h); g++ for the link.
    # iproute2 (ip, tc) and procps (kill) for the multi-host tests.
    pdist_apt_install libclang1-14 libclang-common-14-dev g++ iproute2 procps || return 1
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PDIST_CACHE/target}"
    pdist_build_rocksdb || return 1
}
