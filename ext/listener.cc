// listener.cc — listeners (cdc_listen, cdc_serve) and cdc_wait (DESIGN §4).
//
//   SELECT cdc_listen('search', ?2 [, '{"batch": 100}']);  -- ?2: a C callback (include/cdc.h)
//   SELECT cdc_serve('search', 'on_changes' [, options]);  -- blocks; calls the SQL function here
//   SELECT cdc_unlisten('search');
//   SELECT cdc_wait('search', 5000);                       -- pending count, 0 on timeout
//
// How it works. A listener has its own connection to the registering
// connection's database file. Its loop runs on a thread of its own
// (cdc_listen) or on the thread that called cdc_serve:
//   0. Take the consumer's lease (lease.h) or stand by: one active reader
//      per consumer across processes.
//   1. PRAGMA data_version on its own connection: a change means another
//      connection committed since the last look (the acker's commits count
//      too: that read finds nothing new), so the log needs reading. The first
//      pass always reads (drain on start).
//   2. Read at most `batch` events after the consumer's position (LogCursor),
//      call the callback, and on success hand the batch's last id to the
//      acker. On failure retry the same batch after 10 ms, 20 ms, ... capped
//      at retry_max_ms; never skip. Repeat until a read finds nothing.
//      The next batch starts after the last delivered id, acked or not.
//      A consumer dropped or re-created meanwhile stops the listener.
//   The acker is a second thread with a second connection: it acks the
//   newest delivered id (AckNoWait: position and pruning, one short write
//   transaction), coalescing batches delivered meanwhile. So the reading
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
#include "listener.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <cxxabi.h>
#include <dlfcn.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cdc.h"
#include "delivery.h"
#include "drift.h"
#include "json.h"
#include "lease.h"
#include "retention.h"
#include "signals.h"

namespace cdc {

namespace {

constexpr unsigned kAllSignals = (1u << kSrcWatch) | (1u << kSrcInterval) | (1u << kSrcCommit);
// cdc_wait timeouts above this are capped (one day).
constexpr int64_t kMaxWaitMs = 86400000;

struct Options {
  unsigned signals = kAllSignals;
  int64_t interval_ms = 250;
  int64_t batch = 256;
  int64_t retry_max_ms = 5000;
};

struct ConnState {
  sqlite3* db = nullptr;
  bool hook = false;  // our commit hook is installed on db
};

struct Listener {
  // Fixed before the thread starts.
  ConnState* owner = nullptr;
  sqlite3* reg_db = nullptr;  // the registering connection
  std::string file, name;
  Options opt;
  bool sql_callback = false;  // cdc_serve: an SQL function, called on the caller's thread
  std::string sql_fn;
  cdc_callback cb{};
  sqlite3* db = nullptr;  // the listener's own connection (its thread only)
  StopFlag stop;
  int64_t delivered = 0;  // newest id handed to the callback (listener thread only)
  // The consumer's created_ms at the first read: tells it from a consumer of
  // the same name made later (listener thread only).
  int64_t created_ms = 0;
  bool have_created = false;
  // Batch storage, reused from batch to batch so that a steady drain
  // allocates nothing per event (listener thread only).
  std::vector<Event> slots;
  SchemaSeen schema_seen;  // drift.cc's memory for `db` (listener thread only)

  // The acker (see the top of this file).
  sqlite3* ack_db = nullptr;  // its own connection (acker thread only)
  std::mutex ack_mu;
  std::condition_variable ack_cv;
  int64_t ack_want = 0;   // newest delivered id; guarded by ack_mu
  int64_t ack_done = 0;   // newest acked id; guarded by ack_mu
  uint64_t ack_gen = 0;   // bumped when the consumer was re-created; guarded by ack_mu
  std::chrono::steady_clock::time_point ack_posted_at;  // of ack_want; guarded by ack_mu
  bool ack_quit = false;  // guarded by ack_mu
  CommitSignal* commit = nullptr;  // owned by signals; Notify()'d by the hook
  // The consumer's lease across processes (lease.h): reads and delivers only
  // while it holds it; a standby until then.
  Lease lease;
  std::unique_ptr<Combiner> signals;
  std::thread thread;
  std::atomic<bool> done{false};
  // Why the loop stopped by itself (consumer dropped, a change too big, ...);
  // written by the loop's thread before `done`.
  Status fatal;

