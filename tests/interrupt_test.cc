// interrupt_test.cc — sqlite3_interrupt on a connection blocked in cdc_wait
// or cdc_serve. Hosts interrupt a statement to cut it short (Python
// Connection.interrupt(), Go's context cancellation in mattn/go-sqlite3,
// the sqlite3 shell's Ctrl-C): the blocking calls must end soon after with
// SQLITE_INTERRUPT, and the connection must work afterwards.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "testing.h"

namespace {

using cdctest::Db;
using cdctest::TempDir;

void Prepare(Db& db) {
  db.Exec("PRAGMA journal_mode=WAL");
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  db.Exec("SELECT cdc_setup('t')");
  db.Exec("SELECT cdc_consumer_add('c')");
}

// One statement stepped on its own thread; the outcome once it returns.
struct Call {
  std::thread thread;
  std::atomic<bool> done{false};
  int rc = 0;
  int extended = 0;
  std::string text;
  void Start(sqlite3* db, const std::string& sql) {
    thread = std::thread([this, db, sql] {
      sqlite3_stmt* st = nullptr;
      rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      extended = sqlite3_extended_errcode(db);
      text = rc == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : sqlite3_errmsg(db);
      sqlite3_finalize(st);
      done = true;
    });
  }
  // Waits up to `seconds` for the call to return.
  bool ReturnsWithin(int seconds) {
    return cdctest::Eventually([this] { return done.load(); }, seconds);
  }
  ~Call() {
    if (thread.joinable()) thread.join();
  }
};

TEST(Interrupt, EndsCdcWaitWithSqliteInterrupt) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  Db waiter(path);
  Call call;
  call.Start(waiter.get(), "SELECT cdc_wait('c', 600000)");  // ten minutes
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_FALSE(call.done) << call.text;  // blocked, nothing pending
  sqlite3_interrupt(waiter.get());
  if (!call.ReturnsWithin(30)) {
    db.Exec("INSERT INTO t(v) VALUES('unblocks it')");
    FAIL() << "cdc_wait was not cut short by sqlite3_interrupt";
  }
  call.thread.join();
  EXPECT_EQ(call.rc, SQLITE_INTERRUPT) << call.text;
  EXPECT_EQ(call.text, "cdc_wait: interrupted");
  // The connection works afterwards, and the wait sees a later change.
  db.Exec("INSERT INTO t(v) VALUES('a')");
  EXPECT_EQ(waiter.One("SELECT cdc_wait('c', 10000)"), "1");
}

// In memory cdc_wait looks every 10 ms instead of watching the file: an
// interrupt ends that loop too.
TEST(Interrupt, EndsCdcWaitOnAnInMemoryDatabase) {
  Db db(":memory:");
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  db.Exec("SELECT cdc_setup('t')");
  db.Exec("SELECT cdc_consumer_add('c')");
  Call call;
  call.Start(db.get(), "SELECT cdc_wait('c', 60000)");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_FALSE(call.done) << call.text;
  sqlite3_interrupt(db.get());
  EXPECT_TRUE(call.ReturnsWithin(30)) << "cdc_wait was not cut short by sqlite3_interrupt";
  call.thread.join();
  EXPECT_EQ(call.rc, SQLITE_INTERRUPT) << call.text;
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 0)"), "0");
}

struct Batches {
  std::mutex mu;
  std::vector<std::string> got;
};

void OnChanges(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto* b = static_cast<Batches*>(sqlite3_user_data(ctx));
  std::lock_guard<std::mutex> g(b->mu);
  b->got.push_back(reinterpret_cast<const char*>(sqlite3_value_text(argv[0])));
  sqlite3_result_int(ctx, 1);
}

size_t Count(Batches& b) {
  std::lock_guard<std::mutex> g(b.mu);
  return b.got.size();
}

