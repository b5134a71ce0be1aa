"""sqlite_cdc: change data capture for SQLite, from Python.

The wheel carries the ``cdc`` loadable extension; this module finds and loads
it and wraps the SQL API in a small typed consumer API::

    import sqlite3, sqlite_cdc

    db = sqlite3.connect("app.db", isolation_level=None)
    sqlite_cdc.load(db)
    db.execute("SELECT cdc_setup('orders')")

    # Pull: wait, poll, handle, ack (on the connection you give it).
    consumer = sqlite_cdc.Consumer(db, "search-index")
    for change in consumer.changes(idle_timeout=5.0):
        index(change)           # acked once the whole batch was handled

    # Push: your function is called on a Python thread of the listener's own,
    # with its own connection; your thread keeps using ``db`` meanwhile.
    with sqlite_cdc.listen("app.db", "mailer", on_batch) as listener:
        ...

Delivery is at least once, in commit order: make handlers idempotent.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

__all__ = ["Change", "Consumer", "Listener", "listen", "load", "loadable_path"]

Image = Dict[str, Any]


def loadable_path() -> str:
    """Path of the bundled extension, without its ``.so`` suffix (SQLite adds
    it): pass it to ``load_extension`` or the sqlite3 shell's ``.load``."""
    return os.path.normpath(os.path.join(os.path.dirname(__file__), "cdc"))


def load(conn: sqlite3.Connection) -> None:
    """Loads the extension into ``conn`` (extension loading is switched back
    off afterwards)."""
    if not hasattr(conn, "enable_load_extension"):
        raise RuntimeError(
            "this Python's sqlite3 module cannot load extensions "
            "(built without SQLITE_ENABLE_LOAD_EXTENSION); Debian's python3 can")
    conn.enable_load_extension(True)
    try:
        conn.load_extension(loadable_path())
    finally:
        conn.enable_load_extension(False)


@dataclass(frozen=True)
class Change:
    """One captured change (the events of docs/reference.md, cdc_poll).

    ``op`` is INSERT, UPDATE, DELETE or BOOTSTRAP; ``before``/``after`` are the
    row images (column name to value; a BLOB is ``{"$blob": "<hex>"}``) or
    None where the operation has none."""

    id: int
    ts: int
    table: str
    op: str
    before: Optional[Image]
    after: Optional[Image]

    @classmethod
    def from_json(cls, event: Dict[str, Any]) -> "Change":
        return cls(event["id"], event["ts"], event["table"], event["op"],
                   event["before"], event["after"])


def _decode(batch_json: str) -> List[Change]:
    return [Change.from_json(e) for e in json.loads(batch_json)]


def _wait_ms(seconds: float) -> int:
    if seconds < 0:
        raise ValueError("timeout must not be negative")
    return int(seconds * 1000)


class Consumer:
    """A named consumer read through a connection of yours that has the
    extension loaded (``load(conn)``). Registers the consumer if it does not
    exist (``start``: ``"earliest"`` or ``"latest"``).

    ``wait`` blocks the connection (and this thread) for up to its timeout:
    give a consumer a connection of its own thread."""

    def __init__(self, conn: sqlite3.Connection, name: str, *, start: str = "earliest") -> None:
        self.conn = conn
        self.name = name
        self.position: int = conn.execute("SELECT cdc_consumer_add(?, ?)", (name, start)).fetchone()[0]

    def poll(self, limit: int = 100) -> List[Change]:
        """The next unacked changes, oldest first, at most ``limit``."""
        row = self.conn.execute("SELECT cdc_poll(?, ?)", (self.name, limit)).fetchone()
        return _decode(row[0])

    def ack(self, change: Union[int, Change]) -> int:
        """Marks every change up to ``change`` (an id or a Change) handled;
        returns the new position."""
        change_id = change.id if isinstance(change, Change) else change
        self.position = self.conn.execute("SELECT cdc_ack(?, ?)", (self.name, change_id)).fetchone()[0]
        return self.position

    def wait(self, timeout: float) -> int:
        """Blocks until there is an unacked change or ``timeout`` seconds
        passed; returns the pending count (0 on timeout)."""
        return self.conn.execute("SELECT cdc_wait(?, ?)", (self.name, _wait_ms(timeout))).fetchone()[0]

    def batches(self, limit: int = 100, idle_timeout: Optional[float] = None,
                wait_step: float = 5.0) -> Iterator[List[Change]]:
        """Yields batches as they come; a batch is acked when the caller asks
        for the next one (a batch in hand when the loop ends is not, and is
        delivered again). Ends after ``idle_timeout`` seconds without a
        change (None: never)."""
        idle = 0.0
        while True:
            batch = self.poll(limit)
            if batch:
                idle = 0.0
                yield batch
                self.ack(batch[-1])
                continue
            if idle_timeout is not None and idle >= idle_timeout:
                return
            step = wait_step if idle_timeout is None else min(wait_step, idle_timeout - idle)
            if self.wait(step) == 0:
                idle += step

    def changes(self, limit: int = 100, idle_timeout: Optional[float] = None) -> Iterator[Change]:
        """The changes one by one (see ``batches``: each batch is acked once
        all of it was handled)."""
        for batch in self.batches(limit, idle_timeout):
            yield from batch

    def __iter__(self) -> Iterator[Change]:
        return self.changes()