  // Counters for cdc_status().
  std::mutex mu;
  const char* state = "starting";
  uint64_t wakes[kSrcCount] = {};
  uint64_t batches = 0, changes = 0, retries = 0;
  std::string last_error;
  int64_t position = 0;
};

struct Registry {
  std::mutex mu;
  std::vector<std::shared_ptr<Listener>> live;     // running, found by name
  std::vector<std::shared_ptr<Listener>> zombies;  // stopped from their own thread
  std::map<sqlite3*, ConnState*> conns;
};

// Never destroyed: listener threads may outlive static destruction at exit.
Registry& Reg() {
  static Registry* r = new Registry;
  return *r;
}

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

int64_t BackoffUs(int attempt, int64_t max_ms) {
  int64_t ms = 10;
  for (int i = 0; i < attempt && ms < max_ms; i++) ms *= 2;
  return std::min(ms, max_ms) * 1000;
}

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

// The first re-checks after a wake are tens of microseconds apart (signals.h);
// the default 50 us timer slack of a Linux thread would stretch each of them.
// Sets 1 us for the calling thread while alive, then restores the old value.
class FineTimerSlack {
 public:
  FineTimerSlack() {
#ifdef __linux__
    int old = prctl(PR_GET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL);
    if (old > 0 && prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL) == 0) old_ = old;
#endif
  }
  ~FineTimerSlack() {
#ifdef __linux__
    if (old_ > 0) prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(old_), 0UL, 0UL, 0UL);
#endif
  }
  FineTimerSlack(const FineTimerSlack&) = delete;
  FineTimerSlack& operator=(const FineTimerSlack&) = delete;

 private:
  int old_ = 0;
};

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
    if (rc == SQLITE_ROW) {
      if (sqlite3_column_type(s, 0) == SQLITE_NULL || sqlite3_column_double(s, 0) == 0.0) {
        st = Status::Error(l->sql_fn + " returned a false value");
      }
    } else {
      st = Status::FromDb(l->reg_db, l->sql_fn);
    }
  }
  sqlite3_finalize(s);
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

// The acker commits at most this often. Each ack commit costs the listener a
// wake and an empty read (it is another connection's commit), and holds the
// write lock: a writer with no busy timeout that comes meanwhile fails.
// Positions (and what a crash could deliver again) stay at most kAckEvery +
// kAckFlush behind.
constexpr std::chrono::milliseconds kAckEvery{250};
// When an ack left rows to prune (an older backlog), the next prune follows
// a delivery at least this much later.
constexpr std::chrono::milliseconds kPruneEvery{20};
// Log rows one ack commit prunes beyond those it passed (an older backlog,
// e.g. left by a dropped or invalidated consumer): about 1 us each
// (SECURE_DELETE), short enough to fit between a paced writer's commits.
constexpr int64_t kAckPruneRows = 256;
constexpr std::chrono::milliseconds kAckFlush{40};
// After the write lock was found taken, the next try waits for the next
// delivery (its writer has just committed) at least this long.
constexpr std::chrono::milliseconds kAckRetry{2};
// While the reader retries a failed read, the acker checks this often
// whether the consumer was invalidated (StopIfLost).
constexpr std::chrono::milliseconds kLostCheck{250};
// A stopping listener's last ack tries this often, 1 ms apart.
constexpr int kAckTriesAtStop = 50;

// Hands a delivered id to the acker.
void PostAck(Listener* l, int64_t id) {
  std::lock_guard<std::mutex> g(l->ack_mu);
  if (id > l->ack_want) {
    l->ack_want = id;
    l->ack_posted_at = std::chrono::steady_clock::now();
    l->ack_cv.notify_one();
  }
}

