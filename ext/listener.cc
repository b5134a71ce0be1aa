// listener.cc — background listeners and cdc_wait (DESIGN §4).
//
//   SELECT cdc_listen('search', 'on_changes');                 -- SQL function callback
//   SELECT cdc_listen('search', 'on_changes', '{"batch": 100}');
//   SELECT cdc_unlisten('search');
//   SELECT cdc_wait('search', 5000);                           -- pending count, 0 on timeout
//   (C callbacks: include/cdc.h binds a cdc_callback with sqlite3_bind_pointer.)
//
// How it works. A listener is a thread with its own connection to the
// registering connection's database file. It loops:
//   1. PRAGMA data_version on its own connection: a change means another
//      connection committed since the last look (the acker's commits count
//      too: that read finds nothing new), so the log needs reading. The first pass always reads (drain on start).
//   2. Read at most `batch` events after the consumer's position (LogCursor),
//      call the callback, and on success hand the batch's last id to the
//      acker. On failure retry the same batch after 10 ms, 20 ms, ... capped
//      at retry_max_ms; never skip. Repeat until a read finds nothing.
//      The next batch starts after the last delivered id, acked or not.
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
// Threads and locks. Lock order: a connection's mutex, then the registry
// mutex, then a listener's stats mutex. Nobody holds the registry mutex while
// joining a thread. A listener never blocks on the registering connection's
// mutex (needed to call an SQL-function callback through that connection):
// it polls it with sqlite3_mutex_try and sleeps on its stop flag in between,
// because whoever holds that mutex may be stopping this very listener
// (cdc_unlisten, sqlite3_close). cdc_unlisten from the listener's own thread
// (inside the callback) sets the stop flag and leaves the thread to finish;
// it is joined later (next cdc_listen/cdc_unlisten, or at connection close).
//
// Lifetime. cdc_unlisten's pApp is a per-connection state whose destructor
// SQLite calls when the connection closes (before the extension is
// unloaded): it stops and joins that connection's listeners.
#include "listener.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
#include "json.h"
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
  bool sql_callback = false;
  std::string sql_fn;
  cdc_callback cb{};
  sqlite3* db = nullptr;  // the listener's own connection (its thread only)
  StopFlag stop;
  int64_t delivered = 0;  // newest id handed to the callback (listener thread only)
  // Batch storage, reused from batch to batch so that a steady drain
  // allocates nothing per event (listener thread only).
  std::vector<Event> slots;

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
  std::unique_ptr<Combiner> signals;
  std::thread thread;
  std::atomic<bool> done{false};

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

