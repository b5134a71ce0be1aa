#!/usr/bin/env python3
"""cdc-stream --sink redis:// against a real redis-server (AOF, appendfsync
always) on 127.0.0.1.

usage: sink_redis_test.py CDC_STREAM EXTENSION

A writer process commits rows one by one into two tables. Meanwhile
cdc-stream is SIGKILLed mid-run and started again, and redis-server is
SIGKILLed and started again on the same AOF. At the end each stream
(cdc:a, cdc:b) holds every event exactly once, with entry id <event id>-0,
in id order; SIGTERM then stops cdc-stream with status 0. Skipped (77)
without redis-server/redis-cli.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from sink_common import (GUARD, check_exact, clean_env, free_port, kill, make_db, need, need_sink, pending, position,
                         spawn, start_writer, stream, tmpdir, wait_for, wait_port)

STREAM, EXT = sys.argv[1:3]
ROWS = 2000


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
    log = os.path.join(tmp, "stream.log")
    args = ["-c", "redis", "-b", "50", "--timeout", "2000", "--sink", "redis://127.0.0.1:%d" % port]
    writer = start_writer(path, ROWS, ("a", "b"))
    p = stream(STREAM, EXT, path, args, log)

    def stored():
        try:
            return rcli("XLEN", "cdc:a") + rcli("XLEN", "cdc:b")
        except AssertionError:
            return 0

    # SIGKILL cdc-stream mid-run, then restart it.
    wait_for(lambda: stored() >= ROWS // 5, "a fifth of the rows in redis", p)
    kill(p)
    p = stream(STREAM, EXT, path, args, log)
    # SIGKILL redis-server mid-run, then restart it on the same AOF.
    wait_for(lambda: stored() >= ROWS // 2, "half of the rows in redis", p)
    kill(redis)
    time.sleep(0.3)  # cdc-stream meets a refused connection
    redis = start_redis()
    assert writer.wait(GUARD) == 0
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
    check_exact(events, ROWS, "redis")

    # SIGTERM: a clean stop, status 0, everything delivered acked.
    p.send_signal(signal.SIGTERM)
    assert p.wait(GUARD) == 0, open(log).read()
    assert position(db, "redis") == events[-1]["id"]
    log_text = open(log).read()
    kill(redis, signal.SIGTERM)
    retries = log_text.count("retrying")
    assert retries >= 1, "cdc-stream never met the redis outage:\n" + log_text
    print("redis: %d rows, %d entries, each once; %d retry lines" % (ROWS, len(events), retries))
    print("1 passed, 0 failed")


main()
