// listener.cc — a listener's loop (cdc_listen, cdc_serve; DESIGN §4).
//
//   SELECT cdc_listen('search', ?2 [, '{"batch": 100}']);  -- ?2: a C callback (include/cdc.h)
//   SELECT cdc_serve('search', 'on_changes' [, options]);  -- blocks; calls the SQL function here
//   SELECT cdc_unlisten('search');
//
// How it works. A listener has its own connection to the registering
// connection's database file. Its loop runs on a thread of its own
// (cdc_listen) or on the thread that called cdc_serve:
//   0. Take the consumer's lease (lease.h) or stand by: one active reader
//      per consumer across processes.
//   1. PRAGMA data_version on its own connection: a change means another
//      connection committed since the last look (the acker's commits count
//      too: that read finds nothing new), so the log needs reading. The first
//      pass always reads (drain on start). After a watch wake for a write to
//      the -wal file that finds no change, it looks again continuously for
//      up to kSpinUs (signals.h) before waiting.
//   2. Read at most `batch` events after the consumer's position (LogCursor),
//      call the callback, and on success hand the batch's last id to the
//      acker. On failure retry the same batch after 10 ms, 20 ms, ... capped
//      at retry_max_ms; never skip. Repeat while batches come full, or
//      data_version says someone committed since the last read's snapshot.
//      The next batch starts after the last delivered id, acked or not.
//      A consumer dropped or re-created meanwhile stops the listener.
//   The acker is a second thread with a second connection: it acks the
//   newest delivered id (AckNoWait: one short write transaction), coalescing
//   batches delivered meanwhile, and prunes when the database is quiet. So the reading
//   thread never waits for the database's write lock (an application's long
//   write transaction does not hold up delivery), and pruning runs beside
//   reading instead of between batches. A crash can redeliver what was
//   delivered but not yet acked (at least once); on a clean stop the acker
//   makes one last attempt, without waiting for the lock.
//   3. Wait on the signals (signals.h): watch, interval, commit, plus the
//      re-check schedule after wakes that can precede visibility.
//
// Host languages. An SQL-function callback runs only in cdc_serve, on the
// caller's thread, through the caller's connection, whose mutex that thread
// holds for the whole call while holding no host lock (hosts release theirs
// around sqlite3_step). Calling it from a thread of ours instead deadlocks
// hosts with a global lock: their thread holds the lock and waits for the
// connection's mutex (sqlite3_bind_*, sqlite3_column_*), ours holds the mutex
// and waits for the lock. So cdc_listen takes C callbacks only.
//
// Threads and locks. Lock order: a connection's mutex, then the registry
// mutex, then a listener's stats mutex. Nobody holds the registry mutex while
// joining a thread. cdc_unlisten from the listener's own thread (inside the
// callback) sets the stop flag and leaves the thread to finish; it is joined
// later (next cdc_listen/cdc_unlisten, or at connection close). cdc_unlisten
// of a cdc_serve never waits (its function may want the very connection).
//
// Lifetime. cdc_unlisten's pApp is a per-connection state whose destructor
// SQLite calls when the connection closes (before the extension is
// unloaded): it stops and joins that connection's listeners, or detaches the
// one whose callback closed it. cdc.so is pinned once a listener thread
// starts, so no thread can run unmapped code. A host may end a thread inside
// a callback with a forced unwind (CPython at exit): the loop is not
// noexcept, cleans up on the way (acker, connections, lease) and lets it pass.
//
// Files. This one holds the loop; the acker is acker.cc, the SQL functions
// that start and stop listeners listen_sql.cc, the registry registry.cc,
// cdc_wait wait.cc; listener_internal.h declares what they share.
#include "listener_internal.h"

#include <cxxabi.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "delivery.h"
#include "json.h"
#include "retention.h"

