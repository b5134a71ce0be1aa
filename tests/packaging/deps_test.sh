#!/usr/bin/env bash
# deps_test.sh — tools/deps.sh: silent when the packages are all there (as
# they are wherever this suite runs), a usage error for an unknown set, and
# for a user who is not root with packages missing (simulated by a
# dpkg-query that knows none), the list, the apt-get line and exit 1 without
# touching apt.
set -euo pipefail
deps=$(cd "$(dirname "$0")/../.." && pwd)/tools/deps.sh
out=$("$deps" demo test 2>&1)
[ -z "$out" ] || { echo "not silent with everything installed: $out"; exit 1; }
if "$deps" nonsense 2>/dev/null; then echo "an unknown set was accepted"; exit 1; fi

work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\nexit 1\n' >"$work/dpkg-query"
printf '#!/bin/sh\necho apt-get must not run >&2; exit 3\n' >"$work/apt-get"
cp "$deps" "$work/deps.sh"  # readable by the other user wherever the clone is
chmod 755 "$work/dpkg-query" "$work/apt-get" "$work/deps.sh"
as_user=()
[ "$(id -u)" -ne 0 ] || as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
set +e
msg=$("${as_user[@]}" env PATH="$work:$PATH" bash "$work/deps.sh" demo 2>&1)
rc=$?
set -e
echo "$msg"
[ $rc = 1 ] || { echo "exit $rc, expected 1"; exit 1; }
grep -q 'missing Debian packages: g++ make cmake pkg-config libsqlite3-dev sqlite3' <<<"$msg"
grep -q 'sudo apt-get update && sudo apt-get install' <<<"$msg"
echo "deps: ok"
