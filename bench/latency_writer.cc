// latency_writer.cc — the other process of listener/latency (listener_bench.cc).
//
//   cdc_latency_writer DB COUNT SPACING_US [OUT]
//
// With CDC_WRITER_CPU=N in the environment it pins itself to CPU N.
//
// Opens DB (WAL, synchronous=NORMAL, extension loaded: the capture triggers
// are plain SQL but the connection is set up like any application's), then
// makes COUNT single-row autocommit INSERTs into lat(id, t0), one every
// SPACING_US microseconds on an absolute schedule. t0 is CLOCK_MONOTONIC in
// nanoseconds (system-wide, so comparable across processes) read just before
// the statement that commits; the listener subtracts it from its own clock.
// OUT, if given, receives "P50 P99 BUSY" on its first line: the writer's own
// statement time (t0 to the end of the committing step) in microseconds and
// how many commits found the database locked (by the listener's ack) and had
// to wait; then one line "T0 TCOMMIT TEND" (ns) per commit, to split the
// latency: TCOMMIT is read in the writer's commit hook, which SQLite calls
// when the commit starts (after the INSERT and its trigger ran, before the
// WAL frames are written).
// The busy handler waits like SQLite's default one (busy_timeout): 1, 2, 5,
// 10, ... ms, so a collision costs what it costs any application.
#include <sched.h>
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

int busy_commits = 0;
int64_t commit_ns = 0;

int OnCommit(void*) {
  commit_ns = NowNs();
  return 0;
}
bool busy_now = false;

// SQLite's default busy handler's schedule (sqliteDefaultBusyCallback with
// usleep), counting the statements that had to wait.
int BusyWait(void*, int count) {
  static const int kDelayMs[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
  if (!busy_now) {
    busy_now = true;
    busy_commits++;
  }
  int total = 0;
  for (int i = 0; i < count && i < 12; i++) total += kDelayMs[i];
  if (count >= 12) total += (count - 11) * 100;
  if (total > 10000) return 0;
  const int ms = kDelayMs[count < 12 ? count : 11];
  timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, nullptr);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s DB COUNT SPACING_US [OUT]\n", argv[0]);
    return 2;
  }
  if (const char* cpu = getenv("CDC_WRITER_CPU")) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(cpu), &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  const long count = std::atol(argv[2]);
  const long spacing_ns = std::atol(argv[3]) * 1000;
  cdcbench::Db db(argv[1]);
  sqlite3_busy_handler(db.get(), BusyWait, nullptr);  // the listener's acks also write
  cdcbench::Stmt ins(db.get(), "INSERT INTO lat(t0) VALUES(?1)");
  sqlite3_commit_hook(db.get(), OnCommit, nullptr);
  std::vector<int64_t> step_ns, t0s, commits, ends;
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
    busy_now = false;
    ins.Run();  // autocommit: the step commits
    const int64_t end = NowNs();
    step_ns.push_back(end - t0);
    t0s.push_back(t0);
    commits.push_back(commit_ns);
    ends.push_back(end);
  }
  if (argc == 5 && !step_ns.empty()) {
    std::sort(step_ns.begin(), step_ns.end());
    std::ofstream out(argv[4]);
    out << step_ns[step_ns.size() / 2] / 1e3 << " " << step_ns[(step_ns.size() - 1) * 99 / 100] / 1e3 << " "
        << busy_commits << "\n";
    for (size_t i = 0; i < t0s.size(); i++) out << t0s[i] << " " << commits[i] << " " << ends[i] << "\n";
  }
  return 0;
}
