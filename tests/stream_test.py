#!/usr/bin/env python3
"""End-to-end test of cdc-stream with real processes.

usage: stream_test.py CDC_STREAM EXTENSION

A writer process commits rows one by one while cdc-stream processes run as
the same consumer, one after the other: the first is stopped with SIGTERM, the
second killed with SIGKILL, the third drains with --once. Every committed row
must appear, in id order; SIGTERM loses and repeats nothing; SIGKILL repeats
only the unacked tail of the killed run. Then `cdc-stream | head -n K` must end cleanly,
also when nothing more is pending, and `--help` / `--progress` work.
Hang guards are generous timeouts, never timing assertions.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

STREAM, EXT = sys.argv[1:3]
BATCH = 16
ROWS = 1500
GUARD = 60  # seconds; only against hangs


def connect(path, load=True):
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    if load:
        db.enable_load_extension(True)
        db.load_extension(EXT)
    return db


def wait_for(cond, what, proc):
    deadline = time.monotonic() + GUARD
    while not cond():
        if proc.poll() is not None:
            sys.exit("cdc-stream exited (%d) before %s: %s" % (proc.returncode, what, proc.stderr.read()))
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + what)
        time.sleep(0.01)


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "partial last line in " + path
    return [json.loads(l) for l in text.splitlines()]


def stream(args, out, path):
    return subprocess.Popen([STREAM, "--extension", EXT] + args + [path], stdout=out, stderr=subprocess.PIPE)


def stream_into_head(args, k):
    """`cdc-stream ARGS | head -n K`, without a shell: (stream's status,
    head's status, head's output)."""
    src = subprocess.Popen([STREAM, "--extension", EXT] + args, stdout=subprocess.PIPE)
    head = subprocess.Popen(["head", "-n", str(k)], stdin=src.stdout, stdout=subprocess.PIPE, text=True)
    src.stdout.close()  # head holds the only read end
    out, _ = head.communicate(timeout=GUARD)
    return src.wait(GUARD), head.returncode, out


def main():
    tmp = tempfile.mkdtemp(prefix="cdcstream.")
    path = os.path.join(tmp, "app.db")
    db = connect(path)
    db.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
                     "SELECT cdc_setup('t'); SELECT cdc_consumer_add('sink');")

    # The writer: another process that never loads the extension.
    writer = subprocess.Popen([sys.executable, "-c", """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for i in range(1, int(sys.argv[2]) + 1):
    db.execute("INSERT INTO t(id, v) VALUES(?, ?)", (i, "row %d" % i))
    if i % 100 == 0:
        time.sleep(0.02)
