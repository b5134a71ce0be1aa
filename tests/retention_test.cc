// retention_test.cc — cdc_config and invalidated ("lost") consumers
// (DESIGN §9, issue 13): a stalled consumer is invalidated at each limit while
// a healthy one receives everything; its reads fail with what happened and
// how to recover; the log and the file stop growing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "cdc.h"
#include "events.h"
#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

namespace {

bool Eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 20000; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

void MakeTwoConsumers(Db& db) {
  db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
          "SELECT cdc_setup('t'); SELECT cdc_consumer_add('healthy'); SELECT cdc_consumer_add('stalled')");
}

void Write(Db& db, int n) {
  db.Exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " + std::to_string(n) +
          ") INSERT INTO t(v) SELECT i FROM c");
}

// Polls and acks everything pending for `name`; returns how many events.
int64_t Drain(Db& db, const std::string& name) {
  int64_t n = 0;
  for (;;) {
    auto evs = cdctest::ParseEvents(db.One("SELECT cdc_poll('" + name + "', 1000)"));
    if (evs.empty()) return n;
    n += static_cast<int64_t>(evs.size());
    db.Exec("SELECT cdc_ack('" + name + "', " + std::to_string(evs.back().id) + ")");
  }
}

std::string Status(Db& db, const std::string& path) {
  return db.One("SELECT json_extract(cdc_status(), '" + path + "')");
}

}  // namespace

TEST(Config, DefaultsSetResetAndErrors) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows')"), "0");
  EXPECT_EQ(db.One("SELECT cdc_config('max_lag_ms')"), "604800000");
  EXPECT_EQ(db.One("SELECT cdc_config('idle_timeout_ms')"), "604800000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows', 5000)"), "5000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows')"), "5000");
  EXPECT_EQ(db.One("SELECT value FROM __cdc_meta WHERE key = 'retention.max_log_rows'"), "5000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_lag_ms', 0)"), "0");  // no limit
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows', NULL)"), "0");  // back to the default
  EXPECT_EQ(db.Error("SELECT cdc_config('max_rows')"),
            "cdc_config: unknown key 'max_rows' (keys: 'max_log_rows', 'max_lag_ms', 'idle_timeout_ms')");
  EXPECT_EQ(db.Error("SELECT cdc_config('max_lag_ms', -1)"),
            "cdc_config: max_lag_ms must be an integer >= 0 (0: no limit) or NULL (the default)");
  EXPECT_EQ(db.Error("SELECT cdc_config('max_lag_ms', '5')"),
            "cdc_config: max_lag_ms must be an integer >= 0 (0: no limit) or NULL (the default)");
  EXPECT_EQ(db.Error("SELECT cdc_config(NULL)"), "cdc_config: key must not be NULL");
  EXPECT_EQ(Status(db, "$.retention.max_lag_ms"), "0");
}

TEST(Retention, StalledConsumerLostAtMaxLogRowsWhileHealthyGetsEverything) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_log_rows', 300)");
  int64_t got = 0;
  for (int round = 0; round < 10; round++) {
    Write(db, 100);
    got += Drain(db, "healthy");
  }
  EXPECT_EQ(got, 1000);
  const std::string err = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err.find("cdc_poll: consumer 'stalled' was invalidated: it held 400 log rows"), std::string::npos) << err;
  EXPECT_NE(err.find("more than max_log_rows (300)"), std::string::npos) << err;
  EXPECT_NE(err.find("SELECT cdc_consumer_add('stalled'); then cdc_bootstrap(table)"), std::string::npos) << err;
  for (const char* read : {"SELECT cdc_ack('stalled', 5)", "SELECT cdc_wait('stalled', 0)",
                           "SELECT count(*) FROM cdc_changes('stalled')"}) {
    EXPECT_NE(db.Error(read).find("consumer 'stalled' was invalidated"), std::string::npos) << read;
  }
  EXPECT_EQ(Status(db, "$.consumers[1].name"), "stalled");
  EXPECT_EQ(Status(db, "$.consumers[1].state"), "lost");
  EXPECT_NE(Status(db, "$.consumers[1].lost_reason").find("max_log_rows (300)"), std::string::npos);
  EXPECT_EQ(Status(db, "$.consumers[0].state"), "active");
  EXPECT_NE(Status(db, "$.consumers[0].acked_ms"), "NULL");
  // The stalled consumer no longer holds the log.
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_log"), "1");
  // Recovery: add it again (from the newest change), then bootstrap.
  EXPECT_EQ(db.One("SELECT cdc_consumer_add('stalled', 'latest')"), "1000");
  EXPECT_EQ(db.One("SELECT cdc_poll('stalled')"), "[]");
  Write(db, 1);
  EXPECT_EQ(db.One("SELECT json_extract(cdc_poll('stalled'), '$[0].id')"), "1001");
  EXPECT_EQ(Status(db, "$.consumers[1].state"), "active");
}

