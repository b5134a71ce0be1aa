// listen_sql.cc — the SQL functions that start and stop listeners.
//
//   SELECT cdc_listen('search', ?2 [, '{"batch": 100}']);  -- ?2: a C callback (include/cdc.h)
//   SELECT cdc_serve('search', 'on_changes' [, options]);  -- blocks; calls the SQL function here
//   SELECT cdc_unlisten('search');
//
// Options (a JSON object): signals, interval_ms, batch, retry_max_ms. Each
// function checks its arguments and the consumer, opens the listener's own
// connections (listener.cc's header comment says why), registers it
// (registry.cc), then starts its thread (cdc_listen) or runs its loop on
// the caller's thread (cdc_serve).
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "delivery.h"
#include "listener.h"
#include "listener_internal.h"

namespace cdc {

namespace {

// Keeps cdc.so mapped until the process exits, once a listener thread has
// been started: a connection closed inside a callback (or the last one
// closed while a detached thread finishes) makes SQLite dlclose the
// extension, and a thread still running its code would return into unmapped
// memory. A thread cannot drop that reference itself (it would unmap the
// code it returns into), so it is kept: the cost is that cdc.so stays loaded
// after its last connection closes.
void PinLibrary() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&PinLibrary), &info) != 0 && info.dli_fname) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
  });
}

// --- options ---------------------------------------------------------------

Status IntOption(const std::string& fn, const std::string& key, const std::string& type, int64_t v, int64_t lo, int64_t hi,
                 int64_t* out) {
  if (type != "integer" || v < lo || v > hi) {
    return Status::Error(fn + ": option \"" + key + "\" must be an integer from " +
                         std::to_string(lo) + " to " + std::to_string(hi));
  }
  *out = v;
  return Status();
}

Status ParseOptions(const std::string& fn, sqlite3* db, sqlite3_value* v, Options* o) {
  const char* kUsage = " (e.g. '{\"signals\": [\"watch\", \"interval\"], \"interval_ms\": 250, \"batch\": 256}')";
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    return Status::Error(std::string(fn + ": options must be JSON object text") + kUsage);
  }
  std::string text(reinterpret_cast<const char*>(sqlite3_value_text(v)),
                   static_cast<size_t>(sqlite3_value_bytes(v)));
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT json_valid(?1), CASE WHEN json_valid(?1) THEN json_type(?1) END"));
  st.Bind(1, text);
  if (st.Step() != SQLITE_ROW) return Status::FromDb(db, fn);
  if (st.Int(0) != 1) return Status::Error(std::string(fn + ": options is not valid JSON") + kUsage);
  if (st.Text(1) != "object") {
    return Status::Error(std::string(fn + ": options must be a JSON object") + kUsage);
  }
  st = Stmt();
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT key, type, atom FROM json_each(?1)"));
  st.Bind(1, text);
  std::set<std::string> seen;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    std::string key = st.Text(0), type = st.Text(1);
    if (!seen.insert(key).second) {
      return Status::Error(fn + ": option \"" + key + "\" is given twice");
    }
    if (key == "signals") {
      const std::string kNames = "\"watch\", \"interval\", \"commit\"";
      if (type != "array") {
        return Status::Error(fn + ": option \"signals\" must be an array of " + kNames);
      }
      Stmt el;
      CDC_RETURN_IF_ERROR(el.Prepare(db, "SELECT type, atom FROM json_each(?1, '$.signals')"));
      el.Bind(1, text);
      unsigned mask = 0;
      int erc;
      while ((erc = el.Step()) == SQLITE_ROW) {
        std::string s = el.Text(1);
        int src = s == "watch" ? kSrcWatch : s == "interval" ? kSrcInterval : s == "commit" ? kSrcCommit : -1;
        if (el.Text(0) != "text") {
          return Status::Error(fn + ": option \"signals\" must list signal names (" + kNames + "), not " +
                               (el.Text(0) == "null" ? "null" : "a value of type " + el.Text(0)));
        }
        if (src < 0) {
          return Status::Error(fn + ": unknown signal " + "\"" + s + "\"" + " (known: " + kNames + ")");
        }
        if (mask & Bit(src)) return Status::Error(fn + ": signal \"" + s + "\" is listed twice");
        mask |= Bit(src);
      }
      if (erc != SQLITE_DONE) return Status::FromDb(db, fn);
      if (!mask) return Status::Error(fn + ": option \"signals\" must name at least one of " + kNames);
      o->signals = mask;
    } else if (key == "interval_ms") {
      CDC_RETURN_IF_ERROR(IntOption(fn, key, type, st.Int(2), 1, 3600000, &o->interval_ms));
    } else if (key == "batch") {
      CDC_RETURN_IF_ERROR(IntOption(fn, key, type, st.Int(2), 1, 1000000, &o->batch));
    } else if (key == "retry_max_ms") {
      CDC_RETURN_IF_ERROR(IntOption(fn, key, type, st.Int(2), 1, 3600000, &o->retry_max_ms));
    } else {
      return Status::Error(fn + ": unknown option \"" + key +
                           "\" (known: signals, interval_ms, batch, retry_max_ms)");
    }
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, fn);
  return Status();
}

