#!/usr/bin/env python3
"""sqlite-cdc inside a real host program: Debian's /usr/bin/python3 (issue 12).

usage: host_test.py EXTENSION

Each scenario runs in a child process of its own (this file, with --child
NAME DB), under a watchdog: a hang is a failure after a bounded time, never a
stuck test run; a crash or an abort at exit is a failed exit status. The
parent checks what the child printed.

- push delivery (cdc_serve on a connection and thread of its own) while the
  main thread keeps using the application's connection for seconds;
- the old recipe (cdc_listen with a Python function) refused, not hung;
- exiting the interpreter while batches are delivered (cdc_serve, and a C
  callback made with ctypes on the listener's own thread);
- closing the serving connection inside the callback;
- batches never NULL under SQLITE_LIMIT_LENGTH; a change too big stops with
  its id (cdc_serve and cdc_poll);
- the callback's writes commit before its batch is acked;
- the authorizer of the serving connection applies;
- sqlite3_interrupt during cdc_bootstrap leaves no transaction open;
- a consumer dropped (or cdc_teardown()) under a running listener stops it.
"""
import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SQLITE_LIMIT_LENGTH = 0


def connect(ext, path, load=True):
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    if load:
        db.enable_load_extension(True)
        db.load_extension(ext)
        db.enable_load_extension(False)
    return db


def serve_in_thread(ext, path, fn, options=None, setup=None, daemon=False):
    """The recipe of docs/recipes.md: a thread with a connection of its own blocks in
    cdc_serve, which calls `fn` (registered on that connection) per batch.
    Returns (thread, outcome dict: 'result' or 'error', and 'db')."""
    outcome = {}

    def run():
        own = connect(ext, path)
        outcome["db"] = own
        own.create_function("on_batch", 1, fn)
        if setup:
            setup(own)
        try:
            args = ("c", "on_batch") if options is None else ("c", "on_batch", json.dumps(options))
            sql = "SELECT cdc_serve(?, ?)" if options is None else "SELECT cdc_serve(?, ?, ?)"
            outcome["result"] = own.execute(sql, args).fetchone()[0]
        except sqlite3.Error as e:
            outcome["error"] = str(e)
        except Exception as e:  # e.g. Python's own error after the function closed the connection
            outcome["exception"] = type(e).__name__

    t = threading.Thread(target=run, daemon=daemon)
    t.start()
    return t, outcome


def wait_for(pred, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


# --- children: each prints one JSON line for the parent ------------------------

def child_push_while_the_app_uses_its_connection(ext, path):
    # Item 1: the main thread uses the application's connection (binds,
    # column reads, transactions) for several seconds while batches arrive.
    app = connect(ext, path)
    got, batches = [], []

    def on_batch(batch_json):
        ids = [e["id"] for e in json.loads(batch_json)]
        got.extend(ids)
        batches.append(time.time())
        return True

    t, outcome = serve_in_thread(ext, path, on_batch, {"batch": 50})
    seconds = float(os.environ.get("CDC_HOST_SECONDS", "6"))
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        if n % 10 == 0:
            app.execute("BEGIN")
            for k in range(5):
                app.execute("INSERT INTO t(v) VALUES(?)", ("tx%d" % k,))
            app.execute("COMMIT")
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
        app.execute("SELECT count(*), max(id) FROM t WHERE id > ?", (n - 10,)).fetchone()
        n += 1
    busy_end = time.time()
    last = app.execute("SELECT max(id) FROM __cdc_log").fetchone()[0]
    delivered = wait_for(lambda: got and got[-1] >= last)
    app.execute("SELECT cdc_unlisten('c')")
    t.join(30)
    print(json.dumps({
        "delivered_all": delivered, "thread_ended": not t.is_alive(), "outcome": outcome.get("result"),
        "error": outcome.get("error"), "ids_in_order_once": got == list(range(1, last + 1)),
        "batches_while_busy": sum(1 for b in batches if b <= busy_end), "statements": n,
        "position": app.execute("SELECT pos FROM __cdc_consumers WHERE name = 'c'").fetchone()[0], "last": last}))


def child_old_recipe(ext, path):
    # The README's former push recipe: a Python function as cdc_listen's
    # callback, then keep using the connection. It deadlocked; now refused.
    db = connect(ext, path)
    db.create_function("on_changes", 1, lambda batch: 1)
    try:
        db.execute("SELECT cdc_listen('c', 'on_changes')").fetchone()
        outcome = "started"
    except sqlite3.OperationalError as e:
        outcome = str(e)
    for n in range(2000):
        db.execute("INSERT INTO t(v) VALUES(?)", (n,))
        db.execute("SELECT count(*) FROM t WHERE id > ?", (n,)).fetchone()
    print(json.dumps({"outcome": outcome}))


def child_exit_while_serving(ext, path):
    # Item 3: no close, no unlisten; the interpreter ends the daemon thread.
    app = connect(ext, path)
    app.execute("BEGIN")
    for n in range(3000):
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
    app.execute("COMMIT")

    def on_batch(batch_json):
        time.sleep(0.0005)
        return True

    serve_in_thread(ext, path, on_batch, {"batch": 1}, daemon=True)
    wait_for(lambda: app.execute("SELECT pos FROM __cdc_consumers").fetchone()[0] > 20)
    print(json.dumps({"exiting": True}))
    sys.stdout.flush()


class Change(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int64), ("ts", ctypes.c_int64), ("table", ctypes.c_char_p),
                ("op", ctypes.c_char_p), ("before", ctypes.c_char_p), ("after", ctypes.c_char_p)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Change), ctypes.c_int)


