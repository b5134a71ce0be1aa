#!/usr/bin/env bash
# install_test.sh BUILD_DIR SQLITE3_SHELL
# `make install` for real, into a temporary DESTDIR with a non-default
# prefix, then uses only what was installed: pkg-config finds the extension,
# the sqlite3 shell loads it from there, the installed cdc-stream finds it by
# itself, and a C program compiles against the installed header.
set -euo pipefail
build=$1 shell=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=/opt/sqlite-cdc-test
DESTDIR=$work/stage cmake --install "$build" --prefix "$prefix" >"$work/install.log"
root=$work/stage$prefix
find "$root" -type f | sed "s|^$root/||" | sort
test -f "$root/lib/sqlite-cdc/cdc.so"
test -x "$root/bin/cdc-stream"

export PKG_CONFIG_PATH=$root/lib/pkgconfig
ext=$(pkg-config --variable=extension sqlite-cdc)
echo "pkg-config: sqlite-cdc $(pkg-config --modversion sqlite-cdc), extension $ext"
case $ext in "$root"/*) ;; *) echo "extension outside the install root: $ext"; exit 1 ;; esac

db=$work/app.db
out=$(printf '.load %s\nCREATE TABLE t(x);\nSELECT cdc_setup('"'t'"');\nINSERT INTO t VALUES(42);\nSELECT cdc_version();\n' "$ext" |
      "$shell" -batch "$db")
echo "$out"
[ "$(echo "$out" | tail -n 1)" = "$(pkg-config --modversion sqlite-cdc)" ]

# The installed cdc-stream, without --extension or CDC_EXTENSION, loads the
# installed extension (found relative to itself).
line=$(env -u CDC_EXTENSION "$root/bin/cdc-stream" --once "$db")
echo "$line"
case $line in *'"op":"INSERT"'*'"after":{"x":42}'*) ;; *) echo "unexpected: $line"; exit 1 ;; esac

if [ -f "$root/include/sqlite-cdc/cdc.h" ]; then
  printf '#include <cdc.h>\nint main(void) { return 0; }\n' >"$work/use.c"
  cc $(pkg-config --cflags sqlite-cdc) -c "$work/use.c" -o "$work/use.o"
  echo "compiled against the installed cdc.h"
fi
echo "install: ok"
