// capture_bench.cc — capture overhead, measured side by side.
//
// One benchmark per (operation, table width). Each iteration runs the same
// batch of work on three databases, in rotating order, timing each one:
//   none  — the table without capture;
//   ours  — the table after SELECT cdc_setup('t');
//   peer  — the table with triggers reproducing kevinconway/sqlite-cdc's design
//           (bench_util.cc, InstallPeerStyle).
// Because the three run interleaved within every iteration, a burst of noise
// on this shared machine hits all of them; the ratios (counters *_vs_*) are
// what `make bench` reports, per repetition, as medians with min–max.
//
// Workloads (file database, WAL, synchronous=NORMAL, prepared statements,
// per-row binds):
//   insert_tx   1000 INSERTs in one transaction
//   update_tx   1000 UPDATEs of one column (by primary key) in one transaction
//   delete_tx   1000 DELETEs (by primary key, same key walk as update_tx) in
//               one transaction; the rows are put back untimed after each
//               batch, so the table stays the same
//   insert_auto single-row INSERTs, each its own (autocommit) transaction
#include "capture_bench.h"

#include <benchmark/benchmark.h>

#include <memory>

#include "bench_util.h"

namespace cdcbench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTxRows = 1000;
constexpr int kAutoRows = 250;
// Rows in the table before timing starts: about 1.5 MB of table whatever the
// width, so the baseline works from SQLite's default page cache (2 MB) rather
// than measuring misses to the OS cache.
int64_t PrefillRows(int ncols) { return ncols <= 6 ? 20000 : ncols <= 20 ? 8000 : 1500; }

enum Variant { kNone = 0, kOurs = 1, kPeer = 2, kVariants = 3 };
const char* const kVariantName[kVariants] = {"none", "ours", "peer"};

struct Side {
  Side(const std::string& path, Variant v, int ncols) : db(path) {
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
  double DeleteRows(int n) {
    int64_t first = walk;
    auto t0 = Clock::now();
    begin->Run();
    for (int i = 0; i < n; i++) {
      sqlite3_bind_int64(del->get(), 1, NextKey());
      del->Run();
    }
    commit->Run();
    auto t1 = Clock::now();
    walk = first;
    begin->Run();
    for (int i = 0; i < n; i++) {
      int64_t id = NextKey();
      sqlite3_bind_int64(insert->get(), 1, id);
      BindRow(insert->get(), ncols, id, 2);
      insert->Run();
    }
    commit->Run();
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

// Runs one batch of `op` on `s`; returns the timed seconds and the rows done.
double RunBatch(CaptureOp op, Side& s, int* rows) {
  Clock::time_point t0, t1;
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
      return s.DeleteRows(kTxRows);
    case CaptureOp::kInsertAuto:
      t0 = Clock::now();
      for (int i = 0; i < kAutoRows; i++) s.InsertOne();
      t1 = Clock::now();
      *rows = kAutoRows;
      break;
  }
  return Seconds(t0, t1);
}

void BM_Capture(benchmark::State& state, CaptureOp op) {
  const int ncols = static_cast<int>(state.range(0));
  TempDir dir;
  std::unique_ptr<Side> sides[kVariants];
  for (int v = 0; v < kVariants; v++) {
    sides[v] = std::make_unique<Side>(dir.File(std::string(kVariantName[v]) + ".db"), Variant(v), ncols);
  }
  int rows = 0;
  for (auto& s : sides) RunBatch(op, *s, &rows);  // warm-up, not counted
  double secs[kVariants] = {0, 0, 0};
  double done[kVariants] = {0, 0, 0};
  int64_t iter = 0;
  for (auto _ : state) {
    double total = 0;
    for (int k = 0; k < kVariants; k++) {
      int v = static_cast<int>((iter + k) % kVariants);  // rotate the order
      double t = RunBatch(op, *sides[v], &rows);
      secs[v] += t;
      done[v] += rows;
      total += t;
    }
    iter++;
    state.SetIterationTime(total);
  }
  double rate[kVariants];
  for (int v = 0; v < kVariants; v++) {
    rate[v] = secs[v] > 0 ? done[v] / secs[v] : 0;
    state.counters[std::string(kVariantName[v]) + "_rows_s"] = rate[v];
  }
  state.counters["ours_vs_none"] = rate[kNone] > 0 ? rate[kOurs] / rate[kNone] : 0;
  state.counters["peer_vs_none"] = rate[kNone] > 0 ? rate[kPeer] / rate[kNone] : 0;
  state.counters["ours_vs_peer"] = rate[kPeer] > 0 ? rate[kOurs] / rate[kPeer] : 0;
}

}  // namespace

void RegisterCaptureBenchmarks() {
  const bool quick = QuickMode();
  struct {
    const char* name;
    CaptureOp op;
  } ops[] = {{"insert_tx", CaptureOp::kInsertTx},
             {"update_tx", CaptureOp::kUpdateTx},
             {"delete_tx", CaptureOp::kDeleteTx},
             {"insert_auto", CaptureOp::kInsertAuto}};
  for (auto& o : ops) {
    for (int ncols : {6, 20, 100}) {
      // Iterations per repetition: aim for roughly the same time per
      // repetition whatever the width.
      int iters = ncols == 6 ? 24 : ncols == 20 ? 12 : 4;
      if (quick) iters = std::max(2, iters / 4);
      iters = std::max(1, iters * EnvInt("CDC_BENCH_SCALE", 100) / 100);
      CaptureOp op = o.op;
      benchmark::RegisterBenchmark((std::string("capture/") + o.name).c_str(),
                                   [op](benchmark::State& st) { BM_Capture(st, op); })
          ->Arg(ncols)
          ->Iterations(iters)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace cdcbench
