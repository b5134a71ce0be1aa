#!/usr/bin/env python3
"""cdc-stream --sink redis:// against a real redis-server (AOF, appendfsync
always) on 127.0.0.1.

usage: sink_redis_test.py CDC_STREAM EXTENSION

A writer process commits rows one by one into two tables. Meanwhile
cdc-stream is SIGKILLed mid-run and started again, and redis-server is
SIGKILLed and started again on the same AOF. At the end each stream
(cdc:a, cdc:b) holds every event exactly once, with entry id <event id>-0,
in id order; SIGTERM then stops cdc-stream with status 0. Then the same
events in the Debezium format (fields value and key, a key with {source}).
Skipped (77) without redis-server/redis-cli or without hiredis.
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

STREAM, EXT = sys.argv[1:3]
MAX_ROWS = 20000  # the writer runs until the faults are done; this only bounds it


def main():
    need_sink(STREAM, "redis", "libhiredis-dev")
    server = need("redis-server")
    cli = need("redis-cli")
    tmp = tmpdir("cdcsink-redis.")
    port = free_port()

    def start_redis():
        p = spawn([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--appendonly", "yes",
                   "--appendfsync", "always", "--save", "", "--daemonize", "no"],
                  stdout=open(os.path.join(tmp, "redis.log"), "a"), stderr=subprocess.STDOUT)
        wait_port(port, p)
        return p

    def rcli(*args):
        r = subprocess.run([cli, "-p", str(port), "--json"] + list(args), capture_output=True, text=True,
                           timeout=GUARD, env=clean_env())
        assert r.returncode == 0, r
        return json.loads(r.stdout)

    redis = start_redis()
    path = os.path.join(tmp, "app.db")
    db = make_db(EXT, path, ("a", "b"))
    db.execute("SELECT cdc_consumer_add('dbz')")  # the Debezium run at the end
    log = os.path.join(tmp, "stream.log")
    args = ["-c", "redis", "-b", "50", "--progress", "--timeout", "2000", "--sink", "redis://127.0.0.1:%d" % port]
    writer = Writer(path, MAX_ROWS, ("a", "b"), until_stopped=True)
    p = stream(STREAM, EXT, path, args, log)

    def stored():
        try:
            return rcli("XLEN", "cdc:a") + rcli("XLEN", "cdc:b")
        except AssertionError:
            return 0

    # SIGKILL cdc-stream mid-batch, then restart it.
    wait_for(lambda: stored() >= 300, "300 rows in redis", p)
    kill_mid_batch(p, [redis])
    p = stream(STREAM, EXT, path, args, log)
    # SIGKILL redis-server mid-run, then restart it on the same AOF.
    before = position(db, "redis")
    wait_for(lambda: position(db, "redis") > before + 300, "300 more rows delivered after the restart", p)
    kill(redis)
    time.sleep(0.3)  # cdc-stream meets a refused connection
    redis = start_redis()
    before = position(db, "redis")
    wait_for(lambda: position(db, "redis") > before + 300, "300 more rows delivered after redis's restart", p)
    assert writer.running(), "the writer ended before the faults: raise MAX_ROWS"
    rows = writer.stop()
    wait_for(lambda: pending(db, "redis") == 0, "the consumer drained", p)

    events = []
    for key, table in (("cdc:a", "a"), ("cdc:b", "b")):
        entries = rcli("XRANGE", key, "-", "+")
        for entry_id, fields in entries:
            f = dict(zip(fields[::2], fields[1::2]))
            e = json.loads(f["value"])
            assert entry_id == "%d-0" % e["id"] and e["table"] == table, (entry_id, e)
            events.append(e)
    events.sort(key=lambda e: e["id"])
    check_exact(events, rows, "redis")

    # SIGTERM: a clean stop, status 0, everything delivered acked.
    p.send_signal(signal.SIGTERM)
    assert p.wait(GUARD) == 0, open(log).read()
    assert position(db, "redis") == events[-1]["id"]
    log_text = open(log).read()

    # The Debezium format into Redis: fields value (the envelope) and key,
    # a key template with {source}.
    sid = source_id(db)
    r = subprocess.run([STREAM, "--extension", EXT, "-c", "dbz", "--once", "--format", "debezium", "--sink",
                        "redis://127.0.0.1:%d" % port, "--key", "dbz:{source}:{table}", path],
                       capture_output=True, text=True, timeout=GUARD, env=clean_env())
    assert r.returncode == 0, r.stderr
    n = 0
    for table in ("a", "b"):
        for entry_id, fields in rcli("XRANGE", "dbz:%s:%s" % (sid, table), "-", "+"):
            f = dict(zip(fields[::2], fields[1::2]))
            v, k = json.loads(f["value"]), json.loads(f["key"])
            assert v["op"] == "c" and v["source"]["table"] == table and v["source"]["name"] == sid, v
            assert entry_id == "%d-0" % v["source"]["change_id"] and k == {"id": v["after"]["id"]}, (entry_id, f)
            n += 1
    assert n == rows, (n, rows)
    kill(redis, signal.SIGTERM)
    retries = log_text.count("retrying")
    dups = duplicates(log)
    assert dups > 0, "the batch in flight at the SIGKILL was not sent again:\n" + log_text
    assert retries >= 1, "cdc-stream never met the redis outage:\n" + log_text
    print("redis: %d rows, %d entries, each once; %d sent again and refused as duplicates; %d retry lines" %
          (rows, len(events), dups, retries))
    print("1 passed, 0 failed")


main()
