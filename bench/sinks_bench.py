#!/usr/bin/env python3
"""make bench-sinks: cdc-stream's sinks beside raw clients, on this machine.

usage: sinks_bench.py BUILD_DIR      (BUILD_DIR has cdc.so, cdc-stream, bench/sinks_bench)
env:   CDC_SINK_BENCH_EVENTS=N  backlog size (default 100000)
       CDC_SINK_BENCH_REPS=N    repetitions of each throughput run (default 3)
       CDC_SINK_BENCH_BATCH=N   cdc-stream --batch for redis and http, and the raw Redis
                                pipeline (default 256, cdc-stream's default)
       CDC_SINK_BENCH_NATS_BATCH=N  cdc-stream --batch for nats (default 1024, its default there)

Starts nats-server (JetStream, file storage) and redis-server (AOF off, as a
cache would run; the figures are the sink's, not the disk's) on free
127.0.0.1 ports and an HTTP receiver (Python http.server, answers 200), and
makes a database with a backlog of N INSERT events (5 columns). Then, in one
run, per repetition:
  - throughput: `cdc-stream --once` drains the backlog into each sink (a
    consumer per run); beside it the raw client of the same broker sends the
    same payloads (cdc-stream's own NDJSON) the same way — JetStream async
    publish with message ids and the same window, Redis pipelined XADD with
    explicit ids in pipelines of the batch size — into the same server;
  - latency: a writer commits one row every 2 ms (autocommit, WAL) while
    cdc-stream follows; a subscriber (JetStream ordered consumer; Redis
    XREAD BLOCK) records commit → visible in the broker for each row.
Prints a markdown table (medians, min–max over the repetitions).
"""
import http.server
import json
import os
import shutil
import socket
import socketserver
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BUILD = sys.argv[1]
EXT = os.path.join(BUILD, "cdc")
STREAM = os.path.join(BUILD, "cdc-stream")
TOOL = os.path.join(BUILD, "bench", "sinks_bench")
EVENTS = int(os.environ.get("CDC_SINK_BENCH_EVENTS", "100000"))
REPS = int(os.environ.get("CDC_SINK_BENCH_REPS", "3"))
BATCH = int(os.environ.get("CDC_SINK_BENCH_BATCH", "256"))  # cdc-stream's default --batch
NATS_BATCH = int(os.environ.get("CDC_SINK_BENCH_NATS_BATCH", "1024"))  # its default for nats://
WINDOW = 1024
LAT_ROWS = 1000
procs = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("port %d never opened" % port)


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    procs.append(p)
    return p


