#!/usr/bin/env bash
# packaging/deb.sh BUILD_DIR OUT_DIR
# The Debian package (CPack's DEB generator, CMakeLists.txt) of BUILD_DIR's
# install rules, into OUT_DIR; CPack works in BUILD_DIR/deb-package. Prints
# the package's path.
set -euo pipefail
build=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
stage=$build/deb-package
rm -rf "$stage"
(cd "$build" && cpack -G DEB -B "$stage" >"$build/cpack.log" 2>&1) || { tail -n 30 "$build/cpack.log" >&2; exit 1; }
deb=$(ls "$stage"/*.deb)
cp "$deb" "$out/"
echo "$out/$(basename "$deb")"