namespace cdc {

std::string MainFile(sqlite3* db) {
  const char* f = sqlite3_db_filename(db, "main");
  return f ? f : "";
}

void SetState(Listener* l, const char* s) {
  std::lock_guard<std::mutex> g(l->mu);
  l->state = s;
}

void NoteError(Listener* l, const std::string& msg, bool retry) noexcept {
  std::lock_guard<std::mutex> g(l->mu);
  try {
    l->last_error = msg;
  } catch (const std::bad_alloc&) {
    l->last_error = "out of memory";  // fits the string's own buffer
  }
  if (retry) {
    l->retries++;
    l->state = "retrying";
  }
}

// A step that failed before succeeded now: last_error no longer applies.
void NoteRecovered(Listener* l) {
  std::lock_guard<std::mutex> g(l->mu);
  l->last_error.clear();
}

// Stops the loop for good (the listener thread only): the reason is
// cdc_status()'s last_error, and cdc_serve's error.
void Fail(Listener* l, const Status& why) {
  l->fatal = why;
  NoteError(l, why.message(), false);
  l->stop.Set();
}

unsigned WaitInterruptible(Combiner* signals, int64_t until, int stop_fd, sqlite3* db, bool* stopped,
                           bool* interrupted) {
  *stopped = false;
  *interrupted = false;
  for (;;) {
    const int64_t now = signals->clock()->NowUs();
    if (now >= until) return 0;
    const unsigned mask = signals->Wait(std::min(until, now + kInterruptCheckUs), stop_fd, stopped);
    if (mask || *stopped) return mask;
    if (Interrupted(db)) {
      *interrupted = true;
      return 0;
    }
  }
}

int64_t BackoffUs(int attempt, int64_t max_ms) {
  int64_t ms = 10;
  for (int i = 0; i < attempt && ms < max_ms; i++) ms *= 2;
  return std::min(ms, max_ms) * 1000;
}

namespace {

// Busy handler of connections the extension opens: waits in short steps for
// up to about 30 s, but gives up at once when the owner is stopping.
int BusyWait(void* arg, int n) noexcept {
  auto* stop = static_cast<StopFlag*>(arg);
  if (n >= 30000) return 0;
  if (stop) return stop->SleepUs(n < 20 ? 100 : 1000) ? 1 : 0;
  usleep(n < 20 ? 100 : 1000);
  return 1;
}

// The VFS the user's connection opened its main database with.
std::string VfsOf(sqlite3* db) {
  sqlite3_vfs* vfs = nullptr;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK && vfs && vfs->zName) {
    return vfs->zName;
  }
  return "";
}

}  // namespace

// Opens a connection of the extension's own to `file`, with the VFS of `like`.
Status OpenOwn(sqlite3* like, const std::string& file, int flags, StopFlag* stop, sqlite3** out) {
  sqlite3* db = nullptr;
  std::string vfs = VfsOf(like);
  int rc = sqlite3_open_v2(file.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::Error("cannot open " + file + ": " + msg, rc);
  }
  sqlite3_busy_handler(db, BusyWait, stop);
  *out = db;
  return Status();
}

Status DataVersion(Stmt* st, sqlite3* db, int64_t* v) {
  if (!*st) CDC_RETURN_IF_ERROR(st->Prepare(db, "PRAGMA data_version"));
  int rc = st->Step();
  *v = rc == SQLITE_ROW ? st->Int(0) : -1;
  st->Reset();
  if (rc != SQLITE_ROW) return Status::FromDb(db, "data_version");
  return Status();
}