// The thread owns a reference: a listener detached at close outlives its list.
void Thread(std::shared_ptr<Listener> l) { Run(l.get()); }

}  // namespace

// An argument's text, or "" (for messages only).
std::string ArgTextOr(sqlite3_value* v) {
  const unsigned char* t = sqlite3_value_type(v) == SQLITE_TEXT ? sqlite3_value_text(v) : nullptr;
  return t ? reinterpret_cast<const char*>(t) : "";
}

// --- SQL functions ----------------------------------------------------------------

namespace {

// cdc_listen and cdc_serve read the log through connections of their own,
// which have no authorizer: refuse when the caller's connection may not read
// what cdc_poll reads (the log and the consumers), as cdc_poll would be.
Status CheckReadAuthorized(sqlite3* db, const char* fn) {
  for (const char* sql : {"SELECT * FROM main.__cdc_log", "SELECT * FROM main.__cdc_consumers"}) {
    Stmt probe;
    Status st = probe.Prepare(db, sql);
    if (!st.ok() && sqlite3_errcode(db) == SQLITE_AUTH) {
      return Status::Error(std::string(fn) + ": not authorized: this connection's authorizer denies reading the "
                           "change log (" + st.message() + "); a listener would read it through a connection of "
                           "its own");
    }
    // Out of memory or an I/O error while preparing: that is the answer too
    // (the caller's statement fails with it anyway).
    if (!st.ok() && (st.code() & 0xff) != SQLITE_ERROR) return st;
  }
  return Status();
}

// What cdc_listen and cdc_serve share: the arguments, the consumer, the
// listener's own connections and its signals. `callback` is the argument's
// kind: a cdc_callback pointer (cdc_listen) or a function name (cdc_serve).
Status Setup(sqlite3* db, const char* fn, int argc, sqlite3_value** argv, Listener* l) {
  CDC_RETURN_IF_ERROR(ArgText(fn, argv, 0, "consumer name", &l->name));
  if (argc > 2) CDC_RETURN_IF_ERROR(ParseOptions(fn, db, argv[2], &l->opt));
  l->file = MainFile(db);
  if (l->file.empty()) {
    return Status::Error(std::string(fn) +
                         ": the database is in memory or temporary: a listener needs its own connection to a "
                         "database file (use cdc_wait, cdc_poll and cdc_ack on this connection instead)");
  }
  CDC_RETURN_IF_ERROR(RequireWritable(db, fn));
  int64_t pos = 0;
  CDC_RETURN_IF_ERROR(ConsumerPosition(db, fn, l->name, &pos));
  CDC_RETURN_IF_ERROR(CheckReadAuthorized(db, fn));
  if (l->sql_callback) {
    Stmt probe;
    if (!probe.Prepare(db, "SELECT " + Ident(l->sql_fn) + "(NULL)").ok()) {
      return Status::Error(std::string(fn) + ": no SQL function " + Ident(l->sql_fn) +
                           " taking one argument is registered on this connection");
    }
  }
  ConnState* cs = FindConn(db);
  if (!cs) return Status::Error(std::string(fn) + ": the extension is not initialised on this connection");
  l->owner = cs;
  l->reg_db = db;

  CDC_RETURN_IF_ERROR(OpenOwn(db, l->file, SQLITE_OPEN_READWRITE, &l->stop, &l->db));
  CDC_RETURN_IF_ERROR(OpenOwn(db, l->file, SQLITE_OPEN_READWRITE, &l->stop, &l->ack_db));
  Status lst = l->lease.Open(l->file, l->name);
  if (!lst.ok()) return Status::Error(std::string(fn) + ": " + lst.message());
  // Acks need not be fsynced in WAL mode: one lost to a power cut only means
  // a batch is delivered again (at least once), and writers wait less.
  CDC_RETURN_IF_ERROR(Exec(l->ack_db, "PRAGMA synchronous=NORMAL"));
  Status cp = ConsumerPosition(l->db, fn, l->name, &pos);
  if (!cp.ok()) {
    if ((cp.code() & 0xff) != SQLITE_ERROR) return cp;  // out of memory, an I/O error: say so
    return Status::Error(std::string(fn) + ": consumer " + NameInMessage(l->name) +
                         " is not committed yet; commit the transaction that added it first");
  }
  Clock* clock = SystemClock();
  l->signals = std::make_unique<Combiner>(clock);
  if (l->opt.signals & Bit(kSrcWatch)) {
    auto w = std::make_unique<WatchSignal>();
    std::string err = w->Open(l->file);
    if (!err.empty()) return Status::Error(std::string(fn) + ": " + err + " (leave \"watch\" out of \"signals\")");
    l->signals->Add(std::move(w));
  }
  if (l->opt.signals & Bit(kSrcInterval)) {
    l->signals->Add(std::make_unique<IntervalSignal>(clock->NowUs(), l->opt.interval_ms * 1000));
  }
  if (l->opt.signals & Bit(kSrcCommit)) {
    auto c = std::make_unique<CommitSignal>();
    if (!c->ok()) return Status::Error(std::string(fn) + ": cannot create an eventfd");
    l->commit = c.get();
    l->signals->Add(std::move(c));
  }
  if (!l->stop.ok()) return Status::Error(std::string(fn) + ": cannot create an eventfd");
  return Status();
}

void CloseOwn(Listener* l) {
  sqlite3_close_v2(l->ack_db);
  l->ack_db = nullptr;
  sqlite3_close_v2(l->db);
  l->db = nullptr;
}

}  // namespace

