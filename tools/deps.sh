#!/usr/bin/env bash
# tools/deps.sh [demo|python|npm|deb|test]...
# Installs the Debian packages that `make demo` (demo), `make python`,
# `make npm`, `make deb` or `make test` (test, the default: everything the
# suite and the package tests use) need, and only those that are missing. Silent when everything is there; otherwise one
# `apt-get update`, then `apt-get install`. Not root and something missing:
# says what to install and exits 1. Runs without make, so on a bare machine
# `tools/deps.sh demo` (or `apt-get install make`) is the only step before
# `make demo`. Used by the Makefile and .ci/run alike.
set -euo pipefail
[ $# -gt 0 ] || set -- test

# The demo: a C++ compiler, make, CMake, pkg-config, SQLite's headers and shell.
pkgs=(g++ make cmake pkg-config libsqlite3-dev sqlite3)
# Debian's wheel tooling (make python) and venv with its bundled pip (the
# package test installs the wheel into a fresh venv).
python=(python3 python3-build python3-wheel python3-setuptools python3-venv)
# What CPack runs to compute the Depends of make deb: dpkg-shlibdeps, and
# file (it finds the binaries to hand to dpkg-shlibdeps).
deb=(dpkg-dev file)
# The Go and Rust client tests (client.go, client.rust): Debian's toolchains
# and the drivers' packaged sources, built offline (no module proxy, no crates.io).
clients=(golang-go golang-github-mattn-go-sqlite3-dev cargo librust-rusqlite-dev librust-serde-json-dev)
# Machines of this kind ship Node.js with npm; Debian's npm is the fallback.
npm=()
command -v npm >/dev/null 2>&1 || npm=(npm)
for set_ in "$@"; do
  case $set_ in
    demo) ;;
    python) pkgs+=("${python[@]}") ;;
    deb) pkgs+=("${deb[@]}") ;;
    npm) pkgs+=("${npm[@]}") ;;
    test)
      # The suite: GoogleTest, Google Benchmark (make bench), clang and its
      # sanitizer/fuzzer runtime (fuzz smoke runs), Debian's python3 (client,
      # docs and stream tests), npm (the newest-SQLite run fetches an
      # amalgamation from the npm registry; the Node tests build
      # better-sqlite3), Go and Rust with their SQLite drivers (client
      # tests), and what the package tests use.
      # cdc-stream's sinks and the servers their tests run on 127.0.0.1.
      pkgs+=(build-essential libgtest-dev libbenchmark-dev clang libclang-rt-14-dev
             libcurl4-openssl-dev libnats-dev libhiredis-dev nats-server redis-server
             "${clients[@]}" "${python[@]}" "${deb[@]}" "${npm[@]}")
      ;;
    *) echo "usage: tools/deps.sh [demo|python|npm|deb|test]..." >&2; exit 2 ;;
  esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "tools/deps.sh: not a Debian system; make sure these (or your system's equivalents) are installed: ${pkgs[*]}" >&2
  exit 0
fi

# One dpkg-query for all of them; a package dpkg has never heard of is missing too.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${pkgs[@]}" 2>/dev/null |
            awk 'substr($1, 2, 1) == "i" { print $2 }' | sed 's/:.*//') || true
need=()
for p in "${pkgs[@]}"; do
  grep -qx -- "$p" <<<"$installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/deps.sh: missing Debian packages: ${need[*]}" >&2
  echo "install them as root, then run make again:" >&2
  echo "  sudo apt-get update && sudo apt-get install --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "tools/deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