namespace {

// --- the listener thread ---------------------------------------------------

// cdc_change as callbacks registered with abi 1 know it (no reason).
struct ChangeAbi1 {
  int64_t id, ts;
  const char *table, *op, *before, *after;
};

// Calls the C callback with the batch; *used = n (a C callback takes it whole).
CDC_CATCHES_FORCED_UNWIND Status CallC(Listener* l, const Event* batch, size_t n, size_t* used) {
  std::vector<cdc_change> arr(n);
  for (size_t i = 0; i < n; i++) {
    const Event& e = batch[i];
    arr[i].id = e.id;
    arr[i].ts = e.ts;
    arr[i].table = e.table.c_str();
    arr[i].op = OpName(e.op);
    arr[i].before = e.has_before ? e.before.c_str() : nullptr;
    arr[i].after = e.has_after ? e.after.c_str() : nullptr;
    arr[i].reason = e.reason.empty() ? nullptr : e.reason.c_str();
  }
  std::vector<ChangeAbi1> v1;
  if (l->cb.abi == 1) {
    for (auto& c : arr) v1.push_back({c.id, c.ts, c.table, c.op, c.before, c.after});
  }
  *used = n;
  int rc;
  try {
    rc = v1.empty() ? l->cb.fn(l->cb.user_data, arr.data(), static_cast<int>(n))
                    : l->cb.fn(l->cb.user_data, reinterpret_cast<const cdc_change*>(v1.data()), static_cast<int>(n));
  } catch (abi::__forced_unwind&) {
    throw;  // the host ends this thread (pthread_exit at interpreter exit): let it
  } catch (...) {
    return Status::Error("callback threw an exception");
  }
  if (rc != 0) return Status::Error("callback returned " + std::to_string(rc));
  return Status();
}

// cdc_serve: calls the SQL function with the batch as JSON, through the
// serving connection, on the thread that called cdc_serve (which holds that
// connection's mutex for as long as cdc_serve runs, and no host lock: hosts
// release theirs around sqlite3_step). The JSON holds as many of the n
// events as fit in SQLITE_LIMIT_LENGTH (*used of them; never a NULL batch);
// a single event too big for it stops cdc_serve with an error naming it.
Status CallSql(Listener* l, const Event* batch, size_t n, size_t* used) {
  const int64_t max_len = sqlite3_limit(l->reg_db, SQLITE_LIMIT_LENGTH, -1);
  std::string json = "[";
  *used = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t mark = json.size();
    if (i) json.push_back(',');
    const size_t before = json.size();
    EventJson(&json, batch[i]);
    if (static_cast<int64_t>(json.size()) + 1 > max_len) {
      if (i == 0) {
        Fail(l, EventTooBig("cdc_serve", l->name, batch[0].id, json.size() - before, max_len));
        return l->fatal;
      }
      json.resize(mark);
      break;
    }
    ++*used;
  }
  json.push_back(']');
  Status st;
  sqlite3_stmt* s = nullptr;
  std::string sql = "SELECT " + Ident(l->sql_fn) + "(?1)";
  int prc = sqlite3_prepare_v2(l->reg_db, sql.c_str(), -1, &s, nullptr);
  if (prc == SQLITE_MISUSE) {  // the function closed this connection (it is a zombie now)
    Fail(l, Status::Error("cdc_serve: the connection was closed"));
    return l->fatal;
  }
  if (prc != SQLITE_OK) {
    st = Status::FromDb(l->reg_db, l->sql_fn);
  } else {
    sqlite3_bind_text64(s, 1, json.data(), json.size(), SQLITE_STATIC, SQLITE_UTF8);
    int rc = sqlite3_step(s);
    prc = rc == SQLITE_ROW ? SQLITE_OK : sqlite3_extended_errcode(l->reg_db);
    if (rc == SQLITE_ROW) {
      if (sqlite3_column_type(s, 0) == SQLITE_NULL || sqlite3_column_double(s, 0) == 0.0) {
        st = Status::Error(l->sql_fn + " returned a false value");
      }
    } else {
      st = Status::FromDb(l->reg_db, l->sql_fn);
    }
  }
  sqlite3_finalize(s);
  // sqlite3_interrupt on the serving connection: every statement on it fails
  // until cdc_serve returns, so it ends here (the batch is not acked).
  if ((prc & 0xff) == SQLITE_INTERRUPT) {
    Fail(l, Status::Error("cdc_serve: interrupted", SQLITE_INTERRUPT));
    return l->fatal;
  }
  // Closed inside the function (Python conn.close(), sqlite3_close_v2): the
  // connection lives on as a zombie until cdc_serve returns; nothing can run
  // on it any more, and a prepare says so.
  sqlite3_stmt* none = nullptr;
  if (sqlite3_prepare_v2(l->reg_db, "", -1, &none, nullptr) == SQLITE_MISUSE) {
    Fail(l, Status::Error("cdc_serve: the connection was closed"));
    return l->fatal;
  }
  sqlite3_finalize(none);
  // The function's writes on this connection must be committed before the
  // batch is acked: a transaction it left open could still roll back.
  if (!sqlite3_get_autocommit(l->reg_db)) {
    Fail(l, Status::Error("cdc_serve: " + l->sql_fn + " returned with a transaction open on the serving "
                          "connection; commit (or roll back) inside the function. Changes " +
                          std::to_string(batch[0].id) + ".." + std::to_string(batch[*used - 1].id) +
                          " were not acked"));
    return l->fatal;
  }
  return st;
}

