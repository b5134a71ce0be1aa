#!/usr/bin/env bash
# make demo: capture and delivery on a demo database, through the real
# sqlite3 shell. Usage: sql/demo.sh PATH/TO/cdc
set -euo pipefail
ext=${1:-build/cdc}
here=$(cd "$(dirname "$0")" && pwd)
ext=$(cd "$(dirname "$ext")" && pwd)/$(basename "$ext")
work=${DEMO_DIR:-$(mktemp -d)}
db=$work/demo.db
rm -f "$db" "$db-wal" "$db-shm"
echo "== demo database: $db"
sqlite3 -batch -echo "$db" <<SQL
.load $ext
$(sed "s|\$DEMO_DB|$db|g" "$here/demo.sql")
SQL
