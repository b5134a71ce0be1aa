// main.cc — registers every benchmark, then runs Google Benchmark as usual
// (all --benchmark_* flags work). `make bench` runs this through report.py,
// which prints the markdown table.
#include <benchmark/benchmark.h>

#include <sqlite3.h>

#include "bench_util.h"
#include "capture_bench.h"

int main(int argc, char** argv) {
  benchmark::AddCustomContext("sqlite_version", sqlite3_libversion());
  benchmark::AddCustomContext("quick", cdcbench::QuickMode() ? "1" : "0");
  cdcbench::RegisterCaptureBenchmarks();
  cdcbench::RegisterDeliveryBenchmarks();
  cdcbench::RegisterListenerBenchmarks();
  cdcbench::RegisterBusyBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