class Callback(ctypes.Structure):
    _fields_ = [("abi", ctypes.c_int), ("fn", CALLBACK), ("user_data", ctypes.c_void_p),
                ("destroy", ctypes.c_void_p)]


def c_listen(ext, path, fn, consumer=b"c", before=None):
    """cdc_listen with a C callback made by ctypes (include/cdc.h, by hand):
    runs on the listener's own thread. Returns (lib, db handle, keepalive)."""
    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_errmsg.restype = ctypes.c_char_p
    db = ctypes.c_void_p()
    assert lib.sqlite3_open(path.encode(), ctypes.byref(db)) == 0
    lib.sqlite3_enable_load_extension(db, 1)
    err = ctypes.c_char_p()
    assert lib.sqlite3_load_extension(db, ext.encode(), None, ctypes.byref(err)) == 0, err.value
    if before:
        before(lib, db)
    cb = Callback(1, CALLBACK(fn), None, None)
    st = ctypes.c_void_p()
    assert lib.sqlite3_prepare_v2(db, b"SELECT cdc_listen(?1, ?2)", -1, ctypes.byref(st), None) == 0
    lib.sqlite3_bind_text(st, 1, consumer, -1, ctypes.c_void_p(-1))
    lib.sqlite3_bind_pointer(st, 2, ctypes.byref(cb), b"cdc_callback", None)
    rc = lib.sqlite3_step(st)
    msg = lib.sqlite3_errmsg(db).decode()
    lib.sqlite3_finalize(st)
    return lib, db, (cb, fn), (rc, msg)


def child_exit_while_c_callback(ext, path):
    # Item 3 on the extension's own thread: a ctypes callback needs the GIL.
    app = connect(ext, path)
    app.execute("BEGIN")
    for n in range(3000):
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
    app.execute("COMMIT")
    seen = [0]

    def on_changes(user, changes, n):
        seen[0] += n
        time.sleep(0.0005)
        return 0

    global KEEP
    KEEP = c_listen(ext, path, on_changes)
    assert KEEP[3][0] == 100, KEEP[3]
    wait_for(lambda: seen[0] > 20)
    print(json.dumps({"exiting": True}))
    sys.stdout.flush()


def child_close_inside_callback(ext, path):
    # Item 2: the function closes the serving connection (the last one that
    # loaded the extension in this process).
    app = connect(ext, path, load=False)
    app.execute("INSERT INTO t(v) VALUES('x')")
    box = {}

    def on_batch(batch_json):
        box["db"].close()
        return True

    t, outcome = serve_in_thread(ext, path, on_batch, setup=lambda own: box.update(db=own))
    t.join(30)
    time.sleep(0.2)
    print(json.dumps({"thread_ended": not t.is_alive(), "error": outcome.get("error"),
                      "exception": outcome.get("exception")}))


def child_close_inside_c_callback(ext, path):
    # Item 2 on the listener's own thread: sqlite3_close_v2 inside a C
    # callback closes the only connection that loaded the extension, so
    # SQLite unloads it while the listener thread is still in its code.
    app = connect(ext, path, load=False)
    app.execute("INSERT INTO t(v) VALUES('x')")
    calls = []
    box = {}

    def on_changes(user, changes, n):
        calls.append(n)
        box["lib"].sqlite3_close_v2(box["db"])
        return 0

    lib, db, keep, (rc, msg) = c_listen(ext, path, on_changes)
    box.update(lib=lib, db=db)
    assert rc == 100, msg
    wait_for(lambda: calls)
    app.execute("INSERT INTO t(v) VALUES('y')")
    time.sleep(0.5)  # the listener thread ends meanwhile
    print(json.dumps({"calls": len(calls)}))


