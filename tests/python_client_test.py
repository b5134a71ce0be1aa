#!/usr/bin/env python3
"""sqlite-cdc from Python's standard sqlite3 module (Debian's /usr/bin/python3).

usage: python_client_test.py EXTENSION

What a Python application does: load the extension into a connection, capture
a table, write from another connection, consume with cdc_poll / cdc_ack (and
cdc_wait, and cdc_serve with a function registered by create_function), on
real database files.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import unittest

EXT = sys.argv.pop(1)


def connect(path, load=True):
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    if load:
        db.enable_load_extension(True)
        db.load_extension(EXT)
        db.enable_load_extension(False)
    return db


class PythonClient(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cdcpy.")
        self.path = os.path.join(self.dir, "app.db")
        self.db = connect(self.path)
        self.db.executescript("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB);
            SELECT cdc_setup('items');
            SELECT cdc_consumer_add('py');
        """)

    def tearDown(self):
        self.db.close()
        shutil.rmtree(self.dir)

    def poll(self, limit=100):
        return json.loads(self.db.execute("SELECT cdc_poll('py', ?)", (limit,)).fetchone()[0])

    def test_poll_ack_round_trip(self):
        # The writer is another connection that never loaded the extension.
        w = connect(self.path, load=False)
        w.execute("INSERT INTO items VALUES(1, 'pen', 0.1 + 0.2, x'00ff10')")
        w.execute("INSERT INTO items VALUES(2, 'inf', 9e999, NULL)")
        with w:  # one transaction
            w.execute("BEGIN")
            w.execute("UPDATE items SET price = -9e999, name = 'ink' WHERE id = 2")
            w.execute("DELETE FROM items WHERE id = 1")
        w.execute("BEGIN")
        w.execute("INSERT INTO items VALUES(3, 'rolled back', 1, NULL)")
        w.execute("ROLLBACK")
        w.close()

        events = self.poll()
        self.assertEqual([(e["op"], e["table"]) for e in events],
                         [("INSERT", "items"), ("INSERT", "items"), ("UPDATE", "items"), ("DELETE", "items")])
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        first = events[0]["after"]
        self.assertEqual(first["price"], 0.1 + 0.2)  # the identical double
        self.assertEqual(bytes.fromhex(first["data"]["$blob"]), b"\x00\xff\x10")
        self.assertEqual(events[1]["after"]["price"], float("inf"))  # 9e999 parses as +Inf
        self.assertEqual(events[2]["before"]["name"], "inf")
        self.assertEqual(events[2]["after"], {"id": 2, "name": "ink", "price": float("-inf"), "data": None})
        self.assertIsNone(events[3]["after"])
        self.assertIsInstance(events[0]["ts"], int)

        # Ack the first two: only the rest stays pending.
        self.assertEqual(self.db.execute("SELECT cdc_ack('py', ?)", (ids[1],)).fetchone()[0], ids[1])
        self.assertEqual([e["id"] for e in self.poll()], ids[2:])
        # A restart (new connection) resumes after the last ack.
        self.db.close()
        self.db = connect(self.path)
        self.assertEqual([e["id"] for e in self.poll(limit=1)], ids[2:3])
        self.db.execute("SELECT cdc_ack('py', ?)", (ids[-1],))
        self.assertEqual(self.poll(), [])
        # The same changes through the table-valued function.
        self.db.execute("INSERT INTO items(name) VALUES('vtab')")
        rows = self.db.execute("SELECT op, tbl, json_extract(after, '$.name') FROM cdc_changes('py')").fetchall()
        self.assertEqual(rows, [("INSERT", "items", "vtab")])

    def test_errors_are_python_exceptions(self):
        with self.assertRaisesRegex(sqlite3.OperationalError, "cdc_poll"):
            self.db.execute("SELECT cdc_poll('nobody')").fetchone()
        with self.assertRaisesRegex(sqlite3.OperationalError, "no such table"):
            self.db.execute("SELECT cdc_setup('missing')").fetchone()
        self.assertEqual(self.db.execute("SELECT 1").fetchone()[0], 1)  # still usable

    # docs/limits.md, pinned: what plain triggers see and what they cannot.
    def test_limits_of_trigger_capture(self):
        def count():
            return self.db.execute("SELECT count(*) FROM cdc_changes('py')").fetchone()[0]

        self.db.execute("INSERT INTO items(id, data) VALUES(1, zeroblob(4))")
        n = count()
        # Incremental BLOB I/O (sqlite3_blob_write) fires no trigger.
        with self.db.blobopen("items", "data", 1) as blob:
            blob.write(b"ABCD")
        self.assertEqual(count(), n)
        self.assertEqual(self.db.execute("SELECT data FROM items").fetchone()[0], b"ABCD")
        # A write through ATTACH from another connection is captured (the
        # triggers live in the database file) ...
        other = sqlite3.connect(os.path.join(self.dir, "other.db"), isolation_level=None)
        other.execute("ATTACH ? AS app", (self.path,))
        other.execute("INSERT INTO app.items(id, name) VALUES(2, 'via attach')")
        other.close()
        self.assertEqual(count(), n + 1)
        # ... but only tables of the main database can be captured.
        self.db.execute("ATTACH ? AS aux", (os.path.join(self.dir, "aux.db"),))
        self.db.execute("CREATE TABLE aux.t(x)")
        with self.assertRaisesRegex(sqlite3.OperationalError, "only tables of the main database"):
            self.db.execute("SELECT cdc_setup('t')").fetchone()
        self.db.execute("DETACH aux")
        # DELETE without WHERE: one event per row (no truncate shortcut).
        self.db.execute("DELETE FROM items")
        self.assertEqual(self.db.execute(
            "SELECT count(*) FROM cdc_changes('py') WHERE op = 'DELETE'").fetchone()[0], 2)
        # VACUUM keeps change ids (the log's INTEGER PRIMARY KEY) and logs nothing.
        ids = self.db.execute("SELECT group_concat(id) FROM cdc_changes('py')").fetchone()[0]
        self.db.execute("VACUUM")
        self.assertEqual(self.db.execute("SELECT group_concat(id) FROM cdc_changes('py')").fetchone()[0], ids)
        # Changes made while the triggers are dropped are not captured.
        self.db.execute("SELECT cdc_teardown('items')")
        self.db.execute("INSERT INTO items(id) VALUES(3)")
        self.db.execute("SELECT cdc_setup('items')")
        self.assertEqual(self.db.execute(
            "SELECT count(*) FROM cdc_changes('py') WHERE after ->> '$.id' = 3").fetchone()[0], 0)
        # RENAME: refresh capture in the same transaction and events carry
        # the new name from then on.
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ALTER TABLE items RENAME TO products")
        self.db.execute("SELECT cdc_setup('products')")
        self.db.execute("COMMIT")
        self.db.execute("INSERT INTO products(id) VALUES(4)")
        self.assertEqual(self.db.execute(
            "SELECT tbl FROM cdc_changes('py') ORDER BY id DESC LIMIT 1").fetchone()[0], "products")
        self.assertEqual(self.db.execute(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'products'").fetchone()[0], 3)

    def test_wait_wakes_on_a_commit_from_another_process(self):
        self.assertEqual(self.db.execute("SELECT cdc_wait('py', 10)").fetchone()[0], 0)  # timeout
        # The writer is another process; cdc_wait blocks until its commit.
        writer = subprocess.Popen([sys.executable, "-c", """
import sqlite3, sys, time
time.sleep(0.2)
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("INSERT INTO items(name) VALUES('late')")
""", self.path])
        pending = self.db.execute("SELECT cdc_wait('py', 60000)").fetchone()[0]
        writer.wait()
        self.assertEqual(pending, 1)
        self.assertEqual([e["after"]["name"] for e in self.poll()], ["late"])

    def serve(self, fn, options=None):
        """The recipe of docs/recipes.md: cdc_serve on a connection and thread of its own."""
        box = {}

        def run():
            own = connect(self.path)
            own.create_function("on_batch", 1, fn)
            args = ("py", "on_batch") + ((options,) if options else ())
            box["n"] = own.execute("SELECT cdc_serve(%s)" % ", ".join("?" * len(args)), args).fetchone()[0]
            own.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, box

    def test_serve_calls_a_python_function(self):
        got, done = [], threading.Event()

        def on_batch(batch_json):
            got.extend(json.loads(batch_json))
            if len(got) >= 3:
                done.set()
            return 1  # truthy: handled, ack the batch

        t, box = self.serve(on_batch)
        w = connect(self.path, load=False)
        for name in ("a", "b", "c"):
            w.execute("INSERT INTO items(name) VALUES(?)", (name,))
        w.close()
        self.assertTrue(done.wait(60), "listener delivered %r" % got)
        self.assertEqual(self.db.execute("SELECT cdc_unlisten('py')").fetchone()[0], 1)
        t.join(60)
        self.assertEqual(box["n"], 3)  # changes delivered
        self.assertEqual([e["after"]["name"] for e in got], ["a", "b", "c"])
        self.assertEqual(self.poll(), [])  # acked after the callback returned

    def test_interrupt_ends_wait_and_serve(self):
        # Connection.interrupt() from another thread (sqlite3_interrupt) cuts
        # a blocking call short with OperationalError, and the connection
        # keeps working.
        def interrupted(conn, sql):
            """Runs sql on conn in a thread, interrupts it once it blocks; what it raised."""
            box = {}

            def run():
                try:
                    box["result"] = conn.execute(sql).fetchone()[0]
                except sqlite3.OperationalError as e:
                    box["error"] = str(e)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(0.3)
            self.assertTrue(t.is_alive(), box)
            conn.interrupt()
            t.join(60)
            self.assertFalse(t.is_alive(), "%s was not cut short by interrupt()" % sql)
            return box

        waiter = connect(self.path)
        self.assertEqual(interrupted(waiter, "SELECT cdc_wait('py', 90000)"), {"error": "cdc_wait: interrupted"})
        self.assertEqual(waiter.execute("SELECT cdc_wait('py', 0)").fetchone()[0], 0)
        waiter.close()

        own = connect(self.path)
        got = []
        own.create_function("on_batch", 1, lambda batch: got.append(batch) or 1)
        self.assertEqual(interrupted(own, "SELECT cdc_serve('py', 'on_batch')"), {"error": "cdc_serve: interrupted"})
        status = json.loads(self.db.execute("SELECT cdc_status()").fetchone()[0])
        self.assertEqual(status["listeners"], [])
        own.close()

    def test_serve_retries_a_batch_the_function_refuses(self):
        calls, done = [], threading.Event()

        def flaky(batch_json):
            calls.append([e["id"] for e in json.loads(batch_json)])
            if len(calls) == 1:
                raise ValueError("downstream unavailable")  # an error: retry the same batch
            done.set()
            return True

        self.db.execute("INSERT INTO items(name) VALUES('x')")
        t, _ = self.serve(flaky, '{"interval_ms": 20}')
        self.assertTrue(done.wait(60))
        self.db.execute("SELECT cdc_unlisten('py')")
        t.join(60)
        self.assertEqual(calls[0], calls[1])


if __name__ == "__main__":
    unittest.main(verbosity=2)