// Delivers one batch (or, for cdc_serve, the part of it that fits in the
// length limit), retrying until it is handled. Returns how many events of
// the batch were delivered: 0 when stopped first.
size_t Deliver(Listener* l, const Event* batch, size_t n) {
  for (int attempt = 0;; attempt++) {
    if (l->stop.IsSet()) return 0;
    SetState(l, "delivering");
    size_t used = 0;
    Status st = l->sql_callback ? CallSql(l, batch, n, &used) : CallC(l, batch, n, &used);
    if (l->stop.IsSet() && !st.ok()) return 0;  // stopped (or failed for good) meanwhile
    if (st.ok()) {
      std::lock_guard<std::mutex> g(l->mu);
      l->batches++;
      l->changes += used;
      if (attempt > 0) l->last_error.clear();
      return used;
    }
    NoteError(l, st.message(), true);
    if (!l->stop.SleepUs(BackoffUs(attempt, l->opt.retry_max_ms))) return 0;
  }
}

// The consumer's position, and whether it is still the consumer the listener
// started with (*same). A consumer dropped and added again, or re-created
// after cdc_teardown() and a new setup (whose ids start again at 1), is
// another one: its created_ms differs, or its position went back.
Status ReadConsumer(Listener* l, int64_t* pos, bool* same) {
  ConsumerState c;
  CDC_RETURN_IF_ERROR(ReadConsumerState(l->db, "cdc_listen", l->name, &c));
  if (!c.found) {  // dropped, or the internal tables are gone
    *same = false;
    return Status();
  }
  *pos = c.pos;
  if (!l->have_created) {
    l->created_ms = c.created;
    l->have_created = true;
  }
  *same = c.created == l->created_ms;
  // Invalidated by retention: reading fails with why, and the acker, seeing
  // the listener retry, stops it with that error (StopIfLost).
  if (c.lost) return Status::Error(LostError("cdc_listen", l->name, c.lost_reason));
  return Status();
}

// Reads the next batch after the consumer's position into slots[0, *count).
Status ReadBatch(Listener* l, std::vector<Event>* slots, size_t* count) {
  // What the acker had committed before this snapshot began (the caller's
  // read transaction starts with the first SELECT, below).
  int64_t acked = 0;
  {
    std::lock_guard<std::mutex> g(l->ack_mu);
    acked = l->ack_done;
  }
  int64_t pos = 0;
  bool same = true;
  CDC_RETURN_IF_ERROR(ReadConsumer(l, &pos, &same));
  // Positions only move forward, so the snapshot's position is at least
  // `acked`, unless the consumer was dropped and added again meanwhile.
  if (!same || pos < acked) {
    Fail(l, Status::Error("consumer " + NameInMessage(l->name) +
                          " was dropped (cdc_consumer_drop or cdc_teardown()); the listener stopped: start "
                          "one again for the consumer as it is now"));
    return l->fatal;
  }
  {
    std::lock_guard<std::mutex> g(l->mu);  // cdc_status: the acked position
    l->position = std::max(l->position, pos);
  }
  pos = std::max(pos, l->delivered);
  ReadRange r;
  r.after = pos;
  r.limit = l->opt.batch;
  *count = 0;
  if (l->cursor_schema != l->schema_seen.schema_version) {
    l->cursor.ForgetShapes();
    l->cursor_schema = l->schema_seen.schema_version;
  }
  struct EndScan {  // before the read transaction ends, whatever happens
    LogCursor& c;
    ~EndScan() { c.EndScan(); }
  } end{l->cursor};
  CDC_RETURN_IF_ERROR(l->cursor.Reopen(l->db, r));
  for (;;) {
    if (*count == slots->size()) slots->emplace_back();
    bool have = false;
    CDC_RETURN_IF_ERROR(l->cursor.Next(&have, &(*slots)[*count]));
    if (!have) return Status();
    ++*count;
  }
}