void SqlListen(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  const char* fn = "cdc_listen";
  sqlite3* db = sqlite3_context_db_handle(ctx);
  Reap();
  auto l = std::make_shared<Listener>();
  Status st = ArgText(fn, argv, 0, "consumer name", &l->name);
  if (!st.ok()) return ResultError(ctx, st);
  // The callback: a cdc_callback pointer (include/cdc.h). An SQL function is
  // cdc_serve's: called from this background thread through the registering
  // connection, it deadlocks any host with a global lock (the host thread
  // holds the lock and waits for the connection; the listener holds the
  // connection and waits for the lock).
  if (auto* cb = static_cast<cdc_callback*>(sqlite3_value_pointer(argv[1], CDC_CALLBACK_TYPE))) {
    if ((cb->abi != 1 && cb->abi != CDC_CALLBACK_ABI) || !cb->fn) {
      return ResultError(ctx, Status::Error("cdc_listen: the cdc_callback has no function or an unknown abi"));
    }
    l->cb = *cb;
  } else if (sqlite3_value_type(argv[1]) == SQLITE_TEXT) {
    return ResultError(ctx, Status::Error(
        "cdc_listen: an SQL-function callback is called by cdc_serve, not cdc_listen: run SELECT cdc_serve(" +
        NameInMessage(l->name) + ", " + NameInMessage(ArgTextOr(argv[1])) +
        ") on a connection of its own, in a thread of its own (a background thread calling into this "
        "connection deadlocks hosts with a global lock such as Python's GIL; README \"Push delivery\")"));
  } else {
    return ResultError(ctx, Status::Error(
        "cdc_listen: callback must be a cdc_callback pointer bound with "
        "sqlite3_bind_pointer(..., \"cdc_callback\", ...) (include/cdc.h); for an SQL function use cdc_serve"));
  }
  // Until the thread owns them, the listener's connections are closed on
  // every way out, an exception (std::bad_alloc) included.
  bool started = false;
  struct CloseUnlessStarted {
    Listener* l;
    const bool& started;
    ~CloseUnlessStarted() {
      if (!started) CloseOwn(l);
    }
  } closer{l.get(), started};
  st = Setup(db, fn, argc, argv, l.get());
  if (st.ok()) st = Register(fn, l);
  if (st.ok()) {
    PinLibrary();
    try {
      l->thread = std::thread(Thread, l);
      started = true;
    } catch (const std::bad_alloc&) {
      Unregister(l);
      st = Status::Error("cdc_listen: out of memory", SQLITE_NOMEM);
    } catch (...) {
      Unregister(l);
      st = Status::Error("cdc_listen: cannot start a thread");
    }
  }
  if (!st.ok()) return ResultError(ctx, st);  // `closer` closes the connections
  InstallCommitHook(db, l.get());
  sqlite3_result_int(ctx, 1);
}

