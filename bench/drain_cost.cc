// drain_cost.cc — one backlog drain, for profiling the read side.
//
//   cdc_drain_cost MODE N
//     MODE  poll    cdc_poll(c, 1000) + cdc_ack(c, last id) until empty
//           poll_noid          the same, acking with cdc_ack(c)
//           poll_batch         the same, acking with cdc_ack(c, the batch)
//           poll_json_extract  the same, acking with
//                              cdc_ack(c, json_extract(batch, '$[#-1].id'))
//           listen  cdc_listen with a C callback, batch 1000, until the
//                   consumer's position reaches the newest event
//     N     backlog size (INSERTs on the 6-column benchmark table)
//     LIMIT (poll modes) cdc_poll's limit, 1000 unless given
//
// Under callgrind, run with --instr-atstart=no: only the drain is
// instrumented, so "Collected" / N is the read side's instructions per event:
//   valgrind --tool=callgrind --instr-atstart=no build-bench/bench/cdc_drain_cost listen 100000
#include <valgrind/callgrind.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "../include/cdc.h"
#include "workload.h"

using namespace cdcbench;

namespace {

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  int64_t last_id = 0, changes = 0;
};

int OnChanges(void* user, const cdc_change* c, int n) {
  auto* d = static_cast<Done*>(user);
  std::lock_guard<std::mutex> lock(d->mu);
  d->changes += n;
  d->last_id = c[n - 1].id;
  d->cv.notify_all();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s poll|poll_noid|poll_batch|poll_json_extract|listen N [LIMIT]\n", argv[0]);
    return 2;
  }
  std::string mode = argv[1];
  const int64_t n = std::atoll(argv[2]);
  TempDir dir;
  Side side(dir.File("d.db"), kOurs, 6);
  side.db.Exec("SELECT cdc_consumer_add('c')");
  side.InsertRows(n);
  side.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  const int64_t last = side.db.Int("SELECT max(id) FROM __cdc_log");
  int64_t got = 0;
  auto t0 = Clock::now();
  CALLGRIND_START_INSTRUMENTATION;
  if (mode == "poll") {
    Stmt poll(side.db.get(), "SELECT cdc_poll('c', 1000)");
    Stmt ack(side.db.get(), "SELECT cdc_ack('c', ?1)");
    for (;;) {
      if (sqlite3_step(poll.get()) != SQLITE_ROW) Die(sqlite3_errmsg(side.db.get()));
      int64_t n = 0;
      const int64_t id = LastEventId(reinterpret_cast<const char*>(sqlite3_column_text(poll.get(), 0)), &n);
      got += n;
      sqlite3_reset(poll.get());
      if (id == 0) break;
      sqlite3_bind_int64(ack.get(), 1, id);
      ack.Run();
    }
  } else if (mode.compare(0, 5, "poll_") == 0) {
    const std::string limit = argc > 3 ? argv[3] : "1000";
    Stmt poll(side.db.get(), "SELECT cdc_poll('c', " + std::to_string(std::atoll(limit.c_str())) + ")");
    Stmt ack(side.db.get(), mode == "poll_noid"    ? "SELECT cdc_ack('c')"
                            : mode == "poll_batch" ? "SELECT cdc_ack('c', ?1)"
                                                   : "SELECT cdc_ack('c', json_extract(?1, '$[#-1].id'))");
    for (;;) {
      if (sqlite3_step(poll.get()) != SQLITE_ROW) Die(sqlite3_errmsg(side.db.get()));
      const int len = sqlite3_column_bytes(poll.get(), 0);
      if (len == 2) break;  // []
      got += std::atoll(limit.c_str());
      if (mode != "poll_noid") {
        sqlite3_bind_text(ack.get(), 1, reinterpret_cast<const char*>(sqlite3_column_text(poll.get(), 0)), len,
                          SQLITE_TRANSIENT);
      }
      sqlite3_reset(poll.get());
      ack.Run();
    }
    sqlite3_reset(poll.get());
    got = std::min(got, n);
  } else {
    Done d;
    sqlite3_stmt* st = nullptr;
    cdc_callback cb{CDC_CALLBACK_ABI, OnChanges, &d, nullptr};
    if (sqlite3_prepare_v2(side.db.get(), "SELECT cdc_listen('c', ?1, '{\"batch\":1000}')", -1, &st, nullptr) !=
        SQLITE_OK) {
      Die(sqlite3_errmsg(side.db.get()));
    }
    sqlite3_bind_pointer(st, 1, &cb, CDC_CALLBACK_TYPE, nullptr);
    if (sqlite3_step(st) != SQLITE_ROW) Die(sqlite3_errmsg(side.db.get()));
    sqlite3_finalize(st);
    std::unique_lock<std::mutex> lock(d.mu);
    d.cv.wait(lock, [&] { return d.last_id >= last; });
    got = d.changes;
    lock.unlock();
    side.db.Exec("SELECT cdc_unlisten('c')");  // waits for the last batch's ack
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  const double secs = Seconds(t0, Clock::now());
  if (got != n) Die("drained " + std::to_string(got) + " of " + std::to_string(n));
  std::printf("%s: %lld changes, %.0f changes/s\n", mode.c_str(), static_cast<long long>(got),
              static_cast<double>(got) / secs);
  return 0;
}
