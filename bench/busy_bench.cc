// busy_bench.cc — does delivery make an application's writes fail?
//
//   write_path/no_timeout/JOURNAL/CONSUMER/SPACING
//     A separate process (cdc_busy_writer) with no busy handler, as the stock
//     sqlite3 shell and many scripts run, makes N single-row autocommit
//     INSERTs into a captured table (10,000; 2,000 in quick mode), one every
//     SPACING us (0: back to back, a writer that never leaves the write lock
//     free for long), with synchronous=NORMAL (FULL, SQLite's default, makes
//     each commit an fsync: 3-4 ms here). JOURNAL: wal or delete (rollback
//     journal; paced 5 ms, 2,000 writes / 500 quick). CONSUMER: none (a
//     consumer is registered, nobody reads: the writer alone) or listener
//     (cdc_listen with a C callback in this process, default options,
//     keeping up). Counts the INSERTs that failed with "database is locked"
//     (not retried: the next follows on schedule); failed_per_10k is what
//     the target is about (WAL, paced, listener: <= 1 in 10,000).
#include <benchmark/benchmark.h>

#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "capture_bench.h"
#include "cdc.h"
#include "workload.h"

extern char** environ;

namespace cdcbench {
namespace {

std::atomic<int64_t> g_delivered{0};

int OnChanges(void*, const cdc_change*, int n) {
  g_delivered += n;
  return 0;
}

void BM_NoTimeoutWriter(benchmark::State& state) {
  const bool wal = state.range(0) == 0;
  const bool listener = state.range(1) != 0;
  const int64_t spacing_us = state.range(2);
  const int count = wal ? (QuickMode() ? 2000 : 10000) : (QuickMode() ? 500 : 2000);
  for (auto _ : state) {
    TempDir dir;
    const std::string path = dir.File("w.db");
    Db db(path);
    if (!wal) db.Exec("PRAGMA journal_mode=DELETE");
    db.Exec("CREATE TABLE w(id INTEGER PRIMARY KEY, v INTEGER); SELECT cdc_setup('w'); SELECT cdc_consumer_add('c')");
    g_delivered = 0;
    if (listener) {
      char* err = nullptr;
      if (cdc_listen(db.get(), "c", OnChanges, nullptr, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "?";
        sqlite3_free(err);
        Die("cdc_listen: " + msg);
      }
    }
    const std::string writer = CDC_BUSY_WRITER;
    const std::string n = std::to_string(count), sp = std::to_string(spacing_us), out = dir.File("writer.txt");
    char normal[] = "NORMAL";
    char* argv[] = {const_cast<char*>(writer.c_str()), const_cast<char*>(path.c_str()),
                    const_cast<char*>(n.c_str()), const_cast<char*>(sp.c_str()), const_cast<char*>(out.c_str()),
                    normal, nullptr};
    pid_t pid;
    if (posix_spawn(&pid, writer.c_str(), nullptr, nullptr, argv, environ) != 0) Die("spawn " + writer);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("busy writer failed");
    int64_t attempts = 0, failed = 0;
    double secs = 0;
    std::ifstream(out) >> attempts >> failed >> secs;
    if (listener) {
      auto t0 = Clock::now();
      while (g_delivered < attempts - failed) {
        if (Seconds(t0, Clock::now()) > 30) Die("the listener did not keep up");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      char* err = nullptr;
      cdc_unlisten(db.get(), "c", &err);
      sqlite3_free(err);
    }
    state.SetIterationTime(secs);
    state.counters["attempts"] = static_cast<double>(attempts);
    state.counters["failed"] = static_cast<double>(failed);
    state.counters["failed_per_10k"] = 1e4 * static_cast<double>(failed) / static_cast<double>(attempts);
    state.counters["writes_s"] = static_cast<double>(attempts) / secs;
    state.counters["log_rows_after"] = static_cast<double>(db.Int("SELECT count(*) FROM __cdc_log"));
  }
}

}  // namespace

void RegisterBusyBenchmarks() {
  for (int64_t journal : {0, 1}) {
    const std::vector<int64_t> spacings = journal ? std::vector<int64_t>{5000} : std::vector<int64_t>{1000, 0};
    for (int64_t spacing : spacings) {
      for (int64_t listener : {0, 1}) {
        std::string name = std::string("write_path/no_timeout/") + (journal ? "delete" : "wal") + "/" +
                           (listener ? "listener" : "none") + "/" + std::to_string(spacing);
        benchmark::RegisterBenchmark(name.c_str(), BM_NoTimeoutWriter)
            ->Args({journal, listener, spacing})
            ->Iterations(1)
            ->Repetitions(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace cdcbench
