#!/usr/bin/env bash
# run_sql_test.sh SHELL EXTENSION FILE.sql
# Runs FILE.sql through the real sqlite3 shell, in a fresh directory with the
# extension loaded, and compares stdout+stderr with FILE.expected.
set -euo pipefail
shell=$1 ext=$2 sql=$3
expected=${sql%.sql}.expected
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
{ printf '.load %s\n' "$ext"; cat "$sql"; } | stdbuf -o0 "$shell" -batch test.db >actual 2>&1 || true
if ! diff -u "$expected" actual; then
  echo "FAIL: $sql differs from $expected" >&2
  exit 1
fi