// Reads and delivers batches until nothing is left or the listener stops.
// *dv_seen is the connection's PRAGMA data_version as of the last read's
// snapshot: after a short batch, one look at data_version (no read
// transaction of its own to speak of) tells whether anyone committed since;
// only then is the log read again.
Status Drain(Listener* l, Stmt* dv, int64_t* dv_seen, bool* found) {
  std::vector<Event>& slots = l->slots;
  size_t count = 0;
  while (!l->stop.IsSet()) {
    SetState(l, "reading");
    CDC_RETURN_IF_ERROR(CheckCapture(l->db, "cdc_listen", &l->schema_seen));
    // One read transaction for the position, the batch and the data
    // version: the statements share one snapshot and one WAL read lock
    // instead of taking their own.
    // (One left open by an out-of-memory exception is ended first.)
    if (!sqlite3_get_autocommit(l->db)) sqlite3_exec(l->db, "ROLLBACK", nullptr, nullptr, nullptr);
    CDC_RETURN_IF_ERROR(Exec(l->db, "BEGIN"));
    Status st = ReadBatch(l, &slots, &count);
    int64_t snap = -1;
    if (st.ok()) st = DataVersion(dv, l->db, &snap);
    Status end = Exec(l->db, "COMMIT");  // a read-only transaction: releases the snapshot
    CDC_RETURN_IF_ERROR(st);
    CDC_RETURN_IF_ERROR(end);
    *dv_seen = snap;
    if (count == 0) return Status();
    *found = true;
    size_t used = Deliver(l, slots.data(), count);
    if (used == 0) return Status();
    l->delivered = slots[used - 1].id;
    PostAck(l, l->delivered);
    if (used == count && count < static_cast<size_t>(l->opt.batch)) {
      // The snapshot had no more: read again only if someone committed since.
      int64_t now_v = -1;
      CDC_RETURN_IF_ERROR(DataVersion(dv, l->db, &now_v));
      if (now_v == snap) return Status();
    }
  }
  return Status();
}

// After a wake that can come before the commit it announces is visible
// (watch, commit) and that came with a write to the -wal file, looks at
// data_version again and again for up to kSpinUs while it stays `seen`: a
// writer makes its commit visible some tens of microseconds after its first
// WAL write, and looking on the CPU costs one wake where sleeping through
// the short re-checks costs two or three, each of which may wait for a CPU
// on a busy machine. Only in WAL mode, where readers never hold a writer up
// (signals.h, Signal::WalWrite). *v receives the last value.
Status Spin(Listener* l, Stmt* dv, int64_t seen, int64_t* v) {
  Clock* clock = l->signals->clock();
  const int64_t until = clock->NowUs() + kSpinUs;
  while (*v == seen && clock->NowUs() < until) CDC_RETURN_IF_ERROR(DataVersion(dv, l->db, v));
  return Status();
}

