"""Helpers of the cdc-stream sink tests (tests/sink_*_test.py).

Real servers on 127.0.0.1, started and stopped by the tests on free ports;
every process a test starts is killed at exit, whatever happened. A test
whose server program is missing exits with SKIP (77, registered as
SKIP_RETURN_CODE in tests/CMakeLists.txt).
"""
import atexit
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

SKIP = 77
GUARD = 60  # seconds: only against hangs, never a timing assertion

_procs = []
_tmp = []


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def need(program, path_hint=None):
    """The path of `program`, or SKIP."""
    p = shutil.which(program) or (path_hint if path_hint and os.path.exists(path_hint) else None)
    if not p:
        skip("%s is not installed (Debian: apt-get install %s)" % (program, program))
    return p


def need_sink(binary, sink, package):
    """SKIP unless cdc-stream was built with `sink` (its --help says)."""
    h = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=GUARD).stdout
    built = h.split("this build has: ", 1)[1].split("):", 1)[0] if "this build has: " in h else ""
    if sink not in built:
        skip("cdc-stream was built without the %s sink (install %s and rebuild)" % (sink, package))


def tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmp.append(d)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def clean_env():
    """The environment without LD_PRELOAD: under the sanitizer runs the test
    host (python) gets the runtime preloaded; other programs run without it
    (cdc-stream and the helpers built there carry their own)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def spawn(args, **kw):
    """Starts a process that is killed at exit."""
    if "env" not in kw and args[0] != sys.executable:
        kw["env"] = clean_env()
    p = subprocess.Popen(args, **kw)
    _procs.append(p)
    return p


def kill(p, sig=signal.SIGKILL):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(GUARD)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(GUARD)


@atexit.register
def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
    for d in _tmp:
        shutil.rmtree(d, ignore_errors=True)


def wait_for(cond, what, proc=None, timeout=GUARD):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s: process exited with %s before %s" % (proc.args[0], proc.returncode, what))
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def wait_port(port, proc=None):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_for(up, "port %d" % port, proc)


def make_db(ext, path, tables=("t",)):
    """A WAL database with captured tables t(id INTEGER PRIMARY KEY, v TEXT)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(ext)
    db.execute("PRAGMA journal_mode=WAL")
    for t in tables:
        db.execute('CREATE TABLE "%s"(id INTEGER PRIMARY KEY, v TEXT)' % t)
        db.execute("SELECT cdc_setup(?)", (t,))
    return db


WRITER = """
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("PRAGMA synchronous=NORMAL")
rows, tables, pause, stop = int(sys.argv[2]), sys.argv[3].split(","), float(sys.argv[4]), sys.argv[5]
i = 0
while i < rows and not (stop and os.path.exists(stop)):
    i += 1
    db.execute('INSERT INTO "%s"(id, v) VALUES(?, ?)' % tables[i % len(tables)], (i, "row %d" % i))
    if i % 50 == 0:
        time.sleep(pause)
print(i)
"""


class Writer:
    """Another process (without the extension) committing rows one by one,
    spread over the tables, pausing `pause` s every 50 rows: `rows` of them,
    or, with until_stopped, until stop() (at most `rows`)."""

    def __init__(self, path, rows, tables=("t",), pause=0.05, until_stopped=False):
        self.stop_file = path + ".stop-writer" if until_stopped else ""
        self.proc = spawn([sys.executable, "-c", WRITER, path, str(rows), ",".join(tables), str(pause),
                           self.stop_file], stdout=subprocess.PIPE, text=True)

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        """Ends it; the number of rows it committed."""
        if self.stop_file:
            open(self.stop_file, "w").close()
        out, _ = self.proc.communicate(timeout=GUARD)
        assert self.proc.returncode == 0
        return int(out)


def start_writer(path, rows, tables=("t",), pause=0.05):
    """A Writer of exactly `rows` rows."""
    return Writer(path, rows, tables, pause)


def position(db, consumer):
    r = db.execute("SELECT json_extract(value, '$.position') FROM json_each(cdc_status(), '$.consumers') "
                   "WHERE json_extract(value, '$.name') = ?", (consumer,)).fetchone()
    return r[0] if r else None


def pending(db, consumer):
    r = db.execute("SELECT json_extract(value, '$.pending') FROM json_each(cdc_status(), '$.consumers') "
                   "WHERE json_extract(value, '$.name') = ?", (consumer,)).fetchone()
    return r[0] if r else None


def source_id(db):
    return db.execute("SELECT json_extract(cdc_status(), '$.source_id')").fetchone()[0]


def stream(binary, ext, db_path, args, log):
    """cdc-stream ARGS DB, its stderr into the file `log` (appended)."""
    f = open(log, "a")
    return spawn([binary, "--extension", ext] + list(args) + [db_path], stdout=subprocess.DEVNULL, stderr=f)


def kill_mid_batch(stream_proc, servers, pause=0.5):
    """SIGKILLs cdc-stream while a batch is in flight: the servers are paused
    (SIGSTOP) so the batch it sends meanwhile gets no confirmation, then
    cdc-stream is killed and the servers resume and store what they had
    received. A restarted cdc-stream sends that unacked batch again, and the
    sink must store it once."""
    for s in servers:
        s.send_signal(signal.SIGSTOP)
    try:
        time.sleep(pause)
        kill(stream_proc)
    finally:
        for s in servers:
            s.send_signal(signal.SIGCONT)


def duplicates(log):
    """Events the sink reported it already held (--progress duplicates=),
    summed over the runs of cdc-stream in the log; a run's counters only
    grow, so a smaller `delivered` starts the next run."""
    runs, prev = [], None
    for line in open(log):
        if not line.startswith("cdc-stream: consumer="):
            continue
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        delivered, dup = int(f["delivered"]), int(f["duplicates"])
        if prev is None or delivered < prev:
            runs.append(0)
        runs[-1] = dup
        prev = delivered
    return sum(runs)


def check_exact(events, rows, what):
    """events: native events as read back from the sink. Each committed row
    exactly once, ids strictly increasing per table."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "%s: %d events stored twice" % (what, len(ids) - len(set(ids)))
    per_table = {}
    for e in events:
        per_table.setdefault(e["table"], []).append(e["id"])
    for t, l in per_table.items():
        assert l == sorted(l), "%s: table %s not in id order" % (what, t)
    got = {e["after"]["id"]: e["after"]["v"] for e in events if e["op"] == "INSERT"}
    assert got == {i: "row %d" % i for i in range(1, rows + 1)}, \
        "%s: lost or wrong rows (%d of %d)" % (what, len(got), rows)
