#!/usr/bin/env bash
# deb_package_test.sh BUILD_DIR
# Builds the Debian package (packaging/deb.sh), installs it into this machine
# with `apt-get install ./sqlite-cdc_….deb`, builds and runs the C example
# of docs/c-api.md against the installed files only (header and extension path from
# pkg-config), then removes it again (dpkg --purge, a fraction of
# apt-get's time) and checks nothing is left.
# It changes the machine, so: root only, never when a sqlite-cdc package is
# installed already (that one is not ours to replace), one run at a time, and
# CDC_SKIP_DEB_TEST=1 turns it off. Exits 77 (skipped) in those cases.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../..
skip() { echo "package.deb skipped: $*"; exit 77; }
[ "${CDC_SKIP_DEB_TEST:-0}" = 1 ] && skip "CDC_SKIP_DEB_TEST=1"
[ "$(id -u)" -eq 0 ] || skip "it installs a package into this machine, so it runs as root only"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || skip "not a Debian system"
exec 9>/var/lock/sqlite-cdc-deb-test.lock
flock -w 600 9 || { echo "another package.deb run holds /var/lock/sqlite-cdc-deb-test.lock"; exit 1; }
if dpkg-query -W -f='${Status}' sqlite-cdc 2>/dev/null | grep -q 'install ok installed'; then
  skip "a sqlite-cdc package is installed here already; not replacing it"
fi

work=$(mktemp -d)
installed=0
# dpkg --purge, or apt-get (which waits for the lock) when apt is busy elsewhere.
remove() {
  dpkg --purge sqlite-cdc >"$work/remove.log" 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -qq -o DPkg::Lock::Timeout=300 sqlite-cdc >>"$work/remove.log" 2>&1
}
cleanup() {
  if [ $installed = 1 ]; then
    remove || { echo "removing sqlite-cdc failed:"; cat "$work/remove.log"; }
  fi
  rm -rf "$work"
}
trap cleanup EXIT
SECONDS=0
deb=$("$src/packaging/deb.sh" "$build" "$work")
echo "package: $(basename "$deb") ($(dpkg-deb -f "$deb" Depends))"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
  "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
dpkg -L sqlite-cdc | grep -E '/(cdc\.so|cdc-stream|cdc\.h|sqlite-cdc\.pc)$'
echo "built and installed in ${SECONDS} s"

# The C example of docs/c-api.md (the first ```c block that calls cdc_listen,
# in README.md or docs/), loading the installed extension instead of ./build/cdc.
ext=$(pkg-config --variable=extension sqlite-cdc)
[ -f "$ext.so" ] || { echo "pkg-config's extension $ext.so does not exist"; exit 1; }
for md in "$src/README.md" "$src"/docs/*.md; do
  [ -f "$md" ] || continue
  awk '/^```c$/ { inblock = 1; block = ""; next }
       inblock && /^```$/ { inblock = 0; if (block ~ /cdc_listen\(/) { printf "%s", block; exit } ; next }
       inblock { block = block $0 "\n" }' "$md" >"$work/app.c"
  [ -s "$work/app.c" ] && break
done
[ -s "$work/app.c" ] || { echo "no C example calling cdc_listen in README.md or docs/"; exit 1; }
grep -q '"./build/cdc"' "$work/app.c" || { echo "the C example no longer loads \"./build/cdc\": update this test"; exit 1; }
sed -i "s|\"./build/cdc\"|\"$ext\"|" "$work/app.c"
cd "$work"
# As docs/recipes.md ("A C callback") says to build it against an installed copy.
cc app.c $(pkg-config --cflags sqlite-cdc sqlite3) -lsqlite3 -o app

# A database with a captured table and a row; the example prints every change
# as it is committed (by the stock shell, another process) until its stdin closes.
sqlite3 -batch app.db ".load $ext" "CREATE TABLE t(x)" "SELECT cdc_setup('t')" "INSERT INTO t VALUES (1)" >/dev/null
mkfifo stdin
stdbuf -oL ./app <stdin >app.out 2>app.err &
app=$!
exec 8>stdin  # held open: the example waits in getchar()
# inserts: waits (at most 30 s) until the example printed N inserts or ended.
inserts() {
  for _ in $(seq 300); do
    [ "$(grep -c ' INSERT t ' app.out)" -ge "$1" ] && return
    kill -0 $app 2>/dev/null || return 0
    sleep 0.1
  done
}
# The example sets no busy timeout: it writes only once it is listening (it
# printed the row that was there), as its "changes are printed as other
# processes commit them" intends.
inserts 1
sqlite3 -batch app.db ".timeout 10000" "INSERT INTO t VALUES (2)" "INSERT INTO t VALUES (3)"
inserts 3
exec 8>&-  # getchar() returns: the example closes its connection and exits
wait $app || { echo "the example failed:"; cat app.err; exit 1; }
cat app.out
[ "$(grep -c ' INSERT t ' app.out)" = 3 ] && grep -q '^3 INSERT t {"x":3}$' app.out ||
  { echo "expected the three inserts"; exit 1; }

# Removed again: no file of it left.
cd /
files=$(dpkg -L sqlite-cdc | grep -E '\.(so|h|pc)$|/cdc-stream$')
installed=0
remove || { cat "$work/remove.log"; exit 1; }
for f in $files; do [ ! -e "$f" ] || { echo "left after removal: $f"; exit 1; }; done
echo "deb package: installed, example ran against it, removed"
