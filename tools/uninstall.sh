#!/usr/bin/env bash
# uninstall.sh MANIFEST
# Removes the files of the last install from BUILD (CMake writes their paths
# to BUILD/install_manifest.txt, without DESTDIR: pass the same DESTDIR as to
# the install), then the package's own directories (.../sqlite-cdc and below)
# once they are empty. Never removes a directory the package does not own,
# such as PREFIX/lib.
set -euo pipefail
manifest=$1
if [ ! -f "$manifest" ]; then
  echo "uninstall: no $manifest (nothing was installed from this build directory)" >&2
  exit 1
fi
root=${DESTDIR:-}
while IFS= read -r f || [ -n "$f" ]; do  # the last line has no newline
  [ -n "$f" ] || continue
  f=$root$f
  if [ -e "$f" ] || [ -L "$f" ]; then
    rm -f -- "$f"
    echo "removed $f"
  fi
done <"$manifest"
# Directories inside a .../sqlite-cdc directory, deepest first.
sed -n 's|^\(.*/sqlite-cdc\)\(/.*\)\{0,1\}/[^/]*$|\1\2|p' "$manifest" | sort -u -r | while IFS= read -r d; do
  d=$root$d
  while [ -d "$d" ] && case $d in */sqlite-cdc|*/sqlite-cdc/*) true ;; *) false ;; esac; do
    rmdir -- "$d" 2>/dev/null || break
    d=${d%/*}
  done
done
