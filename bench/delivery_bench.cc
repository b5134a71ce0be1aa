// delivery_bench.cc — absolute throughput of delivery and bootstrap.
//
//   delivery/poll_ack  a backlog of N changes (1,000,000; 100,000 in quick
//                      mode) on a 6-column table, drained by one consumer with
//                      cdc_poll(name, 1000) + cdc_ack(name, last id) (acks
//                      prune the log) until cdc_poll returns []. changes/s.
//   delivery/poll_ack_noid   the same, acking with cdc_ack(name): what this
//                      connection last polled (no id to find).
//   delivery/poll_ack_batch  the same, acking with cdc_ack(name, batch): the
//                      text cdc_poll returned, bound back as it came.
//   delivery/poll_ack_json_extract  the same, acking with
//                      cdc_ack(name, json_extract(batch, '$[#-1].id')), the
//                      way an SQL consumer had to find the id before.
//   bootstrap/rows     SELECT cdc_bootstrap('t') over N existing rows. rows/s.
// The backlog/table is built untimed before each repetition.
#include <benchmark/benchmark.h>

#include <utility>


#include "capture_bench.h"
#include "workload.h"

namespace cdcbench {
namespace {

int64_t BacklogRows() { return EnvInt("CDC_BENCH_BACKLOG", QuickMode() ? 100000 : 1000000); }

enum AckWay { kAckId, kAckNoId, kAckBatch, kAckJsonExtract };

void PollAck(benchmark::State& state, AckWay way) {
  const int64_t n = BacklogRows();
  const char* ack_sql = way == kAckId      ? "SELECT cdc_ack('c', ?1)"
                        : way == kAckNoId  ? "SELECT cdc_ack('c')"
                        : way == kAckBatch ? "SELECT cdc_ack('c', ?1)"
                                           : "SELECT cdc_ack('c', json_extract(?1, '$[#-1].id'))";
  for (auto _ : state) {
    state.PauseTiming();
    TempDir dir;
    Side side(dir.File("d.db"), kOurs, 6);  // prefilled rows are not captured
    side.db.Exec("SELECT cdc_consumer_add('c')");
    side.InsertRows(n);
    side.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
    Stmt poll(side.db.get(), "SELECT cdc_poll('c', 1000)");
    Stmt ack(side.db.get(), ack_sql);
    int64_t got = 0;
    state.ResumeTiming();
    auto t0 = Clock::now();
    for (;;) {
      if (sqlite3_step(poll.get()) != SQLITE_ROW) Die(sqlite3_errmsg(side.db.get()));
      const char* json = reinterpret_cast<const char*>(sqlite3_column_text(poll.get(), 0));
      const int len = sqlite3_column_bytes(poll.get(), 0);
      if (len == 2) {  // []
        sqlite3_reset(poll.get());
        break;
      }
      got += 1000;
      if (way == kAckId) {
        sqlite3_bind_int64(ack.get(), 1, LastEventId(json));
      } else if (way != kAckNoId) {
        sqlite3_bind_text(ack.get(), 1, json, len, SQLITE_TRANSIENT);  // a copy, as a host language has
      }
      sqlite3_reset(poll.get());
      ack.Run();
    }
    double secs = Seconds(t0, Clock::now());
    state.SetIterationTime(secs);
    state.counters["changes_s"] = static_cast<double>(n) / secs;
    (void)got;
  }
}

void BM_PollAck(benchmark::State& state) { PollAck(state, kAckId); }
void BM_PollAckNoId(benchmark::State& state) { PollAck(state, kAckNoId); }
void BM_PollAckBatch(benchmark::State& state) { PollAck(state, kAckBatch); }
void BM_PollAckJsonExtract(benchmark::State& state) { PollAck(state, kAckJsonExtract); }

void BM_Bootstrap(benchmark::State& state) {
  const int64_t n = BacklogRows();
  for (auto _ : state) {
    state.PauseTiming();
    TempDir dir;
    Side side(dir.File("b.db"), kNone, 6);
    side.InsertRows(n - side.max_id);
    side.db.Exec("SELECT cdc_setup('t'); PRAGMA wal_checkpoint(TRUNCATE)");
    state.ResumeTiming();
    auto t0 = Clock::now();
    int64_t rows = side.db.Int("SELECT cdc_bootstrap('t')");
    double secs = Seconds(t0, Clock::now());
    if (rows < n) Die("cdc_bootstrap wrote " + std::to_string(rows) + " rows, expected " + std::to_string(n));
    state.SetIterationTime(secs);
    state.counters["rows_s"] = static_cast<double>(n) / secs;
  }
}

}  // namespace

void RegisterDeliveryBenchmarks() {
  benchmark::AddCustomContext("backlog", std::to_string(BacklogRows()));
  int reps = QuickMode() ? 1 : 3;
  for (auto [name, fn] : {std::pair{"delivery/poll_ack", BM_PollAck}, std::pair{"delivery/poll_ack_noid", BM_PollAckNoId},
                          std::pair{"delivery/poll_ack_batch", BM_PollAckBatch},
                          std::pair{"delivery/poll_ack_json_extract", BM_PollAckJsonExtract}}) {
    benchmark::RegisterBenchmark(name, fn)
        ->Iterations(1)->Repetitions(reps)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("bootstrap/rows", BM_Bootstrap)
      ->Iterations(1)->Repetitions(reps)->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace cdcbench
