// listener_faults_test.cc — the listener thread and its acker under failing
// allocations and I/O errors: they retry, and when the faults stop they
// deliver and acknowledge everything, in order, nothing skipped.
//
// The writer (this thread) runs its transactions inside a HostScope, so its
// own allocations and I/O never fail; every other thread of the process (the
// listener and the acker) meets the faults.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "cdc.h"
#include "harness.h"
#include "inject.h"

namespace faulttest {
namespace {

struct Seen {
  std::mutex mu;
  std::vector<int64_t> ids;
};

int OnChanges(void* user, const cdc_change* c, int n) {
  faults::HostScope host;
  auto* s = static_cast<Seen*>(user);
  std::lock_guard<std::mutex> g(s->mu);
  for (int i = 0; i < n; i++) s->ids.push_back(c[i].id);
  return 0;
}

// The SQL-function callback: records the batch's ids.
void OnChangesSql(sqlite3_context* ctx, int, sqlite3_value** argv) {
  faults::HostScope host;
  auto* s = static_cast<Seen*>(sqlite3_user_data(ctx));
  sqlite3* db = sqlite3_context_db_handle(ctx);
  sqlite3_stmt* st = nullptr;
  // A nested statement on the registering connection, as an application's would.
  if (sqlite3_prepare_v2(db, "SELECT value ->> 'id' FROM json_each(?1)", -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_result_error(ctx, "callback: prepare failed", -1);
    return;
  }
  sqlite3_bind_value(st, 1, argv[0]);
  std::vector<int64_t> ids;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) ids.push_back(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    sqlite3_result_error(ctx, "callback: read failed", -1);
    return;
  }
  std::lock_guard<std::mutex> g(s->mu);
  s->ids.insert(s->ids.end(), ids.begin(), ids.end());
  sqlite3_result_int(ctx, 1);
}

class ListenerFaults : public ::testing::TestWithParam<bool /* cdc_serve */> {
 protected:
  void SetUp() override {
    std::string err;
    db_ = Open(dir_.File("l.db"), &err);
    ASSERT_NE(db_, nullptr) << err;
    sqlite3_busy_timeout(db_, 10000);
    ASSERT_EQ(Exec(db_, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);"
                        "SELECT cdc_setup('t'); SELECT cdc_consumer_add('audit'); SELECT cdc_consumer_add('c')"),
              "");
    const char* opts = "{\"signals\": [\"interval\", \"commit\"], \"interval_ms\": 20, \"retry_max_ms\": 40}";
    if (GetParam()) {
      // cdc_serve: the listener loop on a thread of the test's, with a
      // connection of its own, calling an SQL function registered there. The
      // loop (not the function) meets the faults.
      serve_db_ = Open(dir_.File("l.db"), &err);
      ASSERT_NE(serve_db_, nullptr) << err;
      sqlite3_busy_timeout(serve_db_, 10000);
      sqlite3_create_function(serve_db_, "deliver", 1, SQLITE_UTF8, &seen_, OnChangesSql, nullptr, nullptr);
      std::string sql = std::string("SELECT cdc_serve('c', 'deliver', '") + opts + "')";
      serve_ = std::thread([this, sql] { serve_result_ = Exec(serve_db_, sql); });
      // Serving: cdc_status() lists the listener once the loop runs.
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (One(db_, "SELECT cdc_status() ->> '$.listeners[0].consumer'") != "c") {
        ASSERT_LT(std::chrono::steady_clock::now(), until) << "cdc_serve did not start";
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } else {
      char* e = nullptr;
      ASSERT_EQ(cdc_listen(db_, "c", OnChanges, &seen_, nullptr, opts, &e), SQLITE_OK) << (e ? e : "");
    }
  }
  void TearDown() override {
    faults::Disarm();
    if (db_) Exec(db_, "SELECT cdc_unlisten('c')");
    if (serve_.joinable()) {
      serve_.join();
      // cdc_serve ended because of cdc_unlisten, not an error: it never gave up.
      EXPECT_EQ(serve_result_, "");
    }
    if (serve_db_) {
      EXPECT_EQ(sqlite3_close(serve_db_), SQLITE_OK);
    }
    if (db_) {
      EXPECT_EQ(sqlite3_close(db_), SQLITE_OK);
    }
  }

