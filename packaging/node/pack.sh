#!/usr/bin/env bash
# packaging/node/pack.sh BUILD_DIR OUT_DIR
# The npm package (`npm pack`, offline) from BUILD_DIR/cdc.so into OUT_DIR,
# staged in BUILD_DIR/npm-package so the source tree stays clean. Prints the
# tarball's path.
set -euo pipefail
build=$(cd "$1" && pwd) out=$2
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^Version: //p' "$build/sqlite-cdc.pc")
[ -f "$build/cdc.so" ] && [ -n "$version" ] || { echo "no cdc.so / sqlite-cdc.pc in $build: run make first" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is not installed (tools/deps.sh npm)" >&2; exit 1; }
cpu=$(node -p process.arch)
stage=$build/npm-package
rm -rf "$stage" && mkdir -p "$stage" "$out"
cp "$here/index.js" "$here/index.mjs" "$here/index.d.ts" "$here/README.md" "$stage/"
sed -e "s/@VERSION@/$version/" -e "s/@CPU@/$cpu/" "$here/package.json" >"$stage/package.json"
cp "$build/cdc.so" "$stage/cdc.so"
strip --strip-debug "$stage/cdc.so"
out=$(mkdir -p "$out" && cd "$out" && pwd)
tarball=$(cd "$stage" && npm pack --silent --offline --pack-destination "$out")
echo "$out/$tarball"
