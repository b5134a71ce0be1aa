#!/usr/bin/env bash
# packaging/python/build.sh BUILD_DIR OUT_DIR
# Builds the sqlite_cdc wheel from BUILD_DIR/cdc.so into OUT_DIR, offline,
# with Debian's python3-build, python3-setuptools and python3-wheel (no
# isolated environment, nothing downloaded). The package is staged in
# BUILD_DIR/python-package so the source tree stays clean. Prints the wheel's path.
set -euo pipefail
build=$(cd "$1" && pwd) out=$2
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^Version: //p' "$build/sqlite-cdc.pc")
[ -f "$build/cdc.so" ] && [ -n "$version" ] || { echo "no cdc.so / sqlite-cdc.pc in $build: run make first" >&2; exit 1; }
stage=$build/python-package
rm -rf "$stage" && mkdir -p "$stage" "$out"
cp -r "$here/src" "$here/setup.py" "$here/README.md" "$stage/"
sed "s/@VERSION@/$version/" "$here/pyproject.toml" >"$stage/pyproject.toml"
cp "$build/cdc.so" "$stage/src/sqlite_cdc/cdc.so"
strip --strip-debug "$stage/src/sqlite_cdc/cdc.so"
# Debian's python3 (a python3 earlier on PATH may lack the build module).
/usr/bin/python3 -m build --wheel --no-isolation --outdir "$stage/dist" "$stage" >"$stage/build.log" 2>&1 ||
  { tail -n 30 "$stage/build.log" >&2; exit 1; }
wheel=$(ls "$stage"/dist/*.whl)
cp "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