void SqlServe(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  const char* fn = "cdc_serve";
  sqlite3* db = sqlite3_context_db_handle(ctx);
  Reap();
  auto l = std::make_shared<Listener>();
  l->sql_callback = true;
  Status st = ArgText(fn, argv, 1, "callback (the name of an SQL function)", &l->sql_fn);
  if (st.ok() && std::strlen(l->sql_fn.c_str()) != l->sql_fn.size()) {
    st = Status::Error("cdc_serve: the callback name contains a NUL character");
  }
  if (st.ok()) st = Setup(db, fn, argc, argv, l.get());
  if (st.ok() && !sqlite3_get_autocommit(db)) {
    st = Status::Error(
        "cdc_serve: the connection is inside a transaction: the function's writes would commit only with "
        "it, after their batches were acked; call cdc_serve outside a transaction");
  }
  if (st.ok()) st = Register(fn, l);
  if (!st.ok()) {
    CloseOwn(l.get());
    return ResultError(ctx, st);
  }
  InstallCommitHook(db, l.get());
  struct Leave {  // also on a forced unwind out of the function
    std::shared_ptr<Listener> l;
    ~Leave() {
      l->done.store(true);
      Unregister(l);
    }
  } leave{l};
  Run(l.get());
  if (!l->fatal.ok()) return ResultError(ctx, l->fatal);
  std::lock_guard<std::mutex> g(l->mu);
  sqlite3_result_int64(ctx, static_cast<int64_t>(l->changes));
}

void SqlUnlisten(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const char* fn = "cdc_unlisten";
  sqlite3* db = sqlite3_context_db_handle(ctx);
  std::string name;
  Status st = ArgText(fn, argv, 0, "consumer name", &name);
  if (!st.ok()) return ResultError(ctx, st);
  std::string file = MainFile(db);
  std::shared_ptr<Listener> l;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (auto it = r.live.begin(); it != r.live.end(); ++it) {
      if (!file.empty() && (*it)->file == file && (*it)->name == name) {
        l = std::move(*it);
        r.live.erase(it);
        break;
      }
    }
  }
  if (!l) {
    return ResultError(ctx, Status::Error("cdc_unlisten: no listener for consumer " + NameInMessage(name) +
                                          " on this database (start one with cdc_listen)"));
  }
  // A cdc_serve is not waited for: its function may be waiting for this very
  // connection (and its thread for a host lock this thread holds); it
  // returns after the batch in hand.
  l->stop.Set();
  Finish(std::move(l));
  Reap();
  sqlite3_result_int(ctx, 1);
}

}  // namespace cdc
