#!/usr/bin/env bash
# tests/clients/client_test.sh go|rust TOOL SOURCE BUILD EXTENSION SQLITE3_SHELL [CACHE]
#
# ctest's client.go and client.rust: builds the program in SOURCE
# (tests/clients/go or tests/clients/rust) into BUILD with TOOL (go or
# cargo), offline, from Debian's packaged sources only, then runs it against
# EXTENSION (build/cdc) with SQLITE3_SHELL as the other process. Exits 77
# (ctest: skipped) when the toolchain or the driver's sources are missing;
# `tools/deps.sh test` installs them, so CI does not skip.
#
# CACHE (default BUILD) holds the compilers' caches: Go's build cache and
# cargo's target directory. The Makefile's sanitizer and newest-SQLite build
# dirs share build/'s (-DCDC_CLIENTS_CACHE), so the dependencies (cgo,
# rusqlite, serde_json) compile once per checkout; both tools lock their caches.
#
# Sanitizer builds set LD_PRELOAD= and CDC_HOST_PRELOAD=<runtime>: the build
# runs without the runtime, the program (the host that loads cdc.so) with it.
set -euo pipefail
lang=$1 tool=$2 src=$3 out=$4 ext=$5 shell=$6 cache=${7:-$4}

skip() { echo "client.$lang: skipped: $*" >&2; exit 77; }
[ -x "$tool" ] || skip "no toolchain ($tool); tools/deps.sh test installs it"
mkdir -p "$out" "$cache"
start=$(date +%s%N)
case $lang in
  go)
    # Debian's golang-github-mattn-go-sqlite3-dev, GOPATH mode (no module
    # proxy). Tag libsqlite3: link the system SQLite (Debian's copy has no
    # bundled amalgamation anyway), the library the sqlite3 shell uses.
    gocode=/usr/share/gocode
    [ -d $gocode/src/github.com/mattn/go-sqlite3 ] ||
      skip "no $gocode/src/github.com/mattn/go-sqlite3 (golang-github-mattn-go-sqlite3-dev)"
    bin=$out/cdc_client_go
    (cd "$src" && GO111MODULE=off GOPATH=$out/gopath:$gocode GOCACHE=$cache/go-cache \
       GOFLAGS= CGO_ENABLED=1 "$tool" build -tags libsqlite3 -o "$bin" .)
    ;;
  rust)
    # Debian's crates (librust-rusqlite-dev, librust-serde-json-dev) as the
    # only registry, as debcargo builds do; the project is copied so that
    # Cargo.lock and target/ land in BUILD, not in the source tree.
    registry=/usr/share/cargo/registry
    ls -d $registry/rusqlite-* >/dev/null 2>&1 ||
      skip "no rusqlite in $registry (librust-rusqlite-dev)"
    mkdir -p "$out/project/src" "$out/cargo-home"
    cp -p "$src/Cargo.toml" "$out/project/"
    cp -p "$src/src/main.rs" "$out/project/src/"
    cat >"$out/cargo-home/config.toml" <<CONF
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "$registry"
[net]
offline = true
CONF
    # The rustc beside this cargo (Debian's), whatever else PATH holds.
    rustc=$(dirname "$tool")/rustc
    [ -x "$rustc" ] || rustc=rustc
    CARGO_HOME=$out/cargo-home CARGO_TARGET_DIR=$cache/rust-target RUSTC=$rustc CARGO_INCREMENTAL=0 \
      "$tool" build --quiet --offline --manifest-path "$out/project/Cargo.toml"
    bin=$out/cdc_client_rust
    cp "$cache/rust-target/debug/cdc_client_rust" "$bin"
    ;;
  *) echo "usage: client_test.sh go|rust TOOL SOURCE BUILD EXTENSION SQLITE3_SHELL [CACHE]" >&2; exit 2 ;;
esac
echo "client.$lang: built $bin in $(( ($(date +%s%N) - start) / 1000000 )) ms"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cdc-$lang.XXXXXX")
trap 'rm -rf "$dir"' EXIT
LD_PRELOAD=${CDC_HOST_PRELOAD:-${LD_PRELOAD:-}} "$bin" "$ext" "$shell" "$dir"
