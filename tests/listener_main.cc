// listener_main.cc — a listener in its own process, for the crash test.
//
//   cdc_test_listener EXTENSION DB CONSUMER BATCH UNTIL_ID [HANG_AFTER]
//
// Loads the extension, listens as CONSUMER with a C callback (include/cdc.h)
// that prints each batch as "batch ID ID ...\n" (flushed) and returns 0.
// With HANG_AFTER = k, the callback of batch k+1 prints its line and then
// hangs (the test kills the process with SIGKILL there: mid-batch, unacked).
// Exits 0 once a batch containing UNTIL_ID has been handled and acked.
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>

#include "cdc.h"

namespace {

std::atomic<int> g_batches{0};
std::atomic<bool> g_seen_last{false};
long long g_until = 0;
int g_hang_after = -1;

int OnChanges(void*, const cdc_change* c, int n) {
  printf("batch");
  for (int i = 0; i < n; i++) printf(" %lld", static_cast<long long>(c[i].id));
  printf("\n");
  fflush(stdout);
  int k = g_batches++;
  if (g_hang_after >= 0 && k >= g_hang_after) {
    for (;;) pause();
  }
  if (c[n - 1].id >= g_until) g_seen_last = true;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s EXTENSION DB CONSUMER BATCH UNTIL_ID [HANG_AFTER]\n", argv[0]);
    return 2;
  }
  g_until = atoll(argv[5]);
  if (argc > 6) g_hang_after = atoi(argv[6]);
  sqlite3* db = nullptr;
  if (sqlite3_open(argv[2], &db) != SQLITE_OK) return 1;
  sqlite3_busy_timeout(db, 10000);
  sqlite3_enable_load_extension(db, 1);
  char* err = nullptr;
  if (sqlite3_load_extension(db, argv[1], nullptr, &err) != SQLITE_OK) {
    fprintf(stderr, "load: %s\n", err);
    return 1;
  }
  char opts[100];
  snprintf(opts, sizeof opts, "{\"batch\": %d}", atoi(argv[4]));
  if (cdc_listen(db, argv[3], OnChanges, nullptr, nullptr, opts, &err) != SQLITE_OK) {
    fprintf(stderr, "listen: %s\n", err);
    return 1;
  }
  // Wait until the last change is handled and acked (position reaches it).
  for (int i = 0; i < 20000; i++) {
    if (g_seen_last) {
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(db, "SELECT pos FROM __cdc_consumers WHERE name = ?1", -1, &st, nullptr);
      sqlite3_bind_text(st, 1, argv[3], -1, SQLITE_STATIC);
      long long pos = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
      sqlite3_finalize(st);
      if (pos >= g_until) break;
    }
    usleep(1000);
  }
  sqlite3_close(db);  // stops the listener
  return g_seen_last ? 0 : 1;
}