// A listener whose consumer retention invalidated (retention.h) stops, with
// the error that says so and how to recover as its last error. Checked by
// the acker after a failed ack, and while the reader retries a failed read.
bool StopIfLost(Listener* l) noexcept {
  try {
    std::string reason;
    if (!LostReason(l->ack_db, l->name, &reason).ok() || reason.empty()) return false;
    NoteError(l, LostError("cdc_listen", l->name, reason), false);
  } catch (const std::bad_alloc&) {  // out of memory: not known to be lost; asked again later
    return false;
  }
  l->stop.Set();
  return true;
}

// The acker thread: acks the newest delivered id until told to quit, then
// makes one last attempt. It never waits for the write lock (no busy
// handler: AckNoWait takes the lock only when it is free, else tries again
// after the next delivery), and each ack prunes a bounded chunk, so it never
// keeps an application's writer waiting long, nor makes one with no busy
// timeout fail more than rarely.
void Acker(Listener* l) noexcept {
  std::unique_ptr<StmtCache> cache;
  try {
    cache = std::make_unique<StmtCache>(l->ack_db);
  } catch (const std::bad_alloc&) {  // works without it, parsing every time
  }
  sqlite3_busy_handler(l->ack_db, nullptr, nullptr);
  int attempt = 0, stop_tries = 0;
  bool more = false;  // the last ack left rows that can be pruned now
  auto next_commit = std::chrono::steady_clock::now();
  for (;;) {
    int64_t want = 0;
    uint64_t gen = 0;
    bool quit = false;
    {
      std::unique_lock<std::mutex> g(l->ack_mu);
      while (!l->ack_cv.wait_for(g, kLostCheck, [&] { return l->ack_quit || l->ack_want > l->ack_done || more; })) {
        g.unlock();  // never both locks at once
        bool retrying = false;
        {
          std::lock_guard<std::mutex> m(l->mu);
          retrying = std::strcmp(l->state, "retrying") == 0;
        }
        const bool lost = retrying && StopIfLost(l);
        g.lock();
        if (lost) {
          l->ack_cv.wait(g, [&] { return l->ack_quit; });
          return;
        }
      }
      if (!l->ack_quit && std::chrono::steady_clock::now() < next_commit) {
        // At most one ack commit per kAckEvery, made right after a delivery
        // (whoever committed what was delivered has just released the write
        // lock, so the ack is unlikely to meet a writer), or kAckFlush later
        // when no delivery comes. A stop acks at once.
        l->ack_cv.wait_until(g, next_commit + kAckFlush,
                             [&] { return l->ack_quit || l->ack_posted_at >= next_commit; });
      }
      want = l->ack_want;
      gen = l->ack_gen;
      quit = l->ack_quit;
      if (want <= l->ack_done && (quit || !more)) {  // nothing left to do (or the consumer was re-created)
        if (quit) return;
        continue;
      }
    }
    int64_t pos = 0;
    bool busy = false, left = false;
    Status st;
    try {
      st = AckNoWait(l->ack_db, "cdc_listen", l->name, want, kAckPruneRows, &pos, &busy, &left);
    } catch (const std::bad_alloc&) {  // the Savepoint rolled back: retried like any error
      st = Status::Error("out of memory", SQLITE_NOMEM);
    }
    if (st.ok() && busy) {
      if (quit) {
        if (++stop_tries >= kAckTriesAtStop) return;  // the rest is delivered again later
        usleep(1000);
      } else {
        next_commit = std::chrono::steady_clock::now() + kAckRetry;
      }
      continue;
    }
    if (st.ok()) {
      attempt = 0;
      more = left;
      next_commit = std::chrono::steady_clock::now() + (more ? kPruneEvery : kAckEvery);
      {
        std::lock_guard<std::mutex> g(l->mu);
        l->position = pos;
      }
      std::lock_guard<std::mutex> g(l->ack_mu);
      if (gen == l->ack_gen) l->ack_done = std::max(l->ack_done, want);
      continue;
    }
    more = false;
    if (StopIfLost(l)) {
      std::unique_lock<std::mutex> g(l->ack_mu);
      l->ack_cv.wait(g, [&] { return l->ack_quit; });
      return;
    }
    NoteError(l, st.message(), true);
    if (quit) return;  // that was the last attempt: the rest is delivered again later
    if (!l->stop.SleepUs(BackoffUs(attempt++, l->opt.retry_max_ms))) {
      std::unique_lock<std::mutex> g(l->ack_mu);  // stopping: wait for the quit, then try once more
      l->ack_cv.wait(g, [&] { return l->ack_quit; });
    }
  }
}

