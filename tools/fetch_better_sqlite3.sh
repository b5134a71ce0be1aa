#!/usr/bin/env bash
# fetch_better_sqlite3.sh DIR [PACKAGE]
# Installs better-sqlite3 (default better-sqlite3@12: @13 needs Node 22) into
# DIR/node_modules from the npm registry and builds its native module from
# source on this machine: no prebuilt binary is downloaded (install scripts
# are skipped and node-gyp, bundled with npm, runs against the local Node
# headers). Quick builds (-O1). A second run with the module present does
# nothing. Exits 77 when Node.js/npm are missing or older than 20.
set -euo pipefail
dir=$1 pkg=${2:-better-sqlite3@12}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node/npm not installed"; exit 77
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then echo "Node.js $(node --version) is older than 20"; exit 77; fi
mod=$dir/node_modules/better-sqlite3
# knex (pure JavaScript) drives the ORM migration test on top of it.
if [ ! -f "$dir/node_modules/knex/package.json" ]; then
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
  (cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts knex@3)
fi
if [ -f "$mod/build/Release/better_sqlite3.node" ]; then
  node -p "'better-sqlite3 ' + require('$mod/package.json').version + ' (built)'"
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
(cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts "$pkg")
# The local headers: node-gyp's --nodedir wants the prefix holding include/node.
nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
[ -f "$nodedir/include/node/node_api.h" ] || nodedir=/usr
gyp=$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js
(cd "$mod" && CFLAGS="-O1 -g0" CXXFLAGS="-O1 -g0" JOBS=${JOBS:-2} \
   node "$gyp" rebuild --release --nodedir="$nodedir" >build.log 2>&1) ||
  { tail -n 30 "$mod/build.log"; exit 1; }
node -p "'better-sqlite3 ' + require('$mod/package.json').version + ' built from source, SQLite ' + new (require('$mod'))(':memory:').prepare('SELECT sqlite_version()').pluck().get()"
