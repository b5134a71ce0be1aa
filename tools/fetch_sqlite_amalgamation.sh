#!/usr/bin/env bash
# fetch_sqlite_amalgamation.sh DIR [PACKAGE]
# Puts a recent SQLite amalgamation (sqlite3.c, sqlite3.h, sqlite3ext.h) in
# DIR/sqlite3, taken from the npm package that ships it (default
# better-sqlite3@12, whose deps/sqlite3/ holds the amalgamation) through the
# ordinary npm client. The package tarball is kept in DIR, so a second run
# needs no network. Prints the SQLite version.
set -euo pipefail
dir=$1 pkg=${2:-better-sqlite3@12}
mkdir -p "$dir"
cd "$dir"
tgz=$(ls better-sqlite3-*.tgz 2>/dev/null | tail -n 1 || true)
if [ -z "$tgz" ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch $pkg (Debian: apt-get install npm)" >&2; exit 1; }
  tgz=$(npm pack --silent "$pkg" | tail -n 1)
fi
if [ "$(cat sqlite3/FROM 2>/dev/null)" != "$tgz" ]; then
  rm -rf sqlite3 package
  tar xzf "$tgz" package/deps/sqlite3
  mv package/deps/sqlite3 sqlite3
  rm -rf package
  echo "$tgz" > sqlite3/FROM
fi
sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' sqlite3/sqlite3.h
