// latency_writer.cc — the other process of listener/latency (listener_bench.cc).
//
//   cdc_latency_writer DB COUNT SPACING_US [OUT]
//
// Opens DB (WAL, synchronous=NORMAL, extension loaded: the capture triggers
// are plain SQL but the connection is set up like any application's), then
// makes COUNT single-row autocommit INSERTs into lat(id, t0), one every
// SPACING_US microseconds on an absolute schedule. t0 is CLOCK_MONOTONIC in
// nanoseconds (system-wide, so comparable across processes) read just before
// the statement that commits; the listener subtracts it from its own clock.
// OUT, if given, receives "P50 P99" of the writer's own statement time (t0 to
// the end of the committing step) in microseconds, to split the latency.
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <vector>
#include <algorithm>

#include "bench_util.h"

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s DB COUNT SPACING_US [OUT]\n", argv[0]);
    return 2;
  }
  const long count = std::atol(argv[2]);
  const long spacing_ns = std::atol(argv[3]) * 1000;
  cdcbench::Db db(argv[1]);
  db.Exec("PRAGMA busy_timeout=10000");  // the listener's acks also write
  cdcbench::Stmt ins(db.get(), "INSERT INTO lat(t0) VALUES(?1)");
  std::vector<int64_t> step_ns;
  step_ns.reserve(static_cast<size_t>(count));
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
    const int64_t t0 = NowNs();
    sqlite3_bind_int64(ins.get(), 1, t0);
    ins.Run();  // autocommit: the step commits
    step_ns.push_back(NowNs() - t0);
  }
  if (argc == 5 && !step_ns.empty()) {
    std::sort(step_ns.begin(), step_ns.end());
    std::ofstream out(argv[4]);
    out << step_ns[step_ns.size() / 2] / 1e3 << " " << step_ns[(step_ns.size() - 1) * 99 / 100] / 1e3 << "\n";
  }
  return 0;
}
