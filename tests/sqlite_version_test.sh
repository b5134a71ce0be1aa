#!/usr/bin/env bash
# sqlite_version_test.sh SHELL PYTHON3
# With -DCDC_SQLITE_AMALGAMATION, proves that processes the tests start really
# run the SQLite built from the amalgamation (ctest sets LD_LIBRARY_PATH and
# CDC_SQLITE_EXPECT_VERSION, see cmake/sqlite_amalgamation.cmake), except the
# sqlite3 shell, which only runs on Debian's own library.
set -euo pipefail
want=${CDC_SQLITE_EXPECT_VERSION:?not set: run through ctest}
shell=$(echo 'SELECT sqlite_version();' | "$1" -batch :memory:)
python=$("$2" -c 'import sqlite3; print(sqlite3.sqlite_version)')
echo "python3's sqlite3 module runs SQLite $python (expected $want); the sqlite3 shell runs $shell"
[ "$python" = "$want" ] && [ "$shell" != "$want" ]
