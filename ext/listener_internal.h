// listener_internal.h — what the files of the listener share (not part of
// the extension's interface; listener.h is).
//
//   listener.cc    the listener's loop: read a batch, deliver it, retry with
//                  backoff, hand the id to the acker, wait, shut down. Its
//                  header comment is the design (threads, locks, lifetime).
//   acker.cc       the acker thread: acks delivered ids on its own connection.
//   listen_sql.cc  cdc_listen / cdc_serve / cdc_unlisten and their options.
//   registry.cc    the process's listeners and connection states, the commit
//                  hook, and cdc_status()'s listener section.
//   wait.cc        cdc_wait.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "cdc.h"
#include "drift.h"
#include "lease.h"
#include "log.h"
#include "signals.h"
#include "util.h"

namespace cdc {

constexpr unsigned kAllSignals = (1u << kSrcWatch) | (1u << kSrcInterval) | (1u << kSrcCommit);

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
  // The reads' cursor, which keeps the shapes it loaded from one read to the
  // next while the schema stays as it was at cursor_schema (listener thread only).
  LogCursor cursor;
  int64_t cursor_schema = -1;

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
Registry& Reg();

// --- listener.cc: helpers every file of the listener uses -----------------

// The main database's file name, "" in memory or temporary.
std::string MainFile(sqlite3* db);
// cdc_status()'s state and last_error of a listener.
void SetState(Listener* l, const char* s);
void NoteError(Listener* l, const std::string& msg, bool retry) noexcept;
// A step that failed before succeeded now: last_error no longer applies.
void NoteRecovered(Listener* l);
// Stops the loop for good (the listener thread only): the reason is
// cdc_status()'s last_error, and cdc_serve's error.
void Fail(Listener* l, const Status& why);
// The wait before retry `attempt` (0, 1, ...): 10 ms doubling, capped.
int64_t BackoffUs(int attempt, int64_t max_ms);
// Opens a connection of the extension's own to `file`, with the VFS of `like`.
Status OpenOwn(sqlite3* like, const std::string& file, int flags, StopFlag* stop, sqlite3** out);
// PRAGMA data_version on `db`, through the statement kept in `st`.
Status DataVersion(Stmt* st, sqlite3* db, int64_t* v);
// signals->Wait(until, stop_fd, stopped) for a call that blocks its
// caller's connection `db` (cdc_wait, cdc_serve): it also ends, with
// *interrupted set, when sqlite3_interrupt is in force on `db` (Python
// interrupt(), Go's context cancellation, the shell's Ctrl-C). No signal
// tells of an interrupt, so it looks every kInterruptCheckUs while nothing
// wakes it; such a look is not a read (the signals' timers run on).
unsigned WaitInterruptible(Combiner* signals, int64_t until, int stop_fd, sqlite3* db, bool* stopped,
                           bool* interrupted);

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

// The listener's loop, on its own thread (cdc_listen) or on the caller's
// (cdc_serve); see listener.cc.
CDC_CATCHES_FORCED_UNWIND void Run(Listener* l);

// --- acker.cc ----------------------------------------------------------------

// Hands a delivered id to the acker.
void PostAck(Listener* l, int64_t id);
// The acker thread's body (started and ended by Run).
void Acker(Listener* l) noexcept;

// --- registry.cc ---------------------------------------------------------------

// Joins a stopped listener's thread, or, when called from that very thread
// (cdc_unlisten inside the callback), leaves it to be joined later.
void Finish(std::shared_ptr<Listener> l);
// Joins zombies whose thread has finished.
void Reap();
ConnState* FindConn(sqlite3* db);
// Adds l to the live listeners unless its consumer already has one here (a
// listener that stopped by itself gives its place up).
Status Register(const char* fn, const std::shared_ptr<Listener>& l);
void Unregister(const std::shared_ptr<Listener>& l);
// Installs the commit hook that wakes the connection's listeners with the
// "commit" signal, once per connection.
void InstallCommitHook(sqlite3* db, Listener* l);

}  // namespace cdc