TEST(Interrupt, EndsCdcServeWithSqliteInterruptAndAnotherServeResumes) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  db.Exec("INSERT INTO t(v) VALUES('a')");
  Batches batches;
  Db own(path);
  sqlite3_create_function_v2(own.get(), "on_changes", 1, SQLITE_UTF8, &batches, OnChanges, nullptr, nullptr,
                             nullptr);
  Call call;
  call.Start(own.get(), "SELECT cdc_serve('c', 'on_changes')");
  ASSERT_TRUE(cdctest::Eventually([&] { return Count(batches) >= 1; }, 30));
  ASSERT_EQ(Count(batches), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // idle: waiting for changes
  ASSERT_FALSE(call.done) << call.text;
  sqlite3_interrupt(own.get());
  if (!call.ReturnsWithin(30)) {
    db.Exec("SELECT cdc_unlisten('c')");
    FAIL() << "cdc_serve was not cut short by sqlite3_interrupt";
  }
  call.thread.join();
  EXPECT_EQ(call.rc, SQLITE_INTERRUPT) << call.text;
  EXPECT_EQ(call.text, "cdc_serve: interrupted");
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_status(), '$.listeners')"), "0");
  // The serving connection works afterwards: a new cdc_serve delivers what
  // came after (at least once: nothing delivered is lost, nothing skipped).
  db.Exec("INSERT INTO t(v) VALUES('b')");
  Call again;
  again.Start(own.get(), "SELECT cdc_serve('c', 'on_changes')");
  std::string last;
  cdctest::Eventually(
      [&] {
        std::lock_guard<std::mutex> g(batches.mu);
        last = batches.got.back();
        return last.find("\"v\":\"b\"") != std::string::npos;
      },
      30);
  EXPECT_NE(last.find("\"v\":\"b\""), std::string::npos) << last;
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
  EXPECT_TRUE(again.ReturnsWithin(30));
  again.thread.join();
  EXPECT_EQ(again.rc, SQLITE_ROW) << again.text;
}

// The host interrupts while the function handles a batch (here the function
// itself calls sqlite3_interrupt, then returns true): that batch was handled
// and is acked; the next one, already pending, is not delivered on the
// interrupted connection: cdc_serve ends with SQLITE_INTERRUPT, and the next
// cdc_serve delivers it.
void InterruptingOnChanges(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  OnChanges(ctx, argc, argv);
  sqlite3_interrupt(sqlite3_context_db_handle(ctx));
}

TEST(Interrupt, DuringABatchEndsCdcServeBeforeTheNext) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  db.Exec("INSERT INTO t(v) VALUES('a'); INSERT INTO t(v) VALUES('b')");
  Batches batches;
  Db own(path);
  sqlite3_create_function_v2(own.get(), "on_changes", 1, SQLITE_UTF8, &batches, InterruptingOnChanges, nullptr,
                             nullptr, nullptr);
  Call call;
  call.Start(own.get(), "SELECT cdc_serve('c', 'on_changes', '{\"batch\": 1}')");
  if (!call.ReturnsWithin(30)) {
    db.Exec("SELECT cdc_unlisten('c')");
    FAIL() << "cdc_serve was not cut short by sqlite3_interrupt";
  }
  call.thread.join();
  EXPECT_EQ(call.rc, SQLITE_INTERRUPT) << call.text;
  EXPECT_EQ(call.text, "cdc_serve: interrupted");
  ASSERT_EQ(Count(batches), 1u);
  EXPECT_NE(batches.got[0].find("\"v\":\"a\""), std::string::npos) << batches.got[0];
  EXPECT_EQ(db.One("SELECT value ->> 'position' FROM json_each(cdc_status(), '$.consumers')"), "1");
  // The next cdc_serve (with a function that does not interrupt) delivers 'b'.
  sqlite3_create_function_v2(own.get(), "on_changes", 1, SQLITE_UTF8, &batches, OnChanges, nullptr, nullptr,
                             nullptr);
  Call again;
  again.Start(own.get(), "SELECT cdc_serve('c', 'on_changes')");
  cdctest::Eventually([&] { return Count(batches) >= 2; }, 30);
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
  EXPECT_TRUE(again.ReturnsWithin(30));
  again.thread.join();
  EXPECT_EQ(again.rc, SQLITE_ROW) << again.text;
  std::lock_guard<std::mutex> g(batches.mu);
  ASSERT_EQ(batches.got.size(), 2u);
  EXPECT_NE(batches.got[1].find("\"v\":\"b\""), std::string::npos) << batches.got[1];
}

}  // namespace
