#!/usr/bin/env bash
# npm_package_test.sh BUILD_DIR SQLITE3_SHELL
# Packs the npm package (packaging/node/pack.sh), installs the tarball offline
# into a temporary project beside the better-sqlite3 that `make test-node`
# built in BUILD_DIR/node (no second fetch), and consumes changes from CommonJS
# and from an ES module (npm_package_check.cjs / .mjs) that the sqlite3 shell,
# another process, wrote. Exits 77 (skipped) without Node.js or that build.
set -euo pipefail
build=$(cd "$1" && pwd) shell=$2
here=$(cd "$(dirname "$0")" && pwd)
bsq=$build/node/node_modules/better-sqlite3
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "no node/npm: skipped"; exit 77; fi
if [ ! -f "$bsq/build/Release/better_sqlite3.node" ]; then
  echo "better-sqlite3 is not built in $build/node (make test-node builds it): skipped"; exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$("$here/../../packaging/node/pack.sh" "$build" "$work/dist")
echo "tarball: $(basename "$tarball"): $(tar tzf "$tarball" | sed 's|^package/||' | sort | tr '\n' ' ')"
mkdir "$work/app"
cd "$work/app"
echo '{"name": "app", "private": true}' >package.json
npm install --silent --offline --no-audit --no-fund "$tarball"
test -f node_modules/sqlite-cdc/cdc.so  # installed, not linked
# better-sqlite3 as the project's own dependency would be (a link to the built copy).
ln -s "$bsq" node_modules/better-sqlite3
cp "$here/npm_package_check.cjs" "$here/npm_package_check.mjs" .
"$shell" -batch app.db "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"
node npm_package_check.cjs "$shell" app.db
node npm_package_check.mjs
echo "npm package: ok"