// The consumer's position, and whether it is still the consumer the listener
// started with (*same). A consumer dropped and added again, or re-created
// after cdc_teardown() and a new setup (whose ids start again at 1), is
// another one: its created_ms differs, or its position went back.
Status ReadConsumer(Listener* l, int64_t* pos, bool* same) {
  Stmt st;
  Status prep = st.Prepare(l->db, "SELECT pos, created_ms FROM main.__cdc_consumers WHERE name = ?1");
  if (!prep.ok()) {
    // Out of memory, an I/O error: retried, not taken for a dropped consumer.
    if ((prep.code() & 0xff) != SQLITE_ERROR || InternalTablesExist(l->db)) return prep;
    *same = false;
    return Status();
  }
  st.Bind(1, l->name);
  int rc = st.Step();
  if (rc == SQLITE_DONE) {
    *same = false;
    return Status();
  }
  if (rc != SQLITE_ROW) return Status::FromDb(l->db, "cdc_listen");
  *pos = st.Int(0);
  const int64_t created = st.Int(1);
  if (!l->have_created) {
    l->created_ms = created;
    l->have_created = true;
  }
  *same = created == l->created_ms;
  st = Stmt();
  // Invalidated by retention: reading fails with why, and the acker, seeing
  // the listener retry, stops it with that error (StopIfLost).
  std::string reason;
  CDC_RETURN_IF_ERROR(LostReason(l->db, l->name, &reason));
  if (!reason.empty()) return Status::Error(LostError("cdc_listen", l->name, reason));
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
  LogCursor cur;
  CDC_RETURN_IF_ERROR(cur.Open(l->db, r));
  for (;;) {
    if (*count == slots->size()) slots->emplace_back();
    bool have = false;
    CDC_RETURN_IF_ERROR(cur.Next(&have, &(*slots)[*count]));
    if (!have) return Status();
    ++*count;
  }
}

// Reads and delivers batches until a read finds nothing or the listener stops.
Status Drain(Listener* l, bool* found) {
  std::vector<Event>& slots = l->slots;
  size_t count = 0;
  while (!l->stop.IsSet()) {
    SetState(l, "reading");
    CDC_RETURN_IF_ERROR(CheckCapture(l->db, "cdc_listen", &l->schema_seen));
    // One read transaction for the position and the batch: the statements
    // share one snapshot and one WAL read lock instead of taking their own.
    // (One left open by an out-of-memory exception is ended first.)
    if (!sqlite3_get_autocommit(l->db)) sqlite3_exec(l->db, "ROLLBACK", nullptr, nullptr, nullptr);
    CDC_RETURN_IF_ERROR(Exec(l->db, "BEGIN"));
    Status st = ReadBatch(l, &slots, &count);
    Status end = Exec(l->db, "COMMIT");  // a read-only transaction: releases the snapshot
    CDC_RETURN_IF_ERROR(st);
    CDC_RETURN_IF_ERROR(end);
    if (count == 0) return Status();
    *found = true;
    size_t used = Deliver(l, slots.data(), count);
    if (used == 0) return Status();
    l->delivered = slots[used - 1].id;
    PostAck(l, l->delivered);
  }
  return Status();
}

