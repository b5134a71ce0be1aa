// latency_writer.cc — the other process of listener/latency (listener_bench.cc).
//
//   cdc_latency_writer DB COUNT SPACING_US
//
// Opens DB (WAL, synchronous=NORMAL, extension loaded: the capture triggers
// are plain SQL but the connection is set up like any application's), then
// makes COUNT single-row autocommit INSERTs into lat(id, t0), one every
// SPACING_US microseconds on an absolute schedule. t0 is CLOCK_MONOTONIC in
// nanoseconds (system-wide, so comparable across processes) read just before
// the statement that commits; the listener subtracts it from its own clock.
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "bench_util.h"

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DB COUNT SPACING_US\n", argv[0]);
    return 2;
  }
  const long count = std::atol(argv[2]);
  const long spacing_ns = std::atol(argv[3]) * 1000;
  cdcbench::Db db(argv[1]);
  db.Exec("PRAGMA busy_timeout=10000");  // the listener's acks also write
  cdcbench::Stmt ins(db.get(), "INSERT INTO lat(t0) VALUES(?1)");
  timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (long i = 0; i < count; i++) {
    next.tv_nsec += spacing_ns;
    while (next.tv_nsec >= 1000000000) {
      next.tv_nsec -= 1000000000;
      next.tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) != 0) {
    }
    sqlite3_bind_int64(ins.get(), 1, NowNs());
    ins.Run();  // autocommit: the step commits
  }
  return 0;
}
