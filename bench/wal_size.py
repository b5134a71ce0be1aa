#!/usr/bin/env python3
"""WAL size under a continuous writer, with consumers beside it.

usage: wal_size.py EXTENSION [SECONDS [ROWS_PER_S]]

One database in WAL mode (synchronous=NORMAL, busy_timeout 5 s on every
connection): a writer thread inserts rows of about 100 bytes, 100 per
transaction, at ROWS_PER_S (default 5000; 0: back to back); a listener (cdc_listen with a Python SQL function)
on consumer 'listen'; a poll consumer thread (cdc_wait + cdc_poll(1000) +
cdc_ack) on 'poll'; and consumer 'stalled', registered and never read, with
cdc_config('max_log_rows', 100000). Samples the -wal file and the database
file every 100 ms; prints the WAL's maximum and final size, the database's
page count at the end, the log rows left, and the consumers' states.
"""
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time

ext = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 5000


def connect(path):
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.enable_load_extension(True)
    db.load_extension(ext)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "w.db")
    main = connect(path)
    main.execute("PRAGMA journal_mode=WAL")
    main.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b REAL, c INTEGER)")
    main.execute("SELECT cdc_setup('t')")
    for c in ("listen", "poll", "stalled"):
        main.execute("SELECT cdc_consumer_add(?)", (c,))
    main.execute("SELECT cdc_config('max_log_rows', 100000)")
    stop = threading.Event()
    counts = {"written": 0, "listen": 0, "poll": 0}

    def on_batch(batch_json):
        counts["listen"] += len(json.loads(batch_json))
        return True

    main.create_function("on_batch", 1, on_batch)
    main.execute("SELECT cdc_listen('listen', 'on_batch')")

    def writer():
        db = connect(path)
        row = "x" * 80
        start = time.time()
        while not stop.is_set():
            if rate and counts["written"] > (time.time() - start) * rate:
                time.sleep(0.001)
                continue
            db.execute("BEGIN")
            db.executemany("INSERT INTO t(a, b, c) VALUES(?, 1.5, 7)", [(row,)] * 100)
            db.execute("COMMIT")
            counts["written"] += 100

    def poller():
        db = connect(path)
        try:
            while not stop.is_set():
                db.execute("SELECT cdc_wait('poll', 200)")
                batch = json.loads(db.execute("SELECT cdc_poll('poll', 1000)").fetchone()[0])
                if batch:
                    counts["poll"] += len(batch)
                    db.execute("SELECT cdc_ack('poll', ?)", (batch[-1]["id"],))
        except sqlite3.OperationalError as e:  # invalidated: it did not keep up
            print("poll consumer stopped: %s" % str(e)[:80])

    threads = [threading.Thread(target=writer), threading.Thread(target=poller)]
    for th in threads:
        th.start()
    wal_max = 0
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            wal_max = max(wal_max, os.path.getsize(path + "-wal"))
        except OSError:
            pass
        time.sleep(0.1)
    stop.set()
    for th in threads:
        th.join()
    wal_end = os.path.getsize(path + "-wal")
    status = json.loads(main.execute("SELECT cdc_status()").fetchone()[0])
    main.execute("SELECT cdc_unlisten('listen')")
    print("%.0f s: %d rows written; delivered: listener %d, poll %d" %
          (seconds, counts["written"], counts["listen"], counts["poll"]))
    print("WAL: max %.1f MB, at the end %.1f MB" % (wal_max / 1e6, wal_end / 1e6))
    print("database: %d pages (%.1f MB), log rows %d, log bytes %s" %
          (main.execute("PRAGMA page_count").fetchone()[0], os.path.getsize(path) / 1e6,
           status["log_rows"], status["log_bytes"]))
    for c in status["consumers"]:
        print("consumer %s: %s %s" % (c["name"], c["state"], c["lost_reason"] or ""))