void Loop(Listener* l) {
  Stmt dv;
  int64_t last_dv = -1;
  bool force = true;  // drain on start
  int read_errors = 0;
  while (!l->stop.IsSet()) {
    if (!l->lease.TryTake()) {  // a standby: another listener delivers
      SetState(l, "standby");
      if (!l->stop.SleepUs(20000)) break;
      force = true;
      continue;
    }
    int64_t v = -1;
    Status st = DataVersion(&dv, l->db, &v);
    bool found = false;
    if (force || !st.ok() || v != last_dv) {
      last_dv = v;
      st = Drain(l, &found);
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
    l->signals->AfterRead(found);
    SetState(l, "idle");
    bool stopped = false;
    unsigned mask = l->signals->Wait(kNever, l->stop.fd(), &stopped);
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

// --- registry helpers --------------------------------------------------------

int CommitHook(void* state) noexcept {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  for (const auto& l : r.live) {
    if (l->owner == state && l->commit) l->commit->Notify();
  }
  return 0;  // never turn the commit into a rollback
}

// Joins a stopped listener's thread, or, when called from that very thread
// (cdc_unlisten inside the callback), leaves it to be joined later.
void Finish(std::shared_ptr<Listener> l) {
  if (!l->thread.joinable()) return;
  if (l->thread.get_id() == std::this_thread::get_id()) {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    r.zombies.push_back(std::move(l));
    return;
  }
  l->thread.join();
}

// Joins zombies whose thread has finished.
void Reap() {
  std::vector<std::shared_ptr<Listener>> done;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (auto it = r.zombies.begin(); it != r.zombies.end();) {
      if ((*it)->done.load()) {
        done.push_back(std::move(*it));
        it = r.zombies.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& l : done) {
    if (l->thread.joinable()) l->thread.join();
  }
}

ConnState* FindConn(sqlite3* db) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = r.conns.find(db);
  return it == r.conns.end() ? nullptr : it->second;
}

// The thread owns a reference: a listener detached at close outlives its list.
void Thread(std::shared_ptr<Listener> l) { Run(l.get()); }

}  // namespace

// An argument's text, or "" (for messages only).
std::string ArgTextOr(sqlite3_value* v) {
  const unsigned char* t = sqlite3_value_type(v) == SQLITE_TEXT ? sqlite3_value_text(v) : nullptr;
  return t ? reinterpret_cast<const char*>(t) : "";
}

// --- connection state ---------------------------------------------------------

void* NewConnectionState(sqlite3* db) {
  auto* cs = new ConnState;
  cs->db = db;
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  r.conns[db] = cs;
  return cs;
}

void DestroyConnectionState(void* p) {
  auto* cs = static_cast<ConnState*>(p);
  std::vector<std::shared_ptr<Listener>> mine;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (auto* v : {&r.live, &r.zombies}) {
      for (auto it = v->begin(); it != v->end();) {
        if ((*it)->owner == cs) {
          mine.push_back(std::move(*it));
          it = v->erase(it);
        } else {
          ++it;
        }
      }
    }
    auto it = r.conns.find(cs->db);
    if (it != r.conns.end() && it->second == cs) r.conns.erase(it);
  }
  for (auto& l : mine) l->stop.Set();  // all first: they stop in parallel
  for (auto& l : mine) {
    if (!l->thread.joinable()) continue;
    if (l->thread.get_id() == std::this_thread::get_id()) {
      l->thread.detach();  // closed from inside its own callback
    } else {
      l->thread.join();
    }
  }
  if (cs->hook) sqlite3_commit_hook(cs->db, nullptr, nullptr);
  delete cs;
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

// Adds l to the live listeners unless its consumer already has one here (a
// listener that stopped by itself gives its place up).
Status Register(const char* fn, const std::shared_ptr<Listener>& l) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  for (auto it = r.live.begin(); it != r.live.end(); ++it) {
    if ((*it)->file != l->file || (*it)->name != l->name) continue;
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) r.zombies.push_back(*it);  // joined by Reap()
      r.live.erase(it);
      break;
    }
    return Status::Error(std::string(fn) + ": consumer " + NameInMessage(l->name) +
                         " already has a listener in this process (stop it with SELECT cdc_unlisten(" +
                         NameInMessage(l->name) + "))");
  }
  r.live.push_back(l);
  return Status();
}

