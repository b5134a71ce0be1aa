// busy_writer.cc — the other process of write_path/no_timeout (busy_bench.cc):
// a writer as many applications and the stock sqlite3 shell are, with no busy
// handler at all.
//
//   cdc_busy_writer DB COUNT SPACING_US OUT [SYNCHRONOUS]
//
// Opens DB without the extension and without changing any setting (journal
// mode as the database has it; synchronous as SQLite leaves it unless
// SYNCHRONOUS, e.g. NORMAL, is given), then makes
// COUNT single-row autocommit INSERTs into w(v), one every SPACING_US
// microseconds on an absolute schedule (0: back to back). A statement that
// fails with SQLITE_BUSY or SQLITE_LOCKED ("database is locked") is counted
// and not retried: the next one follows on schedule, as a write that fails
// would be lost or reported by an application. OUT receives
// "ATTEMPTS FAILED SECONDS". With CDC_BUSY_TRACE=FILE set, FILE receives one
// line per failed write: its CLOCK_MONOTONIC start and end (ns) and SQLite's
// extended error code (5 SQLITE_BUSY, 517 SQLITE_BUSY_SNAPSHOT, ...), to
// line up with what else held the database then.
#include <sqlite3.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s DB COUNT SPACING_US OUT [SYNCHRONOUS]\n", argv[0]);
    return 2;
  }
  const long count = std::atol(argv[2]);
  const long spacing_ns = std::atol(argv[3]) * 1000;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  if (argc == 6) {
    const std::string pragma = std::string("PRAGMA synchronous=") + argv[5];
    if (sqlite3_exec(db, pragma.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "%s: %s\n", pragma.c_str(), sqlite3_errmsg(db));
      return 1;
    }
  }
  sqlite3_stmt* ins = nullptr;
  if (sqlite3_prepare_v2(db, "INSERT INTO w(v) VALUES(?1)", -1, &ins, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  long failed = 0;
  const char* trace_path = std::getenv("CDC_BUSY_TRACE");
  std::ofstream trace;
  if (trace_path) trace.open(trace_path);
  timespec start, next, end, t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &start);
  next = start;
  for (long i = 0; i < count; i++) {
    if (spacing_ns) {
      next.tv_nsec += spacing_ns;
      while (next.tv_nsec >= 1000000000) {
        next.tv_nsec -= 1000000000;
        next.tv_sec++;
      }
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) != 0) {
      }
    }
    sqlite3_bind_int64(ins, 1, i);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int rc = sqlite3_step(ins);
    const int xrc = sqlite3_extended_errcode(db);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sqlite3_reset(ins);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      failed++;
      if (trace_path) {
        trace << (t0.tv_sec * 1000000000LL + t0.tv_nsec) << " " << (t1.tv_sec * 1000000000LL + t1.tv_nsec) << " "
              << xrc << "\n";
      }
    } else if (rc != SQLITE_DONE) {
      std::fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  std::ofstream out(argv[4]);
  out << count << " " << failed << " "
      << static_cast<double>(end.tv_sec - start.tv_sec) + static_cast<double>(end.tv_nsec - start.tv_nsec) / 1e9
      << "\n";
  return 0;
}