def child_length_limit(ext, path):
    # Item 5: the serving connection's SQLITE_LIMIT_LENGTH is 6000 bytes.
    app = connect(ext, path)
    app.execute("SELECT cdc_consumer_add('p')")  # reads the same changes with cdc_poll below
    for n in range(20):
        app.execute("INSERT INTO t(v) VALUES(?)", ("x" * 1000,))
    sizes = []

    def on_batch(batch_json):
        sizes.append(None if batch_json is None else len(json.loads(batch_json)))
        return batch_json is not None

    t, outcome = serve_in_thread(ext, path, on_batch, {"batch": 100},
                                 setup=lambda own: own.setlimit(SQLITE_LIMIT_LENGTH, 6000))
    wait_for(lambda: sum(s or 0 for s in sizes) >= 20)
    app.execute("INSERT INTO t(v) VALUES(?)", ("y" * 7000,))
    big = app.execute("SELECT max(id) FROM __cdc_log").fetchone()[0]
    t.join(30)
    # cdc_poll under the same limit: fewer changes, or the same error.
    app.setlimit(SQLITE_LIMIT_LENGTH, 6000)
    polled = len(json.loads(app.execute("SELECT cdc_poll('p', 100)").fetchone()[0]))
    app.execute("SELECT cdc_ack('p', 20)")
    try:
        app.execute("SELECT cdc_poll('p', 100)").fetchone()
        poll_error = None
    except sqlite3.OperationalError as e:
        poll_error = str(e)
    print(json.dumps({"sizes": sizes, "serve_error": outcome.get("error"), "big": big,
                      "polled": polled, "poll_error": poll_error,
                      "position": app.execute("SELECT pos FROM __cdc_consumers WHERE name = 'c'").fetchone()[0]}))


def child_callback_writes(ext, path):
    # Item 7: the function writes through the serving connection.
    app = connect(ext, path)
    app.execute("CREATE TABLE seen(id INTEGER PRIMARY KEY)")
    box = {}

    def on_batch(batch_json):
        for e in json.loads(batch_json):
            box["db"].execute("INSERT INTO seen VALUES(?)", (e["id"],))
        return True

    t, outcome = serve_in_thread(ext, path, on_batch, {"batch": 1}, setup=lambda own: box.update(db=own))
    for n in range(50):
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
    wait_for(lambda: app.execute("SELECT pos FROM __cdc_consumers").fetchone()[0] >= 50)
    app.execute("SELECT cdc_unlisten('c')")
    t.join(30)
    other = connect(ext, path, load=False)
    seen = other.execute("SELECT count(*) FROM seen").fetchone()[0]

    # Started inside a transaction: refused.
    def begin(own):
        own.execute("BEGIN")
    t, in_txn = serve_in_thread(ext, path, on_batch, setup=begin)
    t.join(30)

    # A function that leaves a transaction open: cdc_serve stops, batch not acked.
    def leaves_open(batch_json):
        box["db"].execute("BEGIN")
        box["db"].execute("INSERT INTO seen VALUES(1000)")
        return True
    app.execute("INSERT INTO t(v) VALUES('open')")
    t, left_open = serve_in_thread(ext, path, leaves_open, setup=lambda own: box.update(db=own))
    t.join(30)
    print(json.dumps({"seen": seen, "acked": 50, "in_txn": in_txn.get("error"), "left_open": left_open.get("error"),
                      "position": app.execute("SELECT pos FROM __cdc_consumers").fetchone()[0]}))


