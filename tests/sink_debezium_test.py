#!/usr/bin/env python3
"""cdc-stream --format debezium, read by an independent consumer of the
envelope.

usage: sink_debezium_test.py CDC_STREAM EXTENSION

Two tables with rows from before capture (a rowid table with REAL, BLOB and
NULL values; a WITHOUT ROWID table with a composite key) are bootstrapped,
then changed at random (inserts, updates, key changes, deletes) by another
connection. The reader below knows only the envelope: it rebuilds each
table from op (t = truncate, c/r = insert, u = update, d = delete),
before/after and the key, and the result must equal the tables. Also
checked: source.* fields, op "r" for the snapshot rows, key = the primary
key columns of the image.
"""
import json
import os
import random
import sqlite3
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from sink_common import GUARD, make_db, source_id, tmpdir

STREAM, EXT = sys.argv[1:3]


def as_json_value(v):
    if isinstance(v, bytes):
        return {"$blob": v.hex()}
    return v


def norm(row):
    """A row image with blobs' hex in one case (the comparison is on values)."""
    return {k: ({"$blob": v["$blob"].lower()} if isinstance(v, dict) else v) for k, v in row.items()}


def rebuild(lines):
    """The reader: only what the Debezium envelope says."""
    tables = {}
    ops = []
    for line in lines:
        msg = json.loads(line)
        key, value = msg["key"], msg["value"]
        src = value["source"]
        t = tables.setdefault(src["table"], {})
        op = value["op"]
        ops.append((src["table"], op, src["snapshot"]))

        def k(image):
            return tuple(image[c] if not isinstance(image[c], dict) else json.dumps(image[c]) for c in sorted(key))
        if op == "t":
            assert value["before"] is None and value["after"] is None and key is None
            t.clear()
        elif op in ("c", "r"):
            assert value["before"] is None
            t[k(value["after"])] = norm(value["after"])
        elif op == "u":
            t.pop(k(value["before"]), None)
            t[k(value["after"])] = norm(value["after"])
        elif op == "d":
            assert value["after"] is None
            del t[k(value["before"])]
        else:
            raise AssertionError("unknown op " + op)
        if op != "t":
            image = value["after"] or value["before"]
            assert key == {c: image[c] for c in key}, (key, image)
    return tables, ops


def main():
    tmp = tmpdir("cdcsink-dbz.")
    path = os.path.join(tmp, "app.db")
    db = make_db(EXT, path, ())
    db.execute("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, score REAL, pic BLOB)")
    db.execute("CREATE TABLE pairs(a TEXT, b INTEGER, v TEXT, PRIMARY KEY(a, b)) WITHOUT ROWID")
    rnd = random.Random(14)
    for i in range(1, 31):
        db.execute("INSERT INTO people VALUES(?, ?, ?, ?)", (i, "p%d" % i, rnd.random() * 1e6, os.urandom(3)))
        db.execute("INSERT INTO pairs VALUES(?, ?, ?)", ("k%d" % (i % 4), i, None if i % 5 == 0 else "v"))
    db.execute("SELECT cdc_consumer_add('dbz')")
    for t in ("people", "pairs"):
        db.execute("SELECT cdc_setup(?)", (t,))
        db.execute("SELECT cdc_bootstrap(?)", (t,))
    for _ in range(300):
        r = rnd.random()
        i = rnd.randint(1, 60)
        if r < 0.3:
            db.execute("INSERT OR REPLACE INTO people VALUES(?, ?, ?, ?)", (i, "n%d" % i, 0.1 + 0.2, None))
        elif r < 0.55:
            db.execute("UPDATE people SET score = ?, name = NULL WHERE id = ?", (rnd.random(), i))
        elif r < 0.65:
            db.execute("DELETE FROM people WHERE id = ?", (i,))
        elif r < 0.8:
            db.execute("INSERT OR IGNORE INTO pairs VALUES(?, ?, ?)", ("k%d" % (i % 4), i, "new"))
        elif r < 0.9:
            db.execute("UPDATE OR IGNORE pairs SET b = b + 1000 WHERE b = ?", (i,))  # a key change
        else:
            db.execute("DELETE FROM pairs WHERE b = ?", (i,))
    out = subprocess.run([STREAM, "--extension", EXT, "-c", "dbz", "-b", "64", "--format", "debezium", "--once", path],
                         capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    tables, ops = rebuild(lines)

    for t in ("people", "pairs"):
        cur = db.execute('SELECT * FROM "%s"' % t)
        cols = [d[0] for d in cur.description]
        want = sorted((norm({c: as_json_value(v) for c, v in zip(cols, row)}) for row in cur), key=json.dumps)
        got = sorted(tables[t].values(), key=json.dumps)
        assert got == want, "%s rebuilt from the envelope differs from the table (%d vs %d rows)" % (
            t, len(got), len(want))
    kinds = {op for _, op, _ in ops}
    assert kinds == {"t", "r", "c", "u", "d"}, kinds
    assert all(snap == "true" for _, op, snap in ops if op in ("r", "t"))
    assert all(snap == "false" for _, op, snap in ops if op in ("c", "u", "d"))
    assert sum(1 for t, op, _ in ops if op == "r") == 60, "the 60 bootstrapped rows are op r"
    first = json.loads(lines[0])["value"]
    src = first["source"]
    version = db.execute("SELECT cdc_version()").fetchone()[0]
    assert src["connector"] == "sqlite" and src["name"] == source_id(db) and src["version"] == version, src
    assert src["db"] == "app.db" and isinstance(src["change_id"], int) and isinstance(first["ts_ms"], int)
    ids = [json.loads(l)["value"]["source"]["change_id"] for l in lines]
    assert ids == sorted(set(ids))
    print("debezium: %d events (%s) rebuild both tables exactly" %
          (len(lines), ", ".join("%s=%d" % (k, sum(1 for _, o, _ in ops if o == k)) for k in sorted(kinds))))
    print("1 passed, 0 failed")


main()