void Unregister(const std::shared_ptr<Listener>& l) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = std::find(r.live.begin(), r.live.end(), l);
  if (it != r.live.end()) r.live.erase(it);
}

void CloseOwn(Listener* l) {
  sqlite3_close_v2(l->ack_db);
  l->ack_db = nullptr;
  sqlite3_close_v2(l->db);
  l->db = nullptr;
}

void InstallCommitHook(sqlite3* db, Listener* l) {
  if ((l->opt.signals & Bit(kSrcCommit)) && !l->owner->hook) {
    sqlite3_commit_hook(db, CommitHook, l->owner);
    l->owner->hook = true;
  }
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

void SqlWait(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const char* fn = "cdc_wait";
  sqlite3* db = sqlite3_context_db_handle(ctx);
  std::string name;
  int64_t timeout = 0;
  Status st = ArgText(fn, argv, 0, "consumer name", &name);
  if (st.ok()) st = ArgInt(fn, argv, 1, "timeout_ms", &timeout);
  if (st.ok() && timeout < 0) st = Status::Error("cdc_wait: timeout_ms must not be negative");
  int64_t pos = 0, pending = 0;
  if (st.ok()) st = ConsumerPosition(db, fn, name, &pos);
  if (st.ok()) st = CheckCapture(db, fn);
  if (st.ok()) st = PendingCount(db, pos, &pending);
  if (!st.ok()) return ResultError(ctx, st);
  if (pending > 0 || timeout == 0) return sqlite3_result_int64(ctx, pending);
  timeout = std::min(timeout, kMaxWaitMs);
  Clock* clock = SystemClock();
  const int64_t until = clock->NowUs() + timeout * 1000;
  std::string file = MainFile(db);
  if (file.empty()) {
    // In memory: nothing else can write while this connection is busy here,
    // short of shared cache; look every 10 ms.
    while (pending == 0 && clock->NowUs() < until) {
      usleep(static_cast<useconds_t>(std::min<int64_t>(10000, until - clock->NowUs())));
      st = ConsumerPosition(db, fn, name, &pos);
      if (st.ok()) st = PendingCount(db, pos, &pending);
      if (!st.ok()) return ResultError(ctx, st);
    }
    return sqlite3_result_int64(ctx, pending);
  }
  // A private read-only connection sees every commit as soon as it is
  // visible, whatever snapshot the caller's connection holds.
  sqlite3* own = nullptr;
  st = OpenOwn(db, file, SQLITE_OPEN_READONLY, nullptr, &own);
  if (!st.ok()) return ResultError(ctx, Status::Error("cdc_wait: " + st.message(), st.code()));
  struct Closer {
    sqlite3* db;
    ~Closer() { sqlite3_close_v2(db); }  // also when an allocation below throws
  } closer{own};
  Combiner signals(clock);
  auto w = std::make_unique<WatchSignal>();
  if (w->Open(file).empty()) signals.Add(std::move(w));  // else the interval still works
  signals.Add(std::make_unique<IntervalSignal>(clock->NowUs(), 250000));
  {
    FineTimerSlack slack;  // the caller's thread, for the duration of the wait
    Stmt dv;
    int64_t last_dv = -1, first_sv = -1;
    for (;;) {
      int64_t v = -1;
      Status d = DataVersion(&dv, own, &v);
      if (!d.ok() || v != last_dv) {
        last_dv = v;
        st = ConsumerPosition(own, fn, name, &pos);
        if (st.ok()) st = PendingCount(own, pos, &pending);
        if (!st.ok() || pending > 0) break;
        // A schema change with no event (DROP TABLE): the caller's
        // connection looks at it below, and may heal it with a resync.
        int64_t sv = 0;
        if (QueryInt(own, "PRAGMA main.schema_version", &sv).ok()) {
          if (first_sv < 0) first_sv = sv;
          if (sv != first_sv) break;
        }
      }
      signals.AfterRead(false);
      if (clock->NowUs() >= until) break;
      bool stopped = false;
      signals.Wait(until, -1, &stopped);
    }
  }
  if (st.ok() && pending == 0) {
    st = CheckCapture(db, fn);
    if (st.ok()) st = ConsumerPosition(db, fn, name, &pos);
    if (st.ok()) st = PendingCount(db, pos, &pending);
  }
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, pending);
}

