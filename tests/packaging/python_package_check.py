"""Runs inside a venv where only the sqlite_cdc wheel was installed
(python_package_test.sh). argv: SQLITE3_SHELL DATABASE.

Another process (the stock sqlite3 shell, without the extension) writes while
this process's main thread keeps using its own connection (writes and reads),
a push listener delivers to a Python function on its own thread and
connection, and a pull Consumer iterates on the main connection."""

import os
import sqlite3
import subprocess
import sys
import threading
import time

import sqlite_cdc
from sqlite_cdc import Change, Consumer

shell, db_path = sys.argv[1], sys.argv[2]
SHELL_ROWS = 200


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


# The installed package, not a copy from the source tree.
check("site-packages" in sqlite_cdc.__file__, f"imported from {sqlite_cdc.__file__}")
check(os.path.isfile(sqlite_cdc.loadable_path() + ".so"), "loadable_path() + .so exists")

conn = sqlite3.connect(db_path, isolation_level=None)
sqlite_cdc.load(conn)
print("cdc_version", conn.execute("SELECT cdc_version()").fetchone()[0])
conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
conn.execute("SELECT cdc_setup('t')")
poller = Consumer(conn, "poller")
check(poller.position == 0, "new consumer at 0")

# Errors come through as sqlite3 errors with the extension's message.
try:
    Consumer(conn, "x", start="middle")
    check(False, "a bad start is refused")
except sqlite3.Error as e:
    print("bad start:", e)
try:
    sqlite_cdc.listen(db_path, "y", lambda b: None, start="middle")
    check(False, "a listener with a bad start is refused")
except sqlite3.Error as e:
    print("listener bad start:", e)

# Push: the handler fails once (that batch must come again), then records.
delivered = []
calls = {"n": 0}
handler_threads = set()
all_seen = threading.Event()
expected = set()


def on_batch(batch):
    calls["n"] += 1
    handler_threads.add(threading.current_thread().name)
    check(all(isinstance(c, Change) for c in batch), "batches of Change")
    if calls["n"] == 1:
        raise RuntimeError("first call fails on purpose")
    delivered.extend(batch)
    if expected and {c.after["v"] for c in delivered if c.after} >= expected:
        all_seen.set()


listener = sqlite_cdc.listen(db_path, "pusher", on_batch, batch=50)
check(listener.running, "listener running")

# Another process writes, one transaction per row, while the main thread keeps
# writing and reading through its own connection.
script = ".timeout 10000\n" + "".join(
    f"INSERT INTO t(v) VALUES ('shell-{i}');\n" for i in range(SHELL_ROWS))
writer = subprocess.Popen([shell, "-batch", db_path], stdin=subprocess.PIPE, text=True)
writer.stdin.write(script)
writer.stdin.close()
main_rows = 0
conn.execute("PRAGMA busy_timeout = 10000")
while writer.poll() is None or main_rows < 20:
    conn.execute("INSERT INTO t(v, b) VALUES (?, ?)", (f"main-{main_rows}", b"\x00\xff"))
    conn.execute("SELECT count(*) FROM t").fetchone()
    main_rows += 1
    time.sleep(0.005)
check(writer.wait() == 0, "the shell's writes succeeded")
expected.update(f"shell-{i}" for i in range(SHELL_ROWS))
expected.update(f"main-{i}" for i in range(main_rows))
if {c.after["v"] for c in delivered} >= expected:
    all_seen.set()
deadline = time.monotonic() + 60
while not all_seen.is_set() and time.monotonic() < deadline:
    conn.execute("SELECT count(*) FROM t").fetchone()  # the main connection stays in use
    all_seen.wait(0.05)
check(all_seen.is_set(), f"listener got {len(delivered)} of {len(expected)} changes")
listener.stop()
check(not listener.running, "stop() joined the thread")
ids = [c.id for c in delivered]
check(ids == sorted(set(ids)), "delivered once each, in id order (the failed batch came again)")
check(listener.errors >= 1, "the handler's failure is counted")
check(handler_threads == {"sqlite_cdc listener pusher"}, f"handler ran on the listener thread: {handler_threads}")
blob = next(c for c in delivered if c.after["v"] == "main-0").after["b"]
check(bytes.fromhex(blob["$blob"]) == b"\x00\xff", "BLOB image")
print(f"push: {len(delivered)} changes ({SHELL_ROWS} from the shell, {main_rows} from the main thread), "
      f"{calls['n']} handler calls, 1 retried")

# The listener's acks are its own consumer's: "pusher" has nothing pending.
status = conn.execute("SELECT cdc_wait('pusher', 0)").fetchone()[0]
check(status == 0, "pusher fully acked")

# Pull on the main connection: iteration acks each batch once handled.
pulled = [c for c in poller.changes(limit=64, idle_timeout=0.5)]
check([c.id for c in pulled] == ids, "the poller sees the same changes")
check(poller.position == ids[-1] and poller.wait(0) == 0, "iteration acked everything")
conn.execute("INSERT INTO t(v) VALUES ('late')")
check(poller.wait(5) == 1, "wait() sees a new change")
batch = poller.poll()
check([c.op for c in batch] == ["INSERT"] and batch[0].before is None, "poll() -> one INSERT")
check(poller.ack(batch[0]) == batch[0].id, "ack(Change)")
print(f"pull: {len(pulled)} changes by iteration, then wait/poll/ack")

# stop() from inside the handler does not deadlock; the with block joins.
stopped = threading.Event()


def stop_inside(batch):
    inner.stop()
    stopped.set()


with sqlite_cdc.Listener(db_path, "stopper", stop_inside) as inner:
    check(stopped.wait(30), "handler ran")
    inner._thread.join(10)
    check(not inner.running, "stop() from the handler ended the thread")

# A program that exits without stopping its listener: stopped at exit, exit 0.
exit_script = (
    "import sqlite_cdc, sys, time\n"
    f"l = sqlite_cdc.listen({db_path!r}, 'at-exit', lambda b: time.sleep(0.2))\n"
    "time.sleep(0.3)\n"
    "print('exiting with listener running:', l.running)\n"
)
t0 = time.monotonic()
r = subprocess.run([sys.executable, "-c", exit_script], timeout=60, capture_output=True, text=True)
check(r.returncode == 0 and "running: True" in r.stdout, f"exit with a running listener: {r}")
print(f"exit with a running listener: status 0 in {time.monotonic() - t0:.2f} s")
conn.close()
print("python package: ok")