def receiver(port, counter):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            counter[0] += body.count(b'{"id":')
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    srv = S(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def run_tool(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (args[0], r.stderr))
    return r.stdout


def sink_rate(args):
    """cdc-stream's own rate (--progress at exit): events delivered and acked
    ÷ seconds from the start of its listener to the last ack, without the
    process start and the extension's loading."""
    r = subprocess.run(args + ["--progress"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("cdc-stream failed: %s" % r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    fields = dict(f.split("=", 1) for f in last.split() if "=" in f)
    assert int(fields["delivered"]) == EVENTS, last
    return float(fields["rate"].rstrip("/s"))


def cell(vals):
    return "%.0f (%.0f–%.0f)" % (statistics.median(vals), min(vals), max(vals))


def main():
    for prog in ("nats-server", "redis-server"):
        if not shutil.which(prog) and not os.path.exists("/usr/sbin/" + prog):
            raise SystemExit("bench-sinks needs %s (apt-get install %s)" % (prog, prog))
    if not os.path.exists(TOOL):
        raise SystemExit("no %s: build with libnats-dev and libhiredis-dev installed" % TOOL)
    tmp = tempfile.mkdtemp(prefix="cdcsinkbench.")
    try:
        run(tmp)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    nport, rport, hport = free_port(), free_port(), free_port()
    nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
    spawn([nats, "-js", "-a", "127.0.0.1", "-p", str(nport), "-sd", os.path.join(tmp, "js")],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spawn(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", tmp], stdout=subprocess.DEVNULL)
    counter = [0]
    receiver(hport, counter)
    wait_port(nport)
    wait_port(rport)
    wait_port(hport)
    servers = "127.0.0.1:%d" % nport

    path = os.path.join(tmp, "bench.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(EXT)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b REAL, c TEXT, v TEXT)")
    db.execute("SELECT cdc_setup('t')")
    names = ["dump"] + ["%s%d" % (k, r) for r in range(REPS) for k in ("nats", "redis", "http")]
    for n in names:
        db.execute("SELECT cdc_consumer_add(?)", (n,))
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES(?, ?, ?, ?, ?)",
                   ((i, i * 7, i / 3.0, "text %d" % i, "x" * 40) for i in range(1, EVENTS + 1)))
    db.execute("COMMIT")
    payloads = os.path.join(tmp, "events.ndjson")
    with open(payloads, "w") as f:
        subprocess.run([STREAM, "--extension", EXT, "-c", "dump", "--once", path], stdout=f, check=True)
    size = os.path.getsize(payloads) / EVENTS
    log("backlog: %d events, %.0f bytes each" % (EVENTS, size))

    rates = {k: [] for k in ("nats", "nats_raw", "redis", "redis_raw", "http")}
    base = [STREAM, "--extension", EXT, "--once", "-b", str(BATCH)]
    nbase = [STREAM, "--extension", EXT, "--once", "-b", str(NATS_BATCH)]
    for r in range(REPS):
        # The same server and payloads, one after the other, per repetition.
        rates["nats"].append(sink_rate(nbase + ["-c", "nats%d" % r, "--sink", "nats://" + servers, "--stream",
                                               "S%d" % r, "--subject", "s%d.{table}" % r, "--window", str(WINDOW),
                                               path]))
        out = run_tool([TOOL, "raw-nats", servers, "R%d" % r, "r%d.t" % r, str(WINDOW), payloads])
        rates["nats_raw"].append(EVENTS / float(out.split()[1]))
        rates["redis"].append(sink_rate(base + ["-c", "redis%d" % r, "--sink", "redis://127.0.0.1:%d" % rport,
                                                "--key", "s%d:{table}" % r, path]))
        out = run_tool([TOOL, "raw-redis", str(rport), "r%d:t" % r, str(BATCH), payloads])
        rates["redis_raw"].append(EVENTS / float(out.split()[1]))
        rates["http"].append(sink_rate(base + ["-c", "http%d" % r, "--sink", "http://127.0.0.1:%d/hook" % hport,
                                               path]))
        log("rep %d: %s" % (r + 1, ", ".join("%s %.0f/s" % (k, v[-1]) for k, v in rates.items())))

    # Latency: commit → visible in the broker, a row every 2 ms.
    lat = {}
    for kind in ("nats", "redis"):
        consumer = "lat" + kind
        db.execute("SELECT cdc_consumer_add(?, 'latest')", (consumer,))
        if kind == "nats":
            sink = ["--sink", "nats://" + servers, "--stream", "L", "--subject", "lat.{table}"]
            probe = [TOOL, "lat-nats", servers, "L", str(LAT_ROWS)]
        else:
            sink = ["--sink", "redis://127.0.0.1:%d" % rport, "--key", "lat:{table}"]
            probe = [TOOL, "lat-redis", str(rport), "lat:t", str(LAT_ROWS)]
        follower = spawn([STREAM, "--extension", EXT, "-c", consumer] + sink + [path], stderr=subprocess.DEVNULL)
        if kind == "nats":  # the stream exists once the follower made it: one event first
            db.execute("INSERT INTO t(a, v) VALUES(0, 'warm-up')")
            time.sleep(1.0)
        p = spawn(probe, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        w = sqlite3.connect(path, isolation_level=None)
        w.execute("PRAGMA synchronous=NORMAL")
        for i in range(LAT_ROWS):
            w.execute("INSERT INTO t(a, v) VALUES(?, ?)", (i, str(time.time_ns() // 1000)))
            time.sleep(0.002)
        out = p.stdout.readline().split()
        p.wait()
        follower.terminate()
        follower.wait()
        lat[kind] = (int(out[0]), int(out[1]), int(out[2]))

    print("| sink (%d events of %.0f bytes) | events/s, median (min–max) of %d | raw client, same run | ratio |"
          % (EVENTS, size, REPS))
    print("|---|---|---|---|")
    print("| NATS JetStream (file, R1), --batch %d, window %d | %s | %s (async publish, msg ids) | %.2f |" % (
        NATS_BATCH, WINDOW, cell(rates["nats"]), cell(rates["nats_raw"]),
        statistics.median(rates["nats"]) / statistics.median(rates["nats_raw"])))
    print("| Redis Streams (no AOF), --batch %d | %s | %s (pipelined XADD, %d a pipeline) | %.2f |" % (
        BATCH, cell(rates["redis"]), cell(rates["redis_raw"]), BATCH,
        statistics.median(rates["redis"]) / statistics.median(rates["redis_raw"])))
    print("| HTTP, local Python receiver, --batch %d | %s | – | – |" % (BATCH, cell(rates["http"])))
    print()
    print("| commit → visible in the broker (a row every 2 ms, %d rows) | p50 | p99 |" % LAT_ROWS)
    print("|---|---|---|")
    for kind, label in (("nats", "NATS JetStream (ordered consumer)"), ("redis", "Redis Streams (XREAD BLOCK)")):
        p50, p99, n = lat[kind]
        print("| %s, %d samples | %.1f ms | %.1f ms |" % (label, n, p50 / 1000.0, p99 / 1000.0))


if __name__ == "__main__":
    main()