def child_authorizer(ext, path):
    # Item 6: the serving connection's authorizer denies the log.
    app = connect(ext, path)
    app.execute("INSERT INTO t(v) VALUES('secret')")

    def deny_log(action, arg1, arg2, dbname, source):
        return sqlite3.SQLITE_DENY if arg1 in ("__cdc_log", "t") else sqlite3.SQLITE_OK

    got = []
    t, outcome = serve_in_thread(ext, path, lambda b: got.append(b) or True,
                                 setup=lambda own: own.set_authorizer(deny_log))
    t.join(30)
    app.set_authorizer(deny_log)
    try:
        app.execute("SELECT cdc_poll('c')").fetchone()
        poll = "allowed"
    except sqlite3.DatabaseError as e:
        poll = str(e)
    # cdc_listen with a C callback (ctypes) on a connection with that authorizer.
    AUTH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                            ctypes.c_char_p, ctypes.c_char_p)
    c_deny = AUTH(lambda user, action, a1, a2, d, s: 1 if a1 in (b"__cdc_log", b"t") else 0)  # 1 = SQLITE_DENY
    c_got = []
    _, _, keep, (rc, listen_error) = c_listen(
        ext, path, lambda user, changes, n: c_got.append(n) or 0,
        before=lambda lib, db: lib.sqlite3_set_authorizer(db, c_deny, None))
    time.sleep(0.2)
    print(json.dumps({"serve_error": outcome.get("error"), "got": got, "poll": poll, "listen_error": listen_error,
                      "c_got": c_got}))


def child_bootstrap_interrupt(ext, path):
    # Item 4: rows copied one by one (a generated column; more columns than a
    # log row holds), interrupted from another thread.
    db = connect(ext, path)
    db.execute("CREATE TABLE g(id INTEGER PRIMARY KEY, a, b AS (a * 2))")
    db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
               "INSERT INTO g(a) SELECT i FROM n")
    db.execute("CREATE TABLE w(id INTEGER PRIMARY KEY, %s)" % ", ".join("c%d" % i for i in range(300)))
    db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
               "INSERT INTO w(id, c0, c299) SELECT i, i, i FROM n")
    db.execute("SELECT cdc_setup('g'), cdc_setup('w')")
    results = []
    for table in ("g", "w"):
        for in_txn in (False, True):
            for attempt in range(8):
                before = db.execute("SELECT count(*) FROM __cdc_log").fetchone()[0]
                if in_txn:
                    db.execute("BEGIN")
                    db.execute("INSERT INTO t(v) VALUES('mine')")
                timer = threading.Timer(0.02 * (attempt + 1), db.interrupt)
                timer.start()
                try:
                    db.execute("SELECT cdc_bootstrap(?)", (table,)).fetchone()
                    error = None
                except sqlite3.OperationalError as e:
                    error = str(e)
                timer.join()
                if error is None:  # finished before the interrupt: try again
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    continue
                other = connect(ext, path, load=False)
                other.execute("PRAGMA busy_timeout = 0")
                try:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                    others_can_write = True
                except sqlite3.OperationalError:
                    others_can_write = False
                other.close()
                results.append({"table": table, "in_txn": in_txn, "error": error,
                                "still_in_transaction": db.in_transaction, "others_can_write": others_can_write,
                                "log_rows_added": db.execute("SELECT count(*) FROM __cdc_log").fetchone()[0] - before})
                if db.in_transaction:
                    db.execute("ROLLBACK")
                break
    print(json.dumps({"results": results}))


def child_consumer_dropped(ext, path):
    # Item 9: cdc_teardown() and a new setup under a running cdc_serve.
    app = connect(ext, path)
    got = []
    t, outcome = serve_in_thread(ext, path, lambda b: got.extend(e["id"] for e in json.loads(b)) or True)
    for n in range(3):
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
    wait_for(lambda: len(got) >= 3)
    app.execute("SELECT cdc_teardown()")
    app.execute("SELECT cdc_setup('t'), cdc_consumer_add('c')")
    for n in range(3):
        app.execute("INSERT INTO t(v) VALUES(?)", (n,))
    t.join(30)
    print(json.dumps({"got": got, "error": outcome.get("error"), "thread_ended": not t.is_alive()}))


def child_lease_listener(ext, path):
    # Item 8: a listener process; prints "batch ID ..." per delivered batch
    # until it is killed. Started twice on one consumer: one delivers, the
    # other is a standby.
    def on_batch(batch_json):
        print("batch " + " ".join(str(e["id"]) for e in json.loads(batch_json)), flush=True)
        return True

    print("started %d" % os.getpid(), flush=True)
    t, outcome = serve_in_thread(ext, path, on_batch, {"batch": 20})
    t.join()
    print(json.dumps(outcome.get("error")), flush=True)


CHILDREN = {name[len("child_"):]: fn for name, fn in globals().items() if name.startswith("child_")}


# --- the parent: unittest ---------------------------------------------------------