BatchHandler = Callable[[Sequence[Change]], Any]

_listeners: "weakref.WeakSet[Listener]" = weakref.WeakSet()


@atexit.register
def _stop_listeners() -> None:
    # Runs before the interpreter tears threads down: a listener the program
    # never stopped still ends cleanly (its connection closed, its thread joined).
    for listener in list(_listeners):
        listener.stop()


class Listener:
    """Push delivery: ``handler(batch)`` is called with each batch of changes,
    in order, on this listener's own Python thread, which has its own
    connection to ``database`` (a path) and loops wait -> poll -> handler ->
    ack. It never touches your connections, so your threads can keep using
    theirs (even for writes) and no lock is ever waited for while another is
    held: no deadlock with the GIL.

    A handler that returns normally has handled the batch (it is acked); one
    that raises gets the same batch again after a backoff (``errors`` and
    ``last_error`` say what happened). ``stop()`` (or leaving the ``with``
    block) ends the thread after the handler in flight and joins it; it may
    be called from inside the handler. Listeners still running at interpreter
    exit are stopped then."""

    def __init__(self, database: str, name: str, handler: BatchHandler, *, start: str = "earliest",
                 batch: int = 100, poll_interval: float = 0.25, max_backoff: float = 5.0,
                 busy_timeout: float = 10.0) -> None:
        self.database = database
        self.name = name
        self.handler = handler
        self.start_at = start
        self.batch = batch
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.busy_timeout = busy_timeout
        self.delivered = 0
        self.errors = 0
        self.last_error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=f"sqlite_cdc listener {name}", daemon=True)

    def start(self) -> "Listener":
        """Starts the thread; returns once its connection is open and the
        consumer registered (raising what went wrong there)."""
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        _listeners.add(self)
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stops the listener and waits for its thread (at most ``timeout``
        seconds); from inside the handler it only asks it to stop."""
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)
        _listeners.discard(self)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Listener":
        return self if self._thread.is_alive() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.database, isolation_level=None, timeout=self.busy_timeout)
            load(conn)
            consumer = Consumer(conn, self.name, start=self.start_at)
        except BaseException as e:  # reported by start()
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        backoff = 0.0
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll(self.batch)
                    if not batch:
                        consumer.wait(self.poll_interval)  # short, so stop() is seen soon
                        continue
                    self.handler(batch)
                    consumer.ack(batch[-1])  # not reached when the handler raised
                except Exception as e:  # the handler's, or the database's (busy, ...): retry
                    self.errors += 1
                    self.last_error = e
                    backoff = min(self.max_backoff, backoff * 2 if backoff else 0.05)
                    self._stop.wait(backoff)
                    continue
                backoff = 0.0
                self.delivered += len(batch)
        finally:
            conn.close()


def listen(database: str, name: str, handler: BatchHandler, **options: Any) -> Listener:
    """Starts a ``Listener`` (see there) and returns it; use it in a ``with``
    block or call ``stop()``."""
    return Listener(database, name, handler, **options).start()
