// trigger_cost.cc — one capture workload on one database, for profiling.
//
//   cdc_trigger_cost VARIANT OP NCOLS BATCHES [SQLFILE]
//     VARIANT  none | ours | peer | floor (constant-row triggers) | values (values-only triggers) |
//              clock (values-only plus our millisecond timestamp) |
//              sql (no capture, then SQLFILE's statements, e.g. experimental triggers on table t;
//              SQLFILE also runs after the other variants' set-up)
//     OP       insert_tx | update_tx | delete_tx | insert_auto
//
// Under callgrind, run with --instr-atstart=no: only the timed batches are
// instrumented, so "Collected" is the instruction count of the workload
// (deterministic, unlike wall time on a shared machine):
//   valgrind --tool=callgrind --instr-atstart=no build-bench/bench/cdc_trigger_cost ours insert_tx 6 4
// Without valgrind it prints the wall time per row, and the thread's CPU time
// per row (steadier than wall time on a loaded machine: time spent waiting
// for a CPU is not counted).
#define CDC_BENCH_CALLGRIND 1
#include <valgrind/callgrind.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "workload.h"

using namespace cdcbench;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s none|ours|peer|floor|values|clock|sql insert_tx|update_tx|delete_tx|insert_auto NCOLS BATCHES [SQLFILE]\n", argv[0]);
    return 2;
  }
  std::string variant = argv[1], opname = argv[2];
  int ncols = std::atoi(argv[3]), batches = std::atoi(argv[4]);
  std::string sql;
  if (argc > 5) {
    std::ifstream f(argv[5]);
    std::stringstream ss;
    ss << f.rdbuf();
    sql = ss.str();
  }
  Variant v = variant == "none"    ? kNone
              : variant == "ours"  ? kOurs
              : variant == "peer"  ? kPeer
              : variant == "floor" ? kFloor
              : variant == "values" ? kValues
              : variant == "clock" ? kClock
              : variant == "sql"   ? kSql
                                   : (Die("unknown variant " + variant), kNone);
  CaptureOp op = opname == "insert_tx"     ? CaptureOp::kInsertTx
                 : opname == "update_tx"   ? CaptureOp::kUpdateTx
                 : opname == "delete_tx"   ? CaptureOp::kDeleteTx
                 : opname == "insert_auto" ? CaptureOp::kInsertAuto
                                           : (Die("unknown op " + opname), CaptureOp::kInsertTx);
  TempDir dir;
  Side side(dir.File("t.db"), v, ncols, sql);
  int rows = 0;
  RunBatch(op, side, &rows);  // warm-up
  double secs = 0, cpu = 0;
  long total = 0;
  for (int i = 0; i < batches; i++) {
    CALLGRIND_START_INSTRUMENTATION;
    secs += RunBatch(op, side, &rows, &cpu);
    CALLGRIND_STOP_INSTRUMENTATION;
    total += rows;
  }
  std::printf("%s %s %d cols: %ld rows, %.3f us/row, cpu %.3f us/row\n", variant.c_str(), opname.c_str(), ncols,
              total, secs * 1e6 / static_cast<double>(total), cpu * 1e6 / static_cast<double>(total));
  return 0;
}
