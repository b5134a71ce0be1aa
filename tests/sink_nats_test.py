#!/usr/bin/env python3
"""cdc-stream --sink nats:// against real nats-server processes on 127.0.0.1.

usage: sink_nats_test.py CDC_STREAM EXTENSION SINK_NATS_READ single|cluster

single:  one nats-server (JetStream, file storage). While a writer process
         commits rows one by one, cdc-stream is SIGKILLed mid-run and
         restarted, and nats-server is SIGKILLed and restarted on its store.
cluster: three nats-server processes in one cluster, an R3 stream. While the
         writer commits, the stream's leader is SIGKILLed and restarted, and
         cdc-stream is SIGKILLed mid-run and restarted.
Either way the stream then holds every event exactly once (Nats-Msg-Id
<source id>:<event id>), in id order per subject, and SIGINT stops
cdc-stream with status 0. Then the same events in the Debezium format
into a second stream (the key in the Cdc-Key header, a subject with
{source}). The streams are read back with sink_nats_read
(tests/sink_nats_read.cc, libnats). Skipped (77) without nats-server or
without libnats.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from sink_common import (GUARD, check_exact, clean_env, duplicates, free_port, kill, kill_mid_batch, make_db,
                         need, need_sink, pending, position, source_id, spawn, stream, tmpdir, wait_for,
                         wait_port, Writer)

STREAM, EXT, READ, MODE = sys.argv[1:5]
MAX_ROWS = 20000  # the writer runs until the faults are done; this only bounds it


def main():
    need_sink(STREAM, "nats", "libnats-dev")
    server = need("nats-server", "/usr/sbin/nats-server")
    if READ == "none" or not os.path.exists(READ):
        print("SKIP: cdc-stream was built without libnats (install libnats-dev)")
        sys.exit(77)
    tmp = tmpdir("cdcsink-nats.")
    n = 1 if MODE == "single" else 3
    ports = [free_port() for _ in range(n)]
    cports = [free_port() for _ in range(n)]
    names = ["n%d" % i for i in range(n)]
    servers = ",".join("127.0.0.1:%d" % p for p in ports)
    procs = [None] * n

    def start(i):
        args = [server, "-js", "-a", "127.0.0.1", "-p", str(ports[i]), "-n", names[i],
                "-sd", os.path.join(tmp, "store%d" % i)]
        if n > 1:
            args += ["--cluster_name", "cdc", "--cluster", "nats://127.0.0.1:%d" % cports[i],
                     "--routes", ",".join("nats://127.0.0.1:%d" % cports[j] for j in range(n) if j != i)]
        procs[i] = spawn(args, stdout=open(os.path.join(tmp, "nats%d.log" % i), "a"), stderr=subprocess.STDOUT)
        wait_port(ports[i], procs[i])

    def read(mode):
        r = subprocess.run([READ, mode, servers, "CDC"], capture_output=True, text=True, timeout=GUARD)
        return r.stdout if r.returncode == 0 else None

    def stored():
        c = read("count")
        return int(c) if c else 0

    t0 = time.time()
    phases = []

    def phase(what):
        phases.append("%s %.1fs" % (what, time.time() - t0))

    for i in range(n):
        start(i)
    phase("servers up")
    path = os.path.join(tmp, "app.db")
    db = make_db(EXT, path, ("a", "b"))
    sid = source_id(db)
    db.execute("SELECT cdc_consumer_add('dbz')")  # the Debezium run at the end
    log = os.path.join(tmp, "stream.log")
    args = ["-c", "nats", "-b", "50", "--progress", "--timeout", "2000", "--replicas", str(n), "--sink", "nats://" + servers]
    writer = Writer(path, MAX_ROWS, ("a", "b"), pause=0.05 if n == 1 else 0.1, until_stopped=True)
    p = stream(STREAM, EXT, path, args, log)
    wait_for(lambda: stored() >= 300, "300 rows in the stream", p)
    phase("first rows")

    if MODE == "single":
        # SIGKILL cdc-stream mid-batch, then restart it.
        kill_mid_batch(p, procs)
        p = stream(STREAM, EXT, path, args, log)
        before = position(db, "nats")
        wait_for(lambda: position(db, "nats") > before + 300, "300 more rows delivered after the restart", p)
        # SIGKILL the server, then restart it on its store.
        kill(procs[0])
        time.sleep(0.3)
        start(0)
    else:
        # SIGKILL the stream's leader, then restart it.
        leader = None
        wait_for(lambda: read("leader") is not None, "a stream leader", p)
        leader = names.index(read("leader").strip())
        kill(procs[leader])
        time.sleep(1.0)
        start(leader)
        # SIGKILL cdc-stream mid-batch, then restart it.
        before = position(db, "nats")
        wait_for(lambda: position(db, "nats") > before + 300, "300 more rows delivered after the leader's restart",
                 p)
        kill_mid_batch(p, procs)
        p = stream(STREAM, EXT, path, args, log)
    phase("faults done")
    assert writer.running(), "the writer ended before the faults: raise MAX_ROWS"
    rows = writer.stop()
    phase("writer done")
    wait_for(lambda: pending(db, "nats") == 0, "the consumer drained", p)
    phase("drained")

    dump = None

    def dumped():
        nonlocal dump
        dump = read("dump")
        return dump is not None
    wait_for(dumped, "the stream read back")
    phase("read back")
    msgs = [json.loads(l) for l in dump.splitlines()]
    events = []
    for m in msgs:
        e = m["data"]
        assert m["msg_id"] == "%s:%d" % (sid, e["id"]), m
        assert m["subject"] == "cdc." + e["table"], m
        events.append(e)
    # Per subject in stream order: check_exact checks id order per table.
    check_exact(events, rows, "nats " + MODE)

    # SIGINT: a clean stop, status 0, everything delivered acked.
    p.send_signal(signal.SIGINT)
    assert p.wait(GUARD) == 0, open(log).read()
    assert position(db, "nats") == max(e["id"] for e in events)
    log_text = open(log).read()

    # The Debezium format into JetStream: the envelope as the message, the
    # key in the Cdc-Key header; a new stream from a subject with {source}.
    r = subprocess.run([STREAM, "--extension", EXT, "-c", "dbz", "--once", "--format", "debezium", "--replicas",
                        str(n), "--stream", "DBZ", "--subject", "dbz.{source}.{table}", "--sink", "nats://" + servers,
                        path], capture_output=True, text=True, timeout=GUARD, env=clean_env())
    assert r.returncode == 0 and "subjects dbz.*.*" in r.stderr, r.stderr
    out = subprocess.run([READ, "dump", servers, "DBZ"], capture_output=True, text=True, timeout=GUARD)
    dbz = [json.loads(l) for l in out.stdout.splitlines()]
    assert len(dbz) == rows, (len(dbz), rows, out.stderr)
    for m in dbz:
        v = m["data"]
        assert m["subject"] == "dbz.%s.%s" % (sid, v["source"]["table"]) and v["op"] == "c", m
        assert json.loads(m["key"]) == {"id": v["after"]["id"]}, m
    if MODE == "single":
        # An event above the server's max_payload: a clear stop, not acked.
        conf = os.path.join(tmp, "small.conf")
        with open(conf, "w") as f:
            f.write("max_payload: 1024\n")
        small_port = free_port()
        small = spawn([server, "-c", conf, "-js", "-a", "127.0.0.1", "-p", str(small_port), "-sd",
                       os.path.join(tmp, "small")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(small_port, small)
        db.execute("SELECT cdc_consumer_add('big', 'latest')")
        db.execute("INSERT INTO a(v) VALUES(?)", ("x" * 5000,))
        r = subprocess.run([STREAM, "--extension", EXT, "-c", "big", "--once", "--sink",
                            "nats://127.0.0.1:%d" % small_port, path],
                           capture_output=True, text=True, timeout=GUARD, env=clean_env())
        assert r.returncode == 1 and "more than the server's max_payload" in r.stderr, r
        assert pending(db, "big") == 1
        kill(small, signal.SIGTERM)
    dups = duplicates(log)
    assert dups > 0, "the batch in flight at the SIGKILL was not sent again:\n" + log_text
    for q in procs:
        kill(q, signal.SIGTERM)
    phase("stopped")
    print("nats %s: %d rows, %d messages, each once, in id order per subject; %d sent again and refused as "
          "duplicates; %d retry lines; %s" %
          (MODE, rows, len(msgs), dups, log_text.count("retrying"), ", ".join(phases)))
    print("1 passed, 0 failed")


main()
