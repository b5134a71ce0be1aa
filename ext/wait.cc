// wait.cc — cdc_wait: block until a consumer has changes (DESIGN §4).
//
//   SELECT cdc_wait('search', 5000);  -- pending count, 0 on timeout
//
// Returns at once when changes are pending. Otherwise a private read-only
// connection watches the database (PRAGMA data_version after each wake of
// the watch and interval signals) until a change is pending for the
// consumer, the schema changed, or the timeout passed; the answer is then
// read again on the caller's connection. In memory, it looks every 10 ms.
// sqlite3_interrupt on the caller's connection ends it (SQLITE_INTERRUPT).
#include <unistd.h>

#include <algorithm>

#include "delivery.h"
#include "listener.h"
#include "listener_internal.h"

namespace cdc {

namespace {

// cdc_wait timeouts above this are capped (one day).
constexpr int64_t kMaxWaitMs = 86400000;

}  // namespace

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
      if (Interrupted(db)) return ResultError(ctx, Status::Error("cdc_wait: interrupted", SQLITE_INTERRUPT));
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
      bool stopped = false, interrupted = false;
      WaitInterruptible(&signals, until, -1, db, &stopped, &interrupted);
      if (interrupted) {
        st = Status::Error("cdc_wait: interrupted", SQLITE_INTERRUPT);
        break;
      }
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

}  // namespace cdc
