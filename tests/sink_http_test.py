#!/usr/bin/env python3
"""cdc-stream --sink http:// against a local receiver (http.server) that
misbehaves on purpose.

usage: sink_http_test.py CDC_STREAM EXTENSION

While a writer process commits rows, the receiver answers the first POSTs
with 500, 503 + Retry-After: 1, no answer until the client's timeout, a
dropped connection, then 200. Every row must arrive (at least once, nothing
skipped, in id order), a batch sent again must carry the same
Idempotency-Key and body, and cdc-stream must wait out the Retry-After.
Then the receiver answers 400: cdc-stream stops with status 1 and a clear
message, without acking that batch; restarted against a healthy receiver it
sends the same batch with the same key, and SIGTERM stops it with status 0.
"""
import http.server
import json
import os
import signal
import socketserver
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from sink_common import (GUARD, free_port, kill, make_db, need_sink, pending, position, source_id,
                         start_writer, stream, tmpdir, wait_for)

STREAM, EXT = sys.argv[1:3]
ROWS = 600


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.plan = ["500", "503", "timeout", "drop"]  # then `self.then`
        self.then = "200"
        self.requests = []  # (time, behaviour, key, ids, client port)

    def next(self):
        with self.lock:
            return self.plan.pop(0) if self.plan else self.then


def serve(rec, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers.get("Idempotency-Key")
            assert self.headers.get("Content-Type") == "application/json"
            assert self.headers.get("Authorization") == "Bearer t0ken"  # --header
            ids = [e["id"] for e in json.loads(body)]
            what = rec.next()
            with rec.lock:
                rec.requests.append((time.time(), what, key, ids, self.client_address[1]))
            if what == "timeout":
                time.sleep(1.5)  # past cdc-stream's --timeout 1000
                self.close_connection = True
                return
            if what == "drop":
                self.close_connection = True
                return  # no answer: the connection closes
            code = int(what)
            reply = b'{"error":"bad batch"}' if code == 400 else b"{}"
            self.send_response(code)
            if code == 503:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    srv = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    need_sink(STREAM, "http", "libcurl4-openssl-dev")
    tmp = tmpdir("cdcsink-http.")
    port = free_port()
    rec = Receiver()
    srv = serve(rec, port)
    path = os.path.join(tmp, "app.db")
    db = make_db(EXT, path)
    sid = source_id(db)
    log = os.path.join(tmp, "stream.log")
    args = ["-c", "hook", "-b", "40", "--timeout", "1000", "--header", "Authorization: Bearer t0ken", "--sink", "http://127.0.0.1:%d/hook" % port]
    writer = start_writer(path, ROWS)
    p = stream(STREAM, EXT, path, args, log)
    assert writer.stop() == ROWS
    wait_for(lambda: pending(db, "hook") == 0, "all rows delivered", p)

    reqs = list(rec.requests)
    whats = [r[1] for r in reqs]
    assert whats[:5] == ["500", "503", "timeout", "drop", "200"], whats
    # Each retry of the failed batch: the same key, the same events.
    first = reqs[0]
    for r in reqs[:5]:
        assert r[2] == first[2] and r[3] == first[3], (r, first)
    assert first[2] == "%s:%d-%d" % (sid, first[3][0], first[3][-1])
    # Retry-After: 1 was waited out.
    assert reqs[2][0] - reqs[1][0] >= 0.95, "Retry-After not honoured: %.2fs" % (reqs[2][0] - reqs[1][0])
    # At least once, nothing skipped: the accepted batches cover 1..ROWS, in order.
    accepted = [i for r in reqs if r[1] == "200" for i in r[3]]
    assert accepted == list(range(1, ROWS + 1)), "accepted ids are not 1..%d once each in order" % ROWS
    # Keep-alive: the accepted POSTs share connections.
    ok = [r for r in reqs if r[1] == "200"]
    conns = len({r[4] for r in ok})
    assert conns < len(ok), "no keep-alive: %d POSTs on %d connections" % (len(ok), conns)
    # A key names one batch only.
    bodies = {}
    for r in reqs:
        assert bodies.setdefault(r[2], r[3]) == r[3], "one Idempotency-Key for two different batches"

    # 400: a permanent error stops cdc-stream without acking that batch.
    rec.then = "400"
    with db:  # one transaction: one batch
        db.execute("BEGIN")
        db.executemany("INSERT INTO t(v) VALUES(?)", [("late",)] * 5)
    assert p.wait(GUARD) == 1, "cdc-stream did not stop on HTTP 400"
    err = open(log).read()
    assert "HTTP 400" in err and "not acked" in err and "bad batch" in err, err
    assert position(db, "hook") == ROWS, "the refused batch was acked"
    refused = rec.requests[-1]
    assert refused[1] == "400" and refused[3] == list(range(ROWS + 1, ROWS + 6))

    # Restarted against a healthy receiver: the same batch, the same key.
    rec.then = "200"
    p = stream(STREAM, EXT, path, args, log)
    wait_for(lambda: pending(db, "hook") == 0, "the refused batch delivered after the restart", p)
    again = rec.requests[-1]
    assert again[1] == "200" and again[2] == refused[2] and again[3] == refused[3], (again, refused)
    # SIGTERM: a clean stop, status 0.
    p.send_signal(signal.SIGTERM)
    assert p.wait(GUARD) == 0, open(log).read()
    srv.shutdown()
    print("http: %d rows in %d POSTs (%s first; %d accepted on %d connections), stop on 400, same key after restart" %
          (ROWS, len(rec.requests), ", ".join(whats[:5]), len(ok), conns))
    print("1 passed, 0 failed")


main()