void NoteError(Listener* l, const std::string& msg, bool retry) {
  std::lock_guard<std::mutex> g(l->mu);
  l->last_error = msg;
  if (retry) {
    l->retries++;
    l->state = "retrying";
  }
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
    return Status::Error("cannot open " + file + ": " + msg);
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

Status IntOption(const std::string& key, const std::string& type, int64_t v, int64_t lo, int64_t hi,
                 int64_t* out) {
  if (type != "integer" || v < lo || v > hi) {
    return Status::Error("cdc_listen: option \"" + key + "\" must be an integer from " +
                         std::to_string(lo) + " to " + std::to_string(hi));
  }
  *out = v;
  return Status();
}

Status ParseOptions(sqlite3* db, sqlite3_value* v, Options* o) {
  const char* kUsage = " (e.g. '{\"signals\": [\"watch\", \"interval\"], \"interval_ms\": 250, \"batch\": 256}')";
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    return Status::Error(std::string("cdc_listen: options must be JSON object text") + kUsage);
  }
  std::string text(reinterpret_cast<const char*>(sqlite3_value_text(v)),
                   static_cast<size_t>(sqlite3_value_bytes(v)));
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT json_valid(?1), CASE WHEN json_valid(?1) THEN json_type(?1) END"));
  st.Bind(1, text);
  if (st.Step() != SQLITE_ROW) return Status::FromDb(db, "cdc_listen");
  if (st.Int(0) != 1) return Status::Error(std::string("cdc_listen: options is not valid JSON") + kUsage);
  if (st.Text(1) != "object") {
    return Status::Error(std::string("cdc_listen: options must be a JSON object") + kUsage);
  }
  st = Stmt();
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT key, type, atom FROM json_each(?1)"));
  st.Bind(1, text);
  std::set<std::string> seen;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    std::string key = st.Text(0), type = st.Text(1);
    if (!seen.insert(key).second) {
      return Status::Error("cdc_listen: option \"" + key + "\" is given twice");
    }
    if (key == "signals") {
      const std::string kNames = "\"watch\", \"interval\", \"commit\"";
      if (type != "array") {
        return Status::Error("cdc_listen: option \"signals\" must be an array of " + kNames);
      }
      Stmt el;
      CDC_RETURN_IF_ERROR(el.Prepare(db, "SELECT type, atom FROM json_each(?1, '$.signals')"));
      el.Bind(1, text);
      unsigned mask = 0;
      int erc;
      while ((erc = el.Step()) == SQLITE_ROW) {
        std::string s = el.Text(1);
        int src = s == "watch" ? kSrcWatch : s == "interval" ? kSrcInterval : s == "commit" ? kSrcCommit : -1;
        if (el.Text(0) != "text" || src < 0) {
          return Status::Error("cdc_listen: unknown signal " + (el.Text(0) == "text" ? "\"" + s + "\"" : s) +
                               " (known: " + kNames + ")");
        }
        if (mask & Bit(src)) return Status::Error("cdc_listen: signal \"" + s + "\" is listed twice");
        mask |= Bit(src);
      }
      if (erc != SQLITE_DONE) return Status::FromDb(db, "cdc_listen");
      if (!mask) return Status::Error("cdc_listen: option \"signals\" must name at least one of " + kNames);
      o->signals = mask;
    } else if (key == "interval_ms") {
      CDC_RETURN_IF_ERROR(IntOption(key, type, st.Int(2), 1, 3600000, &o->interval_ms));
    } else if (key == "batch") {
      CDC_RETURN_IF_ERROR(IntOption(key, type, st.Int(2), 1, 1000000, &o->batch));
    } else if (key == "retry_max_ms") {
      CDC_RETURN_IF_ERROR(IntOption(key, type, st.Int(2), 1, 3600000, &o->retry_max_ms));
    } else {
      return Status::Error("cdc_listen: unknown option \"" + key +
                           "\" (known: signals, interval_ms, batch, retry_max_ms)");
    }
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_listen");
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

// Calls the C callback with the batch.
Status CallC(Listener* l, const Event* batch, size_t n) {
  std::vector<cdc_change> arr(n);
  for (size_t i = 0; i < n; i++) {
    const Event& e = batch[i];
    arr[i].id = e.id;
    arr[i].ts = e.ts;
    arr[i].table = e.table.c_str();
    arr[i].op = OpName(e.op);
    arr[i].before = e.has_before ? e.before.c_str() : nullptr;
    arr[i].after = e.has_after ? e.after.c_str() : nullptr;
  }
  int rc;
  try {
    rc = l->cb.fn(l->cb.user_data, arr.data(), static_cast<int>(n));
  } catch (...) {
    return Status::Error("callback threw an exception");
  }
  if (rc != 0) return Status::Error("callback returned " + std::to_string(rc));
  return Status();
}

// Calls the SQL function through the registering connection. *stopped is set
// when the listener was stopped while waiting for that connection.
Status CallSql(Listener* l, const Event* batch, size_t n, bool* stopped) {
  std::string json = "[";
  for (size_t i = 0; i < n; i++) {
    if (i) json.push_back(',');
    EventJson(&json, batch[i]);
  }
  json.push_back(']');
  sqlite3_mutex* m = sqlite3_db_mutex(l->reg_db);
  int64_t nap = 20;
  while (sqlite3_mutex_try(m) != SQLITE_OK) {
    if (!l->stop.SleepUs(nap)) {
      *stopped = true;
      return Status::Error("stopped");
    }
    nap = std::min<int64_t>(nap * 2, 2000);
  }
  Status st;
  sqlite3_stmt* s = nullptr;
  std::string sql = "SELECT " + Ident(l->sql_fn) + "(?1)";
  if (sqlite3_prepare_v2(l->reg_db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
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
  sqlite3_mutex_leave(m);
  return st;
}

// Delivers one batch, retrying until it is handled. False when stopped first.
bool Deliver(Listener* l, const Event* batch, size_t n) {
  for (int attempt = 0;; attempt++) {
    if (l->stop.IsSet()) return false;
    SetState(l, "delivering");
    bool stopped = false;
    Status st = l->sql_callback ? CallSql(l, batch, n, &stopped) : CallC(l, batch, n);
    if (stopped) return false;
    if (st.ok()) {
      std::lock_guard<std::mutex> g(l->mu);
      l->batches++;
      l->changes += n;
      return true;
    }
    NoteError(l, st.message(), true);
    if (!l->stop.SleepUs(BackoffUs(attempt, l->opt.retry_max_ms))) return false;
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
bool StopIfLost(Listener* l) {
  std::string reason;
  if (!LostReason(l->ack_db, l->name, &reason).ok() || reason.empty()) return false;
  NoteError(l, LostError("cdc_listen", l->name, reason), false);
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
  StmtCache cache(l->ack_db);
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
    Status st = AckNoWait(l->ack_db, "cdc_listen", l->name, want, kAckPruneRows, &pos, &busy, &left);
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
  CDC_RETURN_IF_ERROR(ConsumerPosition(l->db, "cdc_listen", l->name, &pos));
  // Positions only move forward, so the snapshot's position is at least
  // `acked`, unless the consumer was dropped and added again meanwhile: then
  // start where it now stands, and forget what was waiting to be acked.
  const bool recreated = pos < acked;
  if (recreated) {
    std::lock_guard<std::mutex> g(l->ack_mu);
    l->ack_gen++;
    l->ack_done = l->ack_want = l->delivered = pos;
  }
  {
    std::lock_guard<std::mutex> g(l->mu);  // cdc_status: the acked position
    l->position = recreated ? pos : std::max(l->position, pos);
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
    // One read transaction for the position and the batch: the statements
    // share one snapshot and one WAL read lock instead of taking their own.
    CDC_RETURN_IF_ERROR(Exec(l->db, "BEGIN"));
    Status st = ReadBatch(l, &slots, &count);
    Status end = Exec(l->db, "COMMIT");  // a read-only transaction: releases the snapshot
    CDC_RETURN_IF_ERROR(st);
    CDC_RETURN_IF_ERROR(end);
    if (count == 0) return Status();
    *found = true;
    if (!Deliver(l, slots.data(), count)) return Status();
    l->delivered = slots[count - 1].id;
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
    int64_t v = -1;
    Status st = DataVersion(&dv, l->db, &v);
    bool found = false;
    if (force || !st.ok() || v != last_dv) {
      last_dv = v;
      st = Drain(l, &found);
      if (!st.ok()) {
        NoteError(l, st.message(), true);
        force = true;
        if (!l->stop.SleepUs(BackoffUs(read_errors++, l->opt.retry_max_ms))) break;
        continue;
      }
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

void Run(Listener* l) noexcept {
  FineTimerSlack slack;
  std::thread acker;
  try {
    acker = std::thread(Acker, l);
  } catch (...) {
    NoteError(l, "cannot start the acker thread", false);
    l->stop.Set();
  }
  {
    StmtCache cache(l->db);  // the loop runs the same few statements: parse them once
    Loop(l);
  }
  {
    std::lock_guard<std::mutex> g(l->ack_mu);
    l->ack_quit = true;
    l->ack_cv.notify_one();
  }
  if (acker.joinable()) acker.join();
  sqlite3_close_v2(l->ack_db);
  l->ack_db = nullptr;
  sqlite3_close_v2(l->db);
  l->db = nullptr;
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
void Thread(std::shared_ptr<Listener> l) noexcept { Run(l.get()); }

}  // namespace

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

void SqlListen(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  const char* fn = "cdc_listen";
  sqlite3* db = sqlite3_context_db_handle(ctx);
  Reap();
  auto l = std::make_shared<Listener>();
  Status st = ArgText(fn, argv, 0, "consumer name", &l->name);
  if (!st.ok()) return ResultError(ctx, st);
  // The callback: a cdc_callback pointer (include/cdc.h) or an SQL function name.
  if (auto* cb = static_cast<cdc_callback*>(sqlite3_value_pointer(argv[1], CDC_CALLBACK_TYPE))) {
    if (cb->abi != CDC_CALLBACK_ABI || !cb->fn) {
      return ResultError(ctx, Status::Error("cdc_listen: the cdc_callback has no function or an unknown abi"));
    }
    l->cb = *cb;
  } else if (sqlite3_value_type(argv[1]) == SQLITE_TEXT && sqlite3_value_bytes(argv[1]) > 0) {
    l->sql_callback = true;
    l->sql_fn = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
  } else {
    return ResultError(ctx, Status::Error(
        "cdc_listen: callback must be the name of an SQL function taking one argument, or a "
        "cdc_callback pointer bound with sqlite3_bind_pointer(..., \"cdc_callback\", ...) (include/cdc.h)"));
  }
  if (argc > 2) {
    st = ParseOptions(db, argv[2], &l->opt);
    if (!st.ok()) return ResultError(ctx, st);
  }
  l->file = MainFile(db);
  if (l->file.empty()) {
    return ResultError(ctx, Status::Error(
        "cdc_listen: the database is in memory or temporary: a listener needs its own connection to a "
        "database file (use cdc_wait, cdc_poll and cdc_ack on this connection instead)"));
  }
  st = RequireWritable(db, fn);
  if (!st.ok()) return ResultError(ctx, st);
  int64_t pos = 0;
  st = ConsumerPosition(db, fn, l->name, &pos);
  if (!st.ok()) return ResultError(ctx, st);
  if (l->sql_callback) {
    if (sqlite3_db_mutex(db) == nullptr) {
      return ResultError(ctx, Status::Error(
          "cdc_listen: an SQL-function callback needs a connection in serialized threading mode "
          "(SQLITE_OPEN_FULLMUTEX); this connection is not"));
    }
    Stmt probe;
    if (!probe.Prepare(db, "SELECT " + Ident(l->sql_fn) + "(NULL)").ok()) {
      return ResultError(ctx, Status::Error("cdc_listen: no SQL function " + Ident(l->sql_fn) +
                                            " taking one argument is registered on this connection"));
    }
  }
  ConnState* cs = FindConn(db);
  if (!cs) return ResultError(ctx, Status::Error("cdc_listen: the extension is not initialised on this connection"));
  l->owner = cs;
  l->reg_db = db;

  st = OpenOwn(db, l->file, SQLITE_OPEN_READWRITE, &l->stop, &l->db);
  if (st.ok()) st = OpenOwn(db, l->file, SQLITE_OPEN_READWRITE, &l->stop, &l->ack_db);
  // Acks need not be fsynced in WAL mode: one lost to a power cut only means
  // a batch is delivered again (at least once), and writers wait less.
  if (st.ok()) st = Exec(l->ack_db, "PRAGMA synchronous=NORMAL");
  if (st.ok()) {
    st = ConsumerPosition(l->db, fn, l->name, &pos);
    if (!st.ok()) {
      st = Status::Error("cdc_listen: consumer " + Literal(l->name) +
                         " is not committed yet; commit the transaction that added it first");
    }
  }
  if (st.ok()) {
    Clock* clock = SystemClock();
    l->signals = std::make_unique<Combiner>(clock);
    if (l->opt.signals & Bit(kSrcWatch)) {
      auto w = std::make_unique<WatchSignal>();
      std::string err = w->Open(l->file);
      if (!err.empty()) st = Status::Error("cdc_listen: " + err + " (leave \"watch\" out of \"signals\")");
      l->signals->Add(std::move(w));
    }
    if (l->opt.signals & Bit(kSrcInterval)) {
      l->signals->Add(std::make_unique<IntervalSignal>(clock->NowUs(), l->opt.interval_ms * 1000));
    }
    if (l->opt.signals & Bit(kSrcCommit)) {
      auto c = std::make_unique<CommitSignal>();
      if (!c->ok()) st = Status::Error("cdc_listen: cannot create an eventfd");
      l->commit = c.get();
      l->signals->Add(std::move(c));
    }
    if (!l->stop.ok()) st = Status::Error("cdc_listen: cannot create an eventfd");
  }
  if (st.ok()) {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (const auto& o : r.live) {
      if (o->file == l->file && o->name == l->name) {
        st = Status::Error("cdc_listen: consumer " + Literal(l->name) +
                           " already has a listener in this process (stop it with SELECT cdc_unlisten(" +
                           Literal(l->name) + "))");
      }
    }
    if (st.ok()) {
      try {
        l->thread = std::thread(Thread, l);
        r.live.push_back(l);
      } catch (...) {
        st = Status::Error("cdc_listen: cannot start a thread");
      }
    }
  }
  if (!st.ok()) {
    sqlite3_close_v2(l->ack_db);
    l->ack_db = nullptr;
    sqlite3_close_v2(l->db);
    l->db = nullptr;
    return ResultError(ctx, st);
  }
  if ((l->opt.signals & Bit(kSrcCommit)) && !cs->hook) {
    sqlite3_commit_hook(db, CommitHook, cs);
    cs->hook = true;
  }
  sqlite3_result_int(ctx, 1);
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
    return ResultError(ctx, Status::Error("cdc_unlisten: no listener for consumer " + Literal(name) +
                                          " on this database (start one with cdc_listen)"));
  }
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
  if (!st.ok()) return ResultError(ctx, Status::Error("cdc_wait: " + st.message()));
  Combiner signals(clock);
  auto w = std::make_unique<WatchSignal>();
  if (w->Open(file).empty()) signals.Add(std::move(w));  // else the interval still works
  signals.Add(std::make_unique<IntervalSignal>(clock->NowUs(), 250000));
  {
    FineTimerSlack slack;  // the caller's thread, for the duration of the wait
    Stmt dv;
    int64_t last_dv = -1;
    for (;;) {
      int64_t v = -1;
      Status d = DataVersion(&dv, own, &v);
      if (!d.ok() || v != last_dv) {
        last_dv = v;
        st = ConsumerPosition(own, fn, name, &pos);
        if (st.ok()) st = PendingCount(own, pos, &pending);
        if (!st.ok() || pending > 0) break;
      }
      signals.AfterRead(false);
      if (clock->NowUs() >= until) break;
      bool stopped = false;
      signals.Wait(until, -1, &stopped);
    }
  }
  sqlite3_close_v2(own);
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
    out->append("],\"interval_ms\":");
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
    out->push_back('}');
  }
  out->push_back(']');
}

}  // namespace cdc
