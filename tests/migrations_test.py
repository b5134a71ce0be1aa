#!/usr/bin/env python3
"""The example migrations in sql/migrations/, applied with the real sqlite3 shell.

usage: migrations_test.py SQLITE3_SHELL EXTENSION MIGRATIONS_DIR

- 001 up and down are idempotent: each runs twice, the second run changes
  nothing (schema and consumer position compared).
- 002 up (ALTER TABLE + cdc_setup in one transaction) and 002 down
  (teardown + DROP COLUMN + setup in one transaction) run while another
  process keeps inserting into the captured table: every committed row is in
  the log exactly once, and the images follow the schema change exactly at the
  migration.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

SHELL, EXT, MIGRATIONS = sys.argv[1:4]
GUARD = 120  # seconds; only against hangs


def migrate(path, name):
    with open(os.path.join(MIGRATIONS, name), encoding="utf-8") as f:
        script = ".load %s\n.bail on\n.timeout 30000\n%s" % (EXT, f.read())
    r = subprocess.run([SHELL, "-batch", path], input=script, capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0 and "rror" not in r.stderr, (name, r.stdout, r.stderr)


def connect(path):
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(EXT)
    return db


def schema(db):
    return db.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()


def status(db):
    return json.loads(db.execute("SELECT cdc_status()").fetchone()[0])


def drain(db, name):
    events = []
    while True:
        batch = json.loads(db.execute("SELECT cdc_poll(?, 1000)", (name,)).fetchone()[0])
        if not batch:
            return events
        events += batch
        db.execute("SELECT cdc_ack(?, ?)", (name, batch[-1]["id"]))


WRITER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
i = int(sys.argv[2])
while not os.path.exists(sys.argv[3]):
    db.execute("INSERT INTO orders(id, customer, total) VALUES(?, 1, ?)", (i, i / 4))
    print(i, flush=True)  # committed
    i += 1
"""


def migrate_under_writes(path, name, first):
    """Runs migration `name` while a writer process commits rows, from before
    the migration starts until after it ended; returns the committed ids."""
    stop = path + ".stop"
    w = subprocess.Popen([sys.executable, "-c", WRITER, path, str(first), stop],
                         stdout=subprocess.PIPE, text=True)
    ids = [int(w.stdout.readline()) for _ in range(50)]
    migrate(path, name)
    # Lines already in the pipe were committed before the migration; go on
    # until the writer has committed 50 rows after it.
    done = sqlite3.connect(path, timeout=30).execute("SELECT max(id) FROM orders").fetchone()[0]
    while not ids or ids[-1] < done + 50:
        ids.append(int(w.stdout.readline()))
    open(stop, "w").close()
    ids += [int(l) for l in w.stdout]
    assert w.wait(GUARD) == 0
    os.unlink(stop)
    assert ids == list(range(first, first + len(ids)))
    return ids


def main():
    tmp = tempfile.mkdtemp(prefix="cdcmig.")
    path = os.path.join(tmp, "app.db")
    db = connect(path)
    db.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER, total REAL);
    """)
    before_capture = schema(db)

    # 001 up, twice: the same schema, the consumer keeps its position.
    migrate(path, "001_enable_capture.up.sql")
    db.execute("INSERT INTO customers VALUES(1, 'ann')")
    assert [e["after"] for e in drain(db, "search-index")] == [{"id": 1, "name": "ann"}]
    once, pos = schema(db), status(db)["consumers"]
    migrate(path, "001_enable_capture.up.sql")
    assert schema(db) == once and status(db)["consumers"][0]["position"] == pos[0]["position"]
    assert sorted(t["name"] for t in status(db)["tables"]) == ["customers", "orders"]

    # 002 up under concurrent writes: nothing lost, `note` from the migration on.
    ids = migrate_under_writes(path, "002_add_order_note.up.sql", 1)
    events = drain(db, "search-index")
    assert [e["after"]["id"] for e in events] == ids, "lost or repeated changes"
    keys = [sorted(e["after"]) for e in events]
    cut = keys.index(["customer", "id", "note", "total"])
    assert keys[:cut] == [["customer", "id", "total"]] * cut and cut > 0
    assert all(k == ["customer", "id", "note", "total"] for k in keys[cut:])
    assert not any(t["drift"] for t in status(db)["tables"])

    # 002 down under concurrent writes: DROP COLUMN works, nothing lost.
    ids2 = migrate_under_writes(path, "002_add_order_note.down.sql", ids[-1] + 1)
    events = drain(db, "search-index")
    assert [e["after"]["id"] for e in events] == ids2, "lost or repeated changes"
    assert "note" in events[0]["after"] and "note" not in events[-1]["after"]
    assert "note" not in db.execute("SELECT sql FROM sqlite_schema WHERE name = 'orders'").fetchone()[0]

    # 001 down, twice: no capture triggers, no consumer; the second run is a no-op.
    migrate(path, "001_enable_capture.down.sql")
    down = schema(db)
    assert not [r for r in down if r[0] == "trigger"]
    assert status(db)["consumers"] == [] and status(db)["tables"] == []
    migrate(path, "001_enable_capture.down.sql")
    assert schema(db) == down
    # ... and capture can be turned on again; cdc_teardown() then leaves the
    # schema exactly as before the first migration.
    migrate(path, "001_enable_capture.up.sql")
    db.execute("INSERT INTO customers VALUES(2, 'bob')")
    # (a consumer added again starts at the oldest change the log retained)
    assert drain(db, "search-index")[-1]["after"] == {"id": 2, "name": "bob"}
    db.execute("SELECT cdc_teardown()")
    assert schema(db) == before_capture
    db.close()
    shutil.rmtree(tmp)
    print("migrations: 001 up/down twice each, 002 up/down under %d concurrent inserts, nothing lost"
          % (len(ids) + len(ids2)))
    print("1 passed, 0 failed")


main()