""", path, str(ROWS)])

    outs = [os.path.join(tmp, "out%d" % i) for i in range(3)]
    # 1: SIGTERM while the writer writes.
    with open(outs[0], "w") as f:
        p = stream(["-c", "sink", "-b", str(BATCH)], f, path)
        wait_for(lambda: os.path.getsize(outs[0]) > 0, "first lines", p)
        p.send_signal(signal.SIGTERM)
        assert p.wait(GUARD) == 0, p.stderr.read()
    first = lines_of(outs[0])
    # 2: SIGKILL, when it has written something.
    with open(outs[1], "w") as f:
        p = stream(["-c", "sink", "-b", str(BATCH)], f, path)
        wait_for(lambda: os.path.getsize(outs[1]) > 0, "lines after restart", p)
        p.kill()
        p.wait(GUARD)
    assert writer.wait(GUARD) == 0
    second = lines_of(outs[1]) if os.path.getsize(outs[1]) else []
    # 3: drain what is left and exit.
    with open(outs[2], "w") as f:
        p = stream(["-c", "sink", "-b", str(BATCH), "--once", "--progress"], f, path)
        assert p.wait(GUARD) == 0
        progress = p.stderr.read().decode()
    third = lines_of(outs[2])
    assert "consumer=sink" in progress and "pending=0" in progress, progress

    ids = [e["id"] for part in (first, second, third) for e in part]
    for part in (first, second, third):
        got = [e["id"] for e in part]
        assert got == sorted(set(got)), "ids not strictly increasing within one run"
    # SIGTERM: the restart continues right after the last line written.
    assert second[0]["id"] > first[-1]["id"], "SIGTERM run repeated a line"
    # SIGKILL: only what was written but not yet acked is written again (the
    # listener's acker commits at most every 10-50 ms): the repeated lines
    # are the end of the killed run and the start of the next one, nothing
    # from further back.
    dups = len(ids) - len(set(ids))
    second_ids = [e["id"] for e in second]
    third_ids = [e["id"] for e in third]
    repeated = sorted(set(second_ids) & set(third_ids))
    assert dups == len(repeated), "lines repeated other than at the SIGKILL"
    assert repeated == second_ids[len(second_ids) - len(repeated):], "a repeat that is not the killed run's tail"
    assert repeated == third_ids[:len(repeated)], "a repeat that is not the restart's head"
    rows = {}
    for part in (first, second, third):
        for e in part:
            assert e["table"] == "t" and e["op"] == "INSERT" and e["before"] is None
            rows[e["after"]["id"]] = e["after"]["v"]
    assert rows == {i: "row %d" % i for i in range(1, ROWS + 1)}, "lost or wrong rows"

    # head -n K closes the pipe: cdc-stream ends cleanly, with changes pending
    # and with none left to write.
    for k, pending in ((5, 40), (3, 3)):
        name = "head%d" % k
        db.execute("SELECT cdc_consumer_add(?, 'latest')", (name,))
        db.executemany("INSERT INTO t(v) VALUES(?)", [("h",)] * pending)
        status, head_status, out = stream_into_head(["-c", name, "-b", "1", path], k)
        got = [json.loads(l) for l in out.splitlines()]
        assert status == 0 and head_status == 0 and len(got) == k, (status, head_status, out)
        pos = db.execute("SELECT json_extract(value, '$.position') FROM json_each(cdc_status(), '$.consumers') "
                         "WHERE json_extract(value, '$.name') = ?", (name,)).fetchone()[0]
        assert pos >= got[-1]["id"], "acked less than head read"
        after = subprocess.run([STREAM, "--extension", EXT, "-c", name, "--once", path],
                               capture_output=True, text=True, timeout=GUARD)
        rest = [json.loads(l)["id"] for l in after.stdout.splitlines()]
        assert after.returncode == 0 and all(i > pos for i in rest)
    # With the default batch, the pipe closing mid-batch: still status 0
    # (the whole pipeline succeeds under `set -o pipefail`).
    db.executemany("INSERT INTO t(v) VALUES(?)", [("z",)] * 3)
    assert stream_into_head(["-c", "head5", path], 1)[:2] == (0, 0)

    # SIGINT, --help, usage errors, a missing database.
    with open(os.devnull, "w") as f:
        p = stream(["-c", "sink", "--progress"], f, path)
        p.stderr.readline()  # running, signal handlers installed
        p.send_signal(signal.SIGINT)
        assert p.wait(GUARD) == 0
    h = subprocess.run([STREAM, "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "usage: cdc-stream" in h.stdout
    u = subprocess.run([STREAM, "--batch", "0", path], capture_output=True, text=True)
    assert u.returncode == 2 and "--batch needs a positive integer" in u.stderr, u
    m = subprocess.run([STREAM, "--extension", EXT, os.path.join(tmp, "missing.db")], capture_output=True, text=True)
    assert m.returncode == 1 and "cannot open" in m.stderr, m
    db.close()
    subprocess.run(["rm", "-rf", tmp])
    print("stream: %d rows, %d lines in 3 runs (%d repeated after SIGKILL)" % (ROWS, len(ids), dups))
    print("1 passed, 0 failed")


main()
