#!/usr/bin/env bash
# python_package_test.sh BUILD_DIR SQLITE3_SHELL
# Builds the sqlite_cdc wheel (packaging/python/build.sh, offline), installs
# it into a fresh venv of Debian's python3 with `pip install --no-index`, and
# runs python_package_check.py there: the API against a database another
# process (the sqlite3 shell) writes.
set -euo pipefail
build=$1 shell=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$("$here/../../packaging/python/build.sh" "$build" "$work/dist")
echo "wheel: $(basename "$wheel")"
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-index --disable-pip-version-check "$wheel"
"$work/venv/bin/pip" show --files sqlite-cdc | grep -E '^(Name|Version)|cdc\.so'
# From a directory outside the source tree, so only the installed package is importable.
cd "$work" && "$work/venv/bin/python" "$here/python_package_check.py" "$shell" "$work/app.db"
