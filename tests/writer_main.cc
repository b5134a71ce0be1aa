// writer_main.cc — a writer in its own process, for the cross-process
// listener tests. Never loads the extension: capture is plain SQL.
//
//   cdc_test_writer DB COUNT PAUSE_MS [SYNCHRONOUS]
//
// Commits COUNT single-row INSERTs into t(v), one transaction each, pausing
// PAUSE_MS after each; prints "done" and exits after the last commit. The
// database (table t, capture, WAL or not) is prepared by the test.
// CDC_WRITER_SQL replaces the INSERT (one parameter, ?1 = 1..COUNT).
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s DB COUNT PAUSE_MS [SYNCHRONOUS]\n", argv[0]);
    return 2;
  }
  int count = atoi(argv[2]), pause_ms = atoi(argv[3]);
  sqlite3* db = nullptr;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) return 1;
  sqlite3_busy_timeout(db, 10000);
  if (argc > 4) {
    char* sql = sqlite3_mprintf("PRAGMA synchronous=%s", argv[4]);
    sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    sqlite3_free(sql);
  }
  sqlite3_stmt* st = nullptr;
  const char* sql = getenv("CDC_WRITER_SQL");
  if (sqlite3_prepare_v2(db, sql ? sql : "INSERT INTO t(v) VALUES(?1)", -1, &st, nullptr) != SQLITE_OK) {
    fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  for (int i = 1; i <= count; i++) {
    sqlite3_bind_int(st, 1, i);
    if (sqlite3_step(st) != SQLITE_DONE) {
      fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
      return 1;
    }
    sqlite3_reset(st);
    if (pause_ms > 0) usleep(static_cast<useconds_t>(pause_ms) * 1000);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  printf("done\n");
  return 0;
}