  // One transaction of the writer, never failed.
  void Write() {
    faults::HostScope host;
    k_++;
    std::string sql = "BEGIN IMMEDIATE; INSERT INTO t VALUES(" + std::to_string(k_) + ", 'v" + std::to_string(k_) + "', 0);";
    if (k_ > 3) sql += "UPDATE t SET n = n + 1 WHERE id = " + std::to_string(k_ - 2) + ";";
    if (k_ % 5 == 0) sql += "DELETE FROM t WHERE id = " + std::to_string(k_ - 4) + ";";
    sql += "COMMIT;";
    std::string e = Exec(db_, sql);
    if (!e.empty()) Exec(db_, "ROLLBACK");
    ASSERT_EQ(e, "") << sql;
  }

  // Writes for `ms` while the faults are armed.
  void WriteFor(int ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
      Write();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // After the faults: everything delivered once, in order, and acked.
  void ExpectRecovered() {
    faults::Disarm();
    Write();
    std::vector<std::string> want_rows;
    std::string want_last = One(db_, "SELECT max(id) FROM __cdc_log");
    std::string pos;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
      pos = One(db_, "SELECT pos FROM __cdc_consumers WHERE name = 'c'");
      if (pos == want_last) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(pos, want_last) << "the acker did not catch up; status: " << One(db_, "SELECT cdc_status()");
    std::vector<int64_t> want;
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, "SELECT id FROM cdc_changes('audit') ORDER BY id", -1, &st, nullptr), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) want.push_back(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    std::lock_guard<std::mutex> g(seen_.mu);
    EXPECT_EQ(seen_.ids, want) << "delivered " << seen_.ids.size() << " ids, the log has " << want.size();
    EXPECT_EQ(ReplayCheck(db_, {"t"}), "");
    EXPECT_EQ(Integrity(db_), "ok");
  }

  TempDir dir_;
  sqlite3* db_ = nullptr;
  sqlite3* serve_db_ = nullptr;
  std::thread serve_;
  std::string serve_result_;
  Seen seen_;
  int k_ = 0;
};

TEST_P(ListenerFaults, FailingAllocations) {
  WriteFor(100);
  // Every 3rd, then every 2nd allocation of the listener and the acker fails
  // (each fault point is one allocation: seeded, so each run is the same).
  faults::ArmAllocRandom(Seed(), 3);
  WriteFor(300);
  faults::ArmAllocRandom(Seed() + 1, 2);
  WriteFor(300);
  // Then every allocation, for a while.
  faults::ArmAlloc(1, true);
  WriteFor(300);
  int64_t hits = faults::AllocHits();
  faults::Disarm();
  EXPECT_GT(hits, 0);
  ExpectRecovered();
  std::string status = One(db_, "SELECT cdc_status() ->> '$.listeners[0].retries'");
  EXPECT_NE(status, "0") << "no retry was counted";
}

TEST_P(ListenerFaults, IoErrors) {
  WriteFor(100);
  // Single failures of reads, locks, shared-memory locks and writes.
  for (int n = 1; n <= 30; n++) {
    unsigned methods = n % 3 == 0 ? faults::kRead : n % 3 == 1 ? (faults::kLock | faults::kShmLock) : faults::kWrite;
    faults::ArmIo(methods, n, n % 2 ? SQLITE_IOERR_READ : SQLITE_BUSY, false);
    WriteFor(15);
  }
  // Then every read fails for a while (the listener cannot read), then
  // every write and sync (the acker cannot ack).
  faults::ArmIo(faults::kRead | faults::kShmMap, 1, SQLITE_IOERR_READ, true);
  WriteFor(300);
  int64_t hits = faults::IoHits();
  faults::ArmIo(faults::kWrite | faults::kSync, 1, SQLITE_FULL, true);
  WriteFor(300);
  hits += faults::IoHits();
  faults::Disarm();
  EXPECT_GT(hits, 0);
  ExpectRecovered();
}

// A C callback through cdc_listen (the extension's threads), and an SQL
// function through cdc_serve (the loop on a thread of the application's).
INSTANTIATE_TEST_SUITE_P(Callback, ListenerFaults, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Serve" : "C"; });

}  // namespace
}  // namespace faulttest