class HostSafety(unittest.TestCase):
    ext = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cdchost.")
        self.path = os.path.join(self.dir, "app.db")
        db = connect(self.ext, self.path)
        db.executescript("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, v);
            SELECT cdc_setup('t');
            SELECT cdc_consumer_add('c');
        """)
        db.close()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def child(self, name, timeout=None):
        if timeout is None:  # CDC_HOST_SECONDS (make soak) stretches the push test
            timeout = 90 + 2 * float(os.environ.get("CDC_HOST_SECONDS", "0"))
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), self.ext, "--child", name, self.path],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail("%s hung (no exit within %d s); output: %r" % (name, timeout, e.stdout))
        self.assertEqual(p.returncode, 0, "%s exited with %d; stderr:\n%s" % (name, p.returncode, p.stderr))
        self.assertNotIn("terminate", p.stderr)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "%s printed nothing; stderr:\n%s" % (name, p.stderr))
        return json.loads(lines[-1])

    def test_push_while_the_app_uses_its_connection(self):
        r = self.child("push_while_the_app_uses_its_connection")
        self.assertTrue(r["delivered_all"], r)
        self.assertTrue(r["thread_ended"], r)
        self.assertIsNone(r["error"], r)
        self.assertTrue(r["ids_in_order_once"], r)
        self.assertGreater(r["batches_while_busy"], 10, r)
        self.assertEqual(r["outcome"], r["last"], r)  # cdc_serve returns the number of changes delivered
        self.assertEqual(r["position"], r["last"], r)

    def test_the_old_push_recipe_is_refused_not_hung(self):
        r = self.child("old_recipe", timeout=60)
        self.assertIn("cdc_listen: an SQL-function callback is called by cdc_serve", r["outcome"])

    def test_exit_while_serving_is_clean(self):
        for _ in range(5):
            self.assertTrue(self.child("exit_while_serving")["exiting"])

    def test_exit_while_a_c_callback_runs_on_the_listener_thread_is_clean(self):
        for _ in range(5):
            self.assertTrue(self.child("exit_while_c_callback")["exiting"])

    def test_close_inside_the_callback(self):
        # cdc_serve ends ("the connection was closed"; Python itself then
        # reports its closed connection as a MemoryError); no crash, no hang.
        r = self.child("close_inside_callback")
        self.assertTrue(r["thread_ended"], r)
        self.assertTrue(r["error"] or r["exception"], r)

    def test_close_inside_a_c_callback_unloads_nothing_under_the_thread(self):
        for _ in range(3):
            self.assertGreaterEqual(self.child("close_inside_c_callback")["calls"], 1)

    def test_batches_fit_the_length_limit(self):
        r = self.child("length_limit")
        self.assertNotIn(None, r["sizes"])
        self.assertEqual(sum(r["sizes"]), 20, r)
        self.assertLessEqual(max(r["sizes"]), 5, r)
        big = r["big"]
        self.assertRegex(r["serve_error"],
                         r"^cdc_serve: change %d is \d+ bytes of JSON, more than this connection's "
                         r"SQLITE_LIMIT_LENGTH \(6000\); raise the limit \(sqlite3_limit\) or skip the change with "
                         r"SELECT cdc_ack\('c', %d\)$" % (big, big))
        self.assertEqual(r["position"], 20)  # nothing past the big change acked
        self.assertTrue(0 < r["polled"] <= 5, r)
        self.assertIn("change %d holds a value larger than this connection's SQLITE_LIMIT_LENGTH (6000)" % big,
                      r["poll_error"])
        self.assertIn("SELECT cdc_ack('p', %d)" % big, r["poll_error"])

    def test_callback_writes_commit_before_the_ack(self):
        r = self.child("callback_writes")
        self.assertEqual(r["seen"], 50, r)
        self.assertIn("cdc_serve: the connection is inside a transaction", r["in_txn"])
        self.assertIn("on_batch returned with a transaction open", r["left_open"])
        self.assertEqual(r["position"], 50, r)  # the batch of the open transaction was not acked

    def test_the_authorizer_applies(self):
        r = self.child("authorizer")
        self.assertEqual(r["got"], [])
        self.assertIn("cdc_serve: not authorized", r["serve_error"])
        self.assertIn("prohibited", r["poll"])  # SQLite's own refusal
        self.assertEqual(r["c_got"], [])
        self.assertIn("cdc_listen: not authorized: this connection's authorizer denies reading the change log",
                      r["listen_error"])

    def test_interrupted_bootstrap_leaves_no_transaction(self):
        r = self.child("bootstrap_interrupt", timeout=180)
        self.assertEqual([(x["table"], x["in_txn"]) for x in r["results"]],
                         [("g", False), ("g", True), ("w", False), ("w", True)], r)
        for x in r["results"]:
            self.assertIn("interrupted", x["error"])
            self.assertFalse(x["still_in_transaction"], x)
            self.assertTrue(x["others_can_write"], x)
            self.assertEqual(x["log_rows_added"], 0, x)

    def test_a_dropped_consumer_stops_the_listener(self):
        r = self.child("consumer_dropped")
        self.assertTrue(r["thread_ended"], r)
        self.assertEqual(r["got"], [1, 2, 3], r)  # the new consumer's 1, 2, 3 are not delivered
        self.assertIn("consumer 'c' was dropped", r["error"])

    def test_long_names_are_cut_in_messages(self):
        db = connect(self.ext, self.path)
        name = "n" * 1000000
        for sql in ("SELECT cdc_poll(?)", "SELECT cdc_serve(?, 'f')", "SELECT cdc_wait(?, 0)",
                    "SELECT cdc_unlisten(?)"):
            with self.assertRaises(sqlite3.OperationalError) as cm:
                db.execute(sql, (name,)).fetchone()
            self.assertLess(len(str(cm.exception)), 1000, sql)
            self.assertIn("'%s'... (1000000 bytes)" % ("n" * 200), str(cm.exception))
        db.close()

    def test_one_listener_per_consumer_across_processes_and_takeover_after_sigkill(self):
        app = connect(self.ext, self.path)

        def spawn():
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.ext, "--child", "lease_listener",
                                  self.path], stdout=subprocess.PIPE, text=True)
            lines = []
            reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")), daemon=True)
            reader.start()
            return p, lines

        def ids(lines):
            return [int(x) for l in list(lines) if l.startswith("batch") for x in l.split()[1:]]

        def status():
            return json.loads(app.execute("SELECT cdc_status()").fetchone()[0])["listeners"]

        a, a_lines = spawn()
        try:
            for n in range(100):
                app.execute("INSERT INTO t(v) VALUES(?)", (n,))
            self.assertTrue(wait_for(lambda: ids(a_lines)[-1:] == [100]), a_lines)
            b, b_lines = spawn()
            try:
                self.assertTrue(wait_for(lambda: any(l.startswith("started") for l in b_lines)))
                time.sleep(0.5)  # b runs and stands by
                for n in range(100, 200):
                    app.execute("INSERT INTO t(v) VALUES(?)", (n,))
                self.assertTrue(wait_for(lambda: ids(a_lines)[-1:] == [200]), a_lines)
                self.assertEqual(ids(b_lines), [])  # one reader at a time
                # Any process sees the holder; cdc_poll refuses a leased consumer.
                self.assertEqual([(x["consumer"], x["remote"], x["pid"]) for x in status()], [("c", True, a.pid)])
                with self.assertRaisesRegex(sqlite3.OperationalError,
                                            r"cdc_poll: consumer 'c' is being delivered by a listener \(pid %d on "
                                            % a.pid):
                    app.execute("SELECT cdc_poll('c')").fetchone()
                # The holder dies hard: the standby takes over at once.
                a.kill()
                a.wait()
                killed = time.time()
                for n in range(200, 300):
                    app.execute("INSERT INTO t(v) VALUES(?)", (n,))
                self.assertTrue(wait_for(lambda: ids(b_lines)[-1:] == [300]), b_lines)
                took = time.time() - killed
                self.assertLess(took, 5.0)
                self.assertEqual([(x["remote"], x["pid"]) for x in status()], [(True, b.pid)])
                # Nothing lost; repeated only what a had delivered but not acked.
                got_a, got_b = ids(a_lines), ids(b_lines)
                self.assertEqual(sorted(set(got_a) | set(got_b)), list(range(1, 301)))
                self.assertEqual(got_b, sorted(got_b))
                self.assertTrue(set(got_a) & set(got_b) <= set(range(got_b[0], 201)), (got_a[-5:], got_b[:5]))
                print("takeover after SIGKILL: %.0f ms to deliver the next 100 changes" % (took * 1000))
            finally:
                b.kill()
                b.wait()
                b.stdout.close()
        finally:
            a.kill()
            a.wait()
            a.stdout.close()
        # Nobody holds the lease now: cdc_poll reads again.
        self.assertEqual(status(), [])
        app.execute("SELECT cdc_poll('c')").fetchone()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--child":
        CHILDREN[sys.argv[3]](sys.argv[1], sys.argv[4])
        sys.exit(0)
    HostSafety.ext = sys.argv.pop(1)
    unittest.main(verbosity=2)