// --- cdc_status --------------------------------------------------------------------

void AppendListenersJson(sqlite3* db, std::string* out) {
  std::string file = MainFile(db);
  std::vector<std::shared_ptr<Listener>> ls;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (const auto& l : r.live) {
      if (!file.empty() && l->file == file) ls.push_back(l);
    }
  }
  std::sort(ls.begin(), ls.end(), [](const auto& a, const auto& b) { return a->name < b->name; });
  out->push_back('[');
  for (size_t i = 0; i < ls.size(); i++) {
    Listener* l = ls[i].get();
    if (i) out->push_back(',');
    out->append("{\"consumer\":");
    JsonString(out, l->name);
    out->append(",\"callback\":");
    if (l->sql_callback) {
      JsonString(out, "sql:" + l->sql_fn);
    } else {
      out->append("\"c\"");
    }
    out->append(",\"signals\":[");
    bool first = true;
    for (int s : {kSrcWatch, kSrcInterval, kSrcCommit}) {
      if (!(l->opt.signals & Bit(s))) continue;
      if (!first) out->push_back(',');
      first = false;
      out->append("\"").append(SourceName(s)).append("\"");
    }
    out->append("]");
    out->append(",\"interval_ms\":");
    JsonInt(out, l->opt.interval_ms);
    out->append(",\"batch\":");
    JsonInt(out, l->opt.batch);
    std::lock_guard<std::mutex> g(l->mu);
    out->append(",\"state\":\"").append(l->state).append("\",\"position\":");
    JsonInt(out, l->position);
    out->append(",\"wakes\":{");
    for (int s = 0; s < kSrcCount; s++) {
      if (s) out->push_back(',');
      out->append("\"").append(SourceName(s)).append("\":");
      JsonInt(out, static_cast<int64_t>(l->wakes[s]));
    }
    out->append("},\"batches\":");
    JsonInt(out, static_cast<int64_t>(l->batches));
    out->append(",\"changes\":");
    JsonInt(out, static_cast<int64_t>(l->changes));
    out->append(",\"retries\":");
    JsonInt(out, static_cast<int64_t>(l->retries));
    out->append(",\"last_error\":");
    if (l->last_error.empty()) {
      out->append("null");
    } else {
      JsonString(out, l->last_error);
    }
    out->append(",\"remote\":false,\"pid\":");
    JsonInt(out, static_cast<int64_t>(getpid()));
    out->append(",\"lease\":");
    if (l->done.load()) {
      out->append("null");
    } else if (l->lease.held()) {
      out->append("\"held\"");
    } else {
      LeaseHolder h = ReadLeaseHolder(l->file, l->name);
      JsonString(out, h.live ? "standby (held by " + DescribeHolder(h) + ")" : "standby");
    }
    out->push_back('}');
  }
  // Listeners of other processes, seen through their consumers' leases.
  Stmt names;
  if (!file.empty() && InternalTablesExist(db) &&
      names.Prepare(db, "SELECT name FROM main.__cdc_consumers ORDER BY name").ok()) {
    while (names.Step() == SQLITE_ROW) {
      const std::string name = names.Text(0);
      bool mine = false;
      for (const auto& l : ls) mine = mine || (l->name == name && l->lease.held());
      if (mine) continue;
      LeaseHolder h = ReadLeaseHolder(file, name);
      if (!h.live) continue;
      if (out->back() != '[') out->push_back(',');
      out->append("{\"consumer\":");
      JsonString(out, name);
      out->append(",\"remote\":true,\"pid\":");
      JsonInt(out, h.pid);
      out->append(",\"host\":");
      JsonString(out, h.host);
      out->append(",\"lease\":\"held\"}");
    }
  }
  out->push_back(']');
}

}  // namespace cdc
