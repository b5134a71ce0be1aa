// capture_bench.cc — capture overhead, measured side by side.
//
// One benchmark per (operation, table width). Each iteration runs the same
// batch of work on six databases, in rotating order, timing each one:
//   none  — the table without capture;
//   ours  — the table after SELECT cdc_setup('t');
//   peer  — the table with triggers reproducing kevinconway/sqlite-cdc's design
//           (bench_util.cc, InstallPeerStyle);
//   floor — the table with triggers that write a constant row (no values, no
//           clock): the bound on what any row-writing trigger can reach;
//   values — the table with values-only triggers (one log row holding exactly
//           OLD.* / NEW.* and an op code, nothing else): the bound on what a
//           lossless trigger can reach;
//   clock — values-only plus our millisecond timestamp expression: what a
//           lossless trigger that keeps a per-event ts can reach (any SQL
//           function in a trigger makes UPDATE and DELETE statements inside a
//           transaction open a statement journal).
// Because the six run interleaved within every iteration, a burst of noise
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
#include "workload.h"

namespace cdcbench {
namespace {

const char* const kVariantName[kVariants] = {"none", "ours", "peer", "floor", "values", "clock"};

void BM_Capture(benchmark::State& state, CaptureOp op) {
  const int ncols = static_cast<int>(state.range(0));
  TempDir dir;
  std::unique_ptr<Side> sides[kVariants];
  for (int v = 0; v < kVariants; v++) {
    sides[v] = std::make_unique<Side>(dir.File(std::string(kVariantName[v]) + ".db"), Variant(v), ncols);
  }
  int rows = 0;
  for (auto& s : sides) RunBatch(op, *s, &rows);  // warm-up, not counted
  double secs[kVariants] = {};
  double cpu[kVariants] = {};
  double done[kVariants] = {};
  int64_t iter = 0;
  for (auto _ : state) {
    double total = 0;
    for (int k = 0; k < kVariants; k++) {
      int v = static_cast<int>((iter + k) % kVariants);  // rotate the order
      double t = RunBatch(op, *sides[v], &rows, &cpu[v]);
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
  state.counters["floor_vs_none"] = rate[kNone] > 0 ? rate[kFloor] / rate[kNone] : 0;
  state.counters["values_vs_none"] = rate[kNone] > 0 ? rate[kValues] / rate[kNone] : 0;
  state.counters["clock_vs_none"] = rate[kNone] > 0 ? rate[kClock] / rate[kNone] : 0;
  state.counters["ours_vs_values"] = rate[kValues] > 0 ? rate[kOurs] / rate[kValues] : 0;
  state.counters["ours_vs_clock"] = rate[kClock] > 0 ? rate[kOurs] / rate[kClock] : 0;
  // The same two by CPU time (the thread's, system time included): time spent
  // waiting for a CPU is left out, so these hold up better on a loaded machine.
  state.counters["ours_vs_values_cpu"] = cpu[kOurs] > 0 ? cpu[kValues] / cpu[kOurs] : 0;
  state.counters["ours_vs_clock_cpu"] = cpu[kOurs] > 0 ? cpu[kClock] / cpu[kOurs] : 0;
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