TEST(Retention, StalledConsumerLostAtMaxLag) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('idle_timeout_ms', 0); SELECT cdc_config('max_lag_ms', 200)");
  Write(db, 10);
  EXPECT_EQ(Drain(db, "healthy"), 10);
  EXPECT_EQ(db.Error("SELECT cdc_poll('stalled')"), "");  // not yet
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Write(db, 10);
  EXPECT_EQ(Drain(db, "healthy"), 10);  // its ack checks the limits
  const std::string err = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err.find("its oldest unacked change was"), std::string::npos) << err;
  EXPECT_NE(err.find("more than max_lag_ms (200)"), std::string::npos) << err;
}

TEST(Retention, StalledConsumerLostAtIdleTimeout) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_lag_ms', 0); SELECT cdc_config('idle_timeout_ms', 200)");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(db.Error("SELECT cdc_poll('stalled')"), "");  // idle, but nothing pending: kept
  Write(db, 10);
  EXPECT_EQ(Drain(db, "healthy"), 10);
  const std::string err = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err.find("it had not acked for"), std::string::npos) << err;
  EXPECT_NE(err.find("more than idle_timeout_ms (200)"), std::string::npos) << err;
}

// A consumer that keeps up is never invalidated, even when one transaction
// puts more rows than max_log_rows into the log... as long as it was acked
// within the limit before: the row limit counts what a consumer holds.
TEST(Retention, HealthyConsumerKeepsEverythingUnderEachLimit) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_consumer_drop('stalled');"
          "SELECT cdc_config('max_log_rows', 1000); SELECT cdc_config('max_lag_ms', 60000);"
          "SELECT cdc_config('idle_timeout_ms', 60000)");
  int64_t got = 0;
  for (int round = 0; round < 20; round++) {
    Write(db, 400);
    got += Drain(db, "healthy");
  }
  EXPECT_EQ(got, 8000);
  EXPECT_EQ(Status(db, "$.consumers[0].state"), "active");
}

// DESIGN §9: a listener on a consumer that gets invalidated stops, with the
// error that says what happened and how to recover.
namespace {
int AlwaysFail(void*, const cdc_change*, int) { return 1; }
}  // namespace

TEST(Retention, ListenerOnInvalidatedConsumerStopsWithTheError) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_log_rows', 50)");
  char* err = nullptr;
  ASSERT_EQ(cdc_listen(db.get(), "stalled", AlwaysFail, nullptr, nullptr, "{\"retry_max_ms\": 50}", &err),
            SQLITE_OK)
      << (err ? err : "");
  Write(db, 100);
  EXPECT_EQ(Drain(db, "healthy"), 100);  // invalidates 'stalled'
  ASSERT_TRUE(Eventually([&] { return Status(db, "$.listeners[0].state") == "stopped"; }))
      << db.One("SELECT cdc_status()");
  const std::string last = Status(db, "$.listeners[0].last_error");
  EXPECT_NE(last.find("cdc_listen: consumer 'stalled' was invalidated: it held"), std::string::npos) << last;
  EXPECT_NE(last.find("cdc_consumer_add('stalled')"), std::string::npos) << last;
  ASSERT_EQ(cdc_unlisten(db.get(), "stalled", &err), SQLITE_OK) << (err ? err : "");
}

// The file stops growing under a steady write load with one consumer
// stalled: once it is invalidated, pruning frees pages and new log rows reuse
// them (PRAGMA page_count stays put, the freelist is used).
TEST(Retention, FileStopsGrowingWithAStalledConsumer) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_log_rows', 5000); CREATE TABLE keep(id INTEGER PRIMARY KEY)");
  int64_t pages_at_10 = 0, pages = 0;
  for (int round = 1; round <= 60; round++) {
    Write(db, 1000);
    db.Exec("DELETE FROM t");  // the user's table stays small: the log is what could grow
    Drain(db, "healthy");
    pages = std::stoll(db.One("PRAGMA page_count"));
    if (round == 10) pages_at_10 = pages;
  }
  EXPECT_NE(db.Error("SELECT cdc_poll('stalled')"), "");
  EXPECT_LE(pages, pages_at_10) << "page_count grew from " << pages_at_10 << " to " << pages;
  EXPECT_LT(std::stoll(db.One("SELECT count(*) FROM __cdc_log")), 5000);
}

// Without a stalled consumer... and without any: dropping the last consumer
// prunes the log to its newest event (nobody is left to read it); changes
// made while no consumer exists are kept for one added later ('earliest').
TEST(Retention, NoConsumerNoBacklog) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  Write(db, 1000);
  db.Exec("SELECT cdc_consumer_drop('healthy'); SELECT cdc_consumer_drop('stalled')");
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_log"), "1");
  Write(db, 10);
  EXPECT_EQ(db.One("SELECT cdc_consumer_add('late')"), "999");  // earliest: the retained newest one on
  EXPECT_EQ(Drain(db, "late"), 11);
}

TEST(Retention, StatusShowsLogBytes) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  const int64_t empty = std::stoll(Status(db, "$.log_bytes"));
  Write(db, 2000);
  EXPECT_GT(std::stoll(Status(db, "$.log_bytes")), empty + 2000 * 10);
}