void Loop(Listener* l) {
  Stmt dv;
  int64_t last_dv = -1;
  bool force = true;  // drain on start
  int read_errors = 0;
  unsigned mask = 0;  // what woke the loop
  while (!l->stop.IsSet()) {
    if (!l->lease.TryTake()) {  // a standby: another listener delivers
      SetState(l, "standby");
      if (!l->stop.SleepUs(20000)) break;
      force = true;
      continue;
    }
    int64_t v = -1;
    Status st = DataVersion(&dv, l->db, &v);
    bool spun = false;
    if (!force && st.ok() && v == last_dv && (mask & kEarlySources) && l->signals->WalWrite()) {
      st = Spin(l, &dv, last_dv, &v);
      spun = true;
    }
    bool found = false;
    if (force || !st.ok() || v != last_dv) {
      st = Drain(l, &dv, &last_dv, &found);
      if (!st.ok()) {
        if (l->stop.IsSet()) break;
        NoteError(l, st.message(), true);
        force = true;
        if (!l->stop.SleepUs(BackoffUs(read_errors++, l->opt.retry_max_ms))) break;
        continue;
      }
      if (read_errors > 0) NoteRecovered(l);
      read_errors = 0;
    }
    force = false;
    if (spun) l->signals->Spun();
    l->signals->AfterRead(found);
    SetState(l, "idle");
    bool stopped = false;
    if (!l->sql_callback) {
      mask = l->signals->Wait(kNever, l->stop.fd(), &stopped);
    } else {
      // cdc_serve: sqlite3_interrupt on the serving connection ends it
      // while idle (a batch delivered on an interrupted connection fails:
      // CallSql).
      bool interrupted = false;
      mask = WaitInterruptible(l->signals.get(), kNever, l->stop.fd(), l->reg_db, &stopped, &interrupted);
      if (interrupted) {
        Fail(l, Status::Error("cdc_serve: interrupted", SQLITE_INTERRUPT));
        break;
      }
    }
    if (stopped) break;
    std::lock_guard<std::mutex> g(l->mu);
    for (int s = 0; s < kSrcCount; s++) {
      if (mask & Bit(s)) l->wakes[s]++;
    }
  }
}

// Ends the acker and closes the listener's connections.
void Shutdown(Listener* l, std::thread* acker) {
  {
    std::lock_guard<std::mutex> g(l->ack_mu);
    l->ack_quit = true;
    l->ack_cv.notify_one();
  }
  if (acker->joinable()) acker->join();
  sqlite3_close_v2(l->ack_db);
  l->ack_db = nullptr;
  sqlite3_close_v2(l->db);
  l->db = nullptr;
}

}  // namespace

// The listener's loop, on its own thread (cdc_listen) or on the caller's
// (cdc_serve). Not noexcept: a host may end the thread inside a callback
// with a forced unwind (CPython's pthread_exit of a thread that wants the GIL
// at interpreter exit); it must pass through every frame, cleaning up, and
// is never caught for good.
CDC_CATCHES_FORCED_UNWIND void Run(Listener* l) {
  FineTimerSlack slack;
  std::thread acker;
  try {
    acker = std::thread(Acker, l);
  } catch (...) {
    NoteError(l, "cannot start the acker thread", false);
    l->stop.Set();
  }
  try {
    std::unique_ptr<StmtCache> cache;
    for (int attempt = 0; !l->stop.IsSet(); attempt++) {
      try {
        // The loop runs the same few statements: parse them once.
        if (!cache) cache = std::make_unique<StmtCache>(l->db);
        Loop(l);
        break;
      } catch (const std::bad_alloc&) {
        // Out of memory anywhere in a pass: start again (with a drain, after
        // the last delivered id) once memory returns.
        NoteError(l, "out of memory", true);
        if (!l->stop.SleepUs(BackoffUs(attempt, l->opt.retry_max_ms))) break;
      }
    }
  } catch (abi::__forced_unwind&) {
    l->stop.Set();
    Shutdown(l, &acker);  // no user code (destroy) on a thread being ended
    l->lease.Release();
    SetState(l, "stopped");
    l->done.store(true);
    throw;
  }
  Shutdown(l, &acker);
  l->lease.Release();  // after the last ack: a standby starts where this one ended
  if (l->cb.destroy) l->cb.destroy(l->cb.user_data);
  SetState(l, "stopped");
  l->done.store(true);
}

}  // namespace cdc
