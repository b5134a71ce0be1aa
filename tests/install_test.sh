#!/usr/bin/env bash
# install_test.sh BUILD_DIR SQLITE3_SHELL
# `make install` for real, into a temporary DESTDIR with a non-default
# prefix, then uses only what was installed: pkg-config finds the extension,
# the sqlite3 shell loads it from there, the installed cdc-stream finds it by
# itself, and a C program compiles against the installed header.
set -euo pipefail
build=$1 shell=$2
# Sanitizer builds: the runtime that uninstrumented hosts (the shell, the C
# listener) need to load the instrumented extension (see tests/CMakeLists.txt).
host_preload=${CDC_HOST_PRELOAD:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=/opt/sqlite-cdc-test
DESTDIR=$work/stage cmake --install "$build" --prefix "$prefix" >"$work/install.log"
root=$work/stage$prefix
find "$root" -type f | sed "s|^$root/||" | sort
test -f "$root/lib/sqlite-cdc/cdc.so"
test -x "$root/bin/cdc-stream"
test -f "$root/share/sqlite-cdc/migrations/001_enable_capture.up.sql"

export PKG_CONFIG_PATH=$root/lib/pkgconfig
ext=$(pkg-config --variable=extension sqlite-cdc)
echo "pkg-config: sqlite-cdc $(pkg-config --modversion sqlite-cdc), extension $ext"
case $ext in "$root"/*) ;; *) echo "extension outside the install root: $ext"; exit 1 ;; esac

db=$work/app.db
out=$(printf '.load %s\nCREATE TABLE t(x);\nSELECT cdc_setup('"'t'"');\nINSERT INTO t VALUES(42);\nSELECT cdc_version();\n' "$ext" |
      LD_PRELOAD=$host_preload "$shell" -batch "$db")
echo "$out"
[ "$(echo "$out" | tail -n 1)" = "$(pkg-config --modversion sqlite-cdc)" ]

# The installed cdc-stream, without --extension or CDC_EXTENSION, loads the
# installed extension (found relative to itself).
line=$(env -u CDC_EXTENSION "$root/bin/cdc-stream" --once "$db")
echo "$line"
case $line in *'"op":"INSERT"'*'"after":{"x":42}'*) ;; *) echo "unexpected: $line"; exit 1 ;; esac

# A C listener built against the installed header, loading the installed
# extension (the "C callback" recipe of docs/recipes.md).
test -f "$root/include/sqlite-cdc/cdc.h"
cat >"$work/listen.c" <<'C'
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cdc.h"

static _Atomic int found43 = 0;  /* set on the listener thread */
static int on_changes(void *user, const cdc_change *c, int n) {
  (void)user;
  for (int i = 0; i < n; i++) printf("%s %s %s\n", c[i].op, c[i].table, c[i].after ? c[i].after : "-");
  fflush(stdout);
  for (int i = 0; i < n; i++) found43 |= c[i].after && strcmp(c[i].after, "{\"x\":43}") == 0;
  return 0;
}

int main(int argc, char **argv) {
  sqlite3 *db;
  char *err = NULL;
  if (argc != 3 || sqlite3_open(argv[1], &db) != SQLITE_OK) return 2;
  sqlite3_busy_timeout(db, 10000);  /* the listener's own connection acks meanwhile */
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, argv[2], NULL, &err) != SQLITE_OK) { fprintf(stderr, "%s\n", err); return 1; }
  if (sqlite3_exec(db, "SELECT cdc_consumer_add('c_listener')", NULL, NULL, &err) != SQLITE_OK ||
      cdc_listen(db, "c_listener", on_changes, NULL, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  /* A commit after the listener started reaches the callback. */
  if (sqlite3_exec(db, "INSERT INTO t VALUES(43)", NULL, NULL, &err) != SQLITE_OK) { fprintf(stderr, "%s\n", err); return 1; }
  for (int i = 0; i < 6000 && !found43; i++) usleep(10000);  /* at most 60 s */
  if (cdc_unlisten(db, "c_listener", &err) != SQLITE_OK) { fprintf(stderr, "%s\n", err); return 1; }
  sqlite3_close(db);
  return found43 ? 0 : 1;
}
C
cc -Wall -Wextra -Werror $(pkg-config --cflags sqlite-cdc) "$work/listen.c" -o "$work/listen" -lsqlite3
LD_PRELOAD=$host_preload "$work/listen" "$db" "$ext" >"$work/listen.out"
cat "$work/listen.out"
grep -q '^INSERT t {"x":43}$' "$work/listen.out"

# `make uninstall` (tools/uninstall.sh) removes every installed file and the
# package's own directories, and nothing else.
mkdir -p "$root/lib/other"
touch "$root/lib/other/keep"
DESTDIR=$work/stage "$(dirname "$0")/../tools/uninstall.sh" "$build/install_manifest.txt" >/dev/null
left=$(find "$root" -type f | sed "s|^$root/||")
[ "$left" = "lib/other/keep" ] || { echo "left after uninstall: $left"; exit 1; }
owned=$(find "$root" -mindepth 1 \( -name sqlite-cdc -o -name 'sqlite-cdc.*' \))
[ -z "$owned" ] || { echo "left after uninstall: $owned"; exit 1; }
[ -d "$root/lib/pkgconfig" ] || { echo "uninstall removed $root/lib/pkgconfig"; exit 1; }
echo "install: ok"
