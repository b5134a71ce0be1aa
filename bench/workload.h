// workload.h — the capture-overhead workloads on one database (used by
// capture_bench.cc side by side, and by trigger_cost.cc alone for callgrind).
#pragma once

#include <ctime>
#include <memory>
#include <string>

#include "bench_util.h"
#include "capture_bench.h"

namespace cdcbench {

using Clock = std::chrono::steady_clock;

// CPU time of the calling thread (time spent waiting for a CPU on a loaded
// machine is not in it, unlike wall time).
inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// kFloor: constant-row triggers (bench_util.h, InstallConstantRowTriggers).
// kValues: values-only triggers (bench_util.h, InstallValuesOnlyTriggers);
// kClock: the same plus our millisecond timestamp.
// kSql: no capture, then the statements of a file (experimental triggers).
enum Variant { kNone = 0, kOurs = 1, kPeer = 2, kFloor = 3, kValues = 4, kClock = 5, kVariants = 6, kSql = 7 };

constexpr int kTxRows = 1000;
constexpr int kAutoRows = 250;
// Rows in the table before timing starts: about 1.5 MB of table whatever the
// width, so the baseline works from SQLite's default page cache (2 MB) rather
// than measuring misses to the OS cache.
inline int64_t PrefillRows(int ncols) { return ncols <= 6 ? 20000 : ncols <= 20 ? 8000 : 1500; }


struct Side {
  Side(const std::string& path, Variant v, int ncols, const std::string& extra_sql = "") : db(path) {
    db.Exec(CreateTableSql("t", ncols));
    std::string ins = "INSERT INTO t(id";
    std::string vals = "?1";
    for (int i = 1; i < ncols; i++) {
      ins += ",c" + std::to_string(i);
      vals += ",?" + std::to_string(i + 1);
    }
    insert = std::make_unique<Stmt>(db.get(), ins + ") VALUES(" + vals + ")");
    update = std::make_unique<Stmt>(db.get(), "UPDATE t SET c1 = ?1 WHERE id = ?2");
    del = std::make_unique<Stmt>(db.get(), "DELETE FROM t WHERE id = ?1");
    begin = std::make_unique<Stmt>(db.get(), "BEGIN");
    commit = std::make_unique<Stmt>(db.get(), "COMMIT");
    this->ncols = ncols;
    prefill = PrefillRows(ncols);
    // Prefill before capture starts, so every variant starts from the same
    // table and an empty log.
    InsertRows(prefill);
    if (v == kOurs) db.Exec("SELECT cdc_setup('t')");
    if (v == kPeer) InstallPeerStyle(db, "t", ncols);
    if (v == kFloor) InstallConstantRowTriggers(db, "t");
    if (v == kValues || v == kClock) InstallValuesOnlyTriggers(db, "t", ncols, v == kClock);
    if (!extra_sql.empty()) db.Exec(extra_sql);
    db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  void InsertOne() {
    sqlite3_bind_int64(insert->get(), 1, ++max_id);
    BindRow(insert->get(), ncols, max_id, 2);
    insert->Run();
  }
  void InsertRows(int64_t n) {
    begin->Run();
    for (int64_t i = 0; i < n; i++) InsertOne();
    commit->Run();
  }
  void UpdateRows(int n) {
    begin->Run();
    for (int i = 0; i < n; i++) {
      sqlite3_bind_int64(update->get(), 1, ++update_pos * 31);
      sqlite3_bind_int64(update->get(), 2, NextKey());
      update->Run();
    }
    commit->Run();
  }
  // Deletes n rows by key (the same walk), then puts them back untimed.
  // Returns the wall time; adds the CPU time to *cpu.
  double DeleteRows(int n, double* cpu) {
    int64_t first = walk;
    const double c0 = ThreadCpuSeconds();
    auto t0 = Clock::now();
    begin->Run();
    for (int i = 0; i < n; i++) {
      sqlite3_bind_int64(del->get(), 1, NextKey());
      del->Run();
    }
    commit->Run();
    auto t1 = Clock::now();
    *cpu += ThreadCpuSeconds() - c0;
#ifdef CDC_BENCH_CALLGRIND
    CALLGRIND_STOP_INSTRUMENTATION;
#endif
    walk = first;
    begin->Run();
    for (int i = 0; i < n; i++) {
      int64_t id = NextKey();
      sqlite3_bind_int64(insert->get(), 1, id);
      BindRow(insert->get(), ncols, id, 2);
      insert->Run();
    }
    commit->Run();
#ifdef CDC_BENCH_CALLGRIND
    CALLGRIND_START_INSTRUMENTATION;
#endif
    return Seconds(t0, t1);
  }
  // A fixed pseudo-random walk over the prefilled ids (7919 is prime).
  int64_t NextKey() { return 1 + (walk++ * 7919) % prefill; }

  Db db;
  std::unique_ptr<Stmt> insert, update, del, begin, commit;
  int ncols = 0;
  int64_t prefill = 0;
  int64_t max_id = 0;  // highest id inserted
  int64_t walk = 0;    // position in the key walk
  int64_t update_pos = 0;
};

// Runs one batch of `op` on `s`; returns the timed seconds and the rows done,
// and adds the thread's CPU time over the same span to *cpu when given.
inline double RunBatch(CaptureOp op, Side& s, int* rows, double* cpu = nullptr) {
  Clock::time_point t0, t1;
  double ignored = 0;
  if (!cpu) cpu = &ignored;
  const double c0 = ThreadCpuSeconds();
  switch (op) {
    case CaptureOp::kInsertTx:
      t0 = Clock::now();
      s.InsertRows(kTxRows);
      t1 = Clock::now();
      *rows = kTxRows;
      break;
    case CaptureOp::kUpdateTx:
      t0 = Clock::now();
      s.UpdateRows(kTxRows);
      t1 = Clock::now();
      *rows = kTxRows;
      break;
    case CaptureOp::kDeleteTx:
      *rows = kTxRows;
      return s.DeleteRows(kTxRows, cpu);
    case CaptureOp::kInsertAuto:
      t0 = Clock::now();
      for (int i = 0; i < kAutoRows; i++) s.InsertOne();
      t1 = Clock::now();
      *rows = kAutoRows;
      break;
  }
  *cpu += ThreadCpuSeconds() - c0;
  return Seconds(t0, t1);
}

}  // namespace cdcbench
