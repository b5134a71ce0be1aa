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

using cdctest::Eventually;

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
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_bytes')"), "0");
  EXPECT_EQ(db.One("SELECT cdc_config('max_lag_ms')"), "604800000");
  EXPECT_EQ(db.One("SELECT cdc_config('idle_timeout_ms')"), "604800000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows', 5000)"), "5000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows')"), "5000");
  EXPECT_EQ(db.One("SELECT value FROM __cdc_meta WHERE key = 'retention.max_log_rows'"), "5000");
  EXPECT_EQ(db.One("SELECT cdc_config('max_lag_ms', 0)"), "0");  // no limit
  EXPECT_EQ(db.One("SELECT cdc_config('max_log_rows', NULL)"), "0");  // back to the default
  EXPECT_EQ(db.Error("SELECT cdc_config('max_rows')"),
            "cdc_config: unknown key 'max_rows' (keys: 'max_log_rows', 'max_log_bytes', 'max_lag_ms', "
            "'idle_timeout_ms')");
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
  EXPECT_NE(err.find("it had not read or acked for"), std::string::npos) << err;
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
          "SELECT cdc_config('max_log_bytes', 100000);"
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

// --- max_log_bytes --------------------------------------------------------

namespace {

// Rows of about `size` bytes each.
void WriteWide(Db& db, int n, int size) {
  db.Exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " + std::to_string(n) +
          ") INSERT INTO t(v) SELECT printf('%." + std::to_string(size) + "c', 'x') FROM c");
}

int64_t Counted(Db& db) {
  return std::stoll(db.One("SELECT coalesce((SELECT value FROM __cdc_meta WHERE key = 'log_bytes.total'), -1)"));
}

// What SQLite stores for the log's rows (dbstat: cell payloads, local and
// on overflow pages).
int64_t StoredPayload(Db& db) {
  return std::stoll(db.One("SELECT coalesce(sum(payload), 0) FROM dbstat WHERE name = '__cdc_log'"));
}

}  // namespace

TEST(Retention, StalledConsumerLostAtMaxLogBytesWhileHealthyGetsEverything) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_log_bytes', 200000)");
  int64_t got = 0;
  int round = 0;
  for (; round < 20 && db.Error("SELECT cdc_wait('stalled', 0)").empty(); round++) {
    WriteWide(db, 40, 1000);  // about 41 KB of log a round
    got += Drain(db, "healthy");
  }
  EXPECT_EQ(round, 5);  // lost at the ack after the 5th round: about 205 KB held
  EXPECT_EQ(got, 40 * round);
  const std::string err = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err.find("cdc_poll: consumer 'stalled' was invalidated: it held about 2"), std::string::npos) << err;
  EXPECT_NE(err.find("bytes of log rows, more than max_log_bytes (200000)"), std::string::npos) << err;
  EXPECT_NE(err.find("SELECT cdc_consumer_add('stalled'); then cdc_bootstrap(table)"), std::string::npos) << err;
  EXPECT_EQ(Status(db, "$.consumers[1].state"), "lost");
  EXPECT_NE(Status(db, "$.consumers[1].lost_reason").find("max_log_bytes (200000)"), std::string::npos);
  EXPECT_EQ(Status(db, "$.consumers[0].state"), "active");
  EXPECT_EQ(Status(db, "$.retention.max_log_bytes"), "200000");
  // It no longer holds the log; the healthy one keeps receiving everything.
  for (int i = 0; i < 10; i++) {
    WriteWide(db, 40, 1000);
    got += Drain(db, "healthy");
  }
  EXPECT_EQ(got, 40 * (round + 10));
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_log"), "1");
  EXPECT_EQ(Status(db, "$.consumers[0].state"), "active");
}

// The running count matches what SQLite stores, without scanning the log:
// new rows are measured once, pruned ones subtracted.
TEST(Retention, ByteCountFollowsTheLog) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v, w, x);"
          "SELECT cdc_setup('t'); SELECT cdc_consumer_add('a'); SELECT cdc_consumer_add('b');"
          "SELECT cdc_config('max_log_bytes', 100000000)");
  // Values of every type and size: small and large integers, reals, NULLs,
  // short and long text (overflow pages), blobs; UPDATEs (two rows each).
  db.Exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000) "
          "INSERT INTO t(v, w, x) SELECT i * 1000003, CASE WHEN i % 3 THEN i / 7.0 END, "
          "CASE i % 4 WHEN 0 THEN randomblob(i % 200) WHEN 1 THEN printf('%.*c', i, 'y') ELSE 'abc' END FROM c");
  db.Exec("UPDATE t SET w = 'changed' WHERE id % 5 = 0");
  // The database is below the limit: nothing is measured.
  db.Exec("SELECT cdc_ack('a', 1)");
  EXPECT_EQ(db.One("SELECT value FROM __cdc_meta WHERE key = 'log_bytes.upto'"), "0");
  // Over it: everything new is measured at the next check.
  db.Exec("SELECT cdc_config('max_log_bytes', 10000)");
  const int64_t stored = StoredPayload(db), rows = std::stoll(db.One("SELECT count(*) FROM __cdc_log"));
  int64_t counted = Counted(db);
  // The count adds each cell's key and size varints and its 2-byte pointer.
  EXPECT_GE(counted, stored) << rows;
  EXPECT_LE(counted, stored + 12 * rows) << rows;
  // Dropping both prunes the log to its newest event: counted out.
  db.Exec("SELECT cdc_consumer_drop('a'); SELECT cdc_consumer_drop('b')");
  EXPECT_LE(Counted(db), StoredPayload(db) + 24);
  // Pruning subtracts what it deletes.
  db.Exec("SELECT cdc_config('max_log_bytes', 500000); SELECT cdc_consumer_add('a'); SELECT cdc_consumer_add('b');"
          "UPDATE t SET v = v + 1 WHERE id <= 300");
  db.Exec("SELECT cdc_ack('a', (SELECT max(id) FROM __cdc_log));"
          "SELECT cdc_ack('b', (SELECT max(id) - 300 FROM __cdc_log))");
  const int64_t rows_left = std::stoll(db.One("SELECT count(*) FROM __cdc_log"));
  EXPECT_LT(rows_left, 310);
  EXPECT_GT(rows_left, 290);
  counted = Counted(db);
  const int64_t stored_left = StoredPayload(db);
  EXPECT_GE(counted, stored_left) << rows_left;
  EXPECT_LE(counted, stored_left + 12 * rows_left) << rows_left;
  // Removing the limit forgets the count: pruning no longer measures.
  db.Exec("SELECT cdc_config('max_log_bytes', NULL)");
  EXPECT_EQ(Counted(db), -1);
}

// A count left stale by something that pruned without counting (a version
// without max_log_bytes) is started again, not trusted.
TEST(Retention, StaleByteCountIsCountedAgain) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('max_log_bytes', 1000000000)");
  WriteWide(db, 400, 1000);
  db.Exec("SELECT cdc_config('max_log_bytes', 300000)");  // measures 400 KB: both lost
  EXPECT_GT(Counted(db), 400000);
  db.Exec("SELECT cdc_consumer_add('healthy', 'latest'); SELECT cdc_consumer_add('stalled', 'latest');"
          "DELETE FROM __cdc_log WHERE id <= 300");  // an uncounted prune
  WriteWide(db, 10, 1000);
  EXPECT_EQ(Drain(db, "healthy"), 10);
  const int64_t rows = std::stoll(db.One("SELECT count(*) FROM __cdc_log"));
  EXPECT_GE(Counted(db), StoredPayload(db));
  EXPECT_LE(Counted(db), StoredPayload(db) + 12 * rows);
  EXPECT_EQ(db.Error("SELECT cdc_poll('stalled')"), "");
}

// --- when a consumer last read -------------------------------------------

TEST(Retention, StatusShowsWhenAConsumerLastRead) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('idle_timeout_ms', 3000)");  // reads recorded to 300 ms
  Write(db, 10);
  EXPECT_EQ(Status(db, "$.consumers[0].read_ms"), "NULL");
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  const int64_t t0 = std::stoll(db.One("SELECT CAST((julianday() - 2440587.5) * 86400000 AS INTEGER)"));
  EXPECT_NE(db.One("SELECT cdc_poll('healthy')"), "[]");  // no ack
  const int64_t r1 = std::stoll(Status(db, "$.consumers[0].read_ms"));
  EXPECT_GE(r1, t0);
  EXPECT_EQ(Status(db, "$.consumers[0].acked_ms"), "NULL");
  // Within the granularity: not recorded again (no write).
  db.One("SELECT cdc_poll('healthy')");
  EXPECT_EQ(std::stoll(Status(db, "$.consumers[0].read_ms")), r1);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  db.One("SELECT cdc_poll('healthy')");
  EXPECT_GE(std::stoll(Status(db, "$.consumers[0].read_ms")), r1 + 300);
  // A read that finds nothing writes nothing.
  EXPECT_EQ(Drain(db, "stalled"), 10);
  const std::string after_ack = Status(db, "$.consumers[1].read_ms");
  EXPECT_EQ(after_ack, Status(db, "$.consumers[1].acked_ms"));  // an ack counts as a read
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_EQ(db.One("SELECT cdc_poll('stalled')"), "[]");
  EXPECT_EQ(Status(db, "$.consumers[1].read_ms"), after_ack);
  // Dropping a consumer forgets it.
  db.Exec("SELECT cdc_consumer_drop('healthy')");
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_meta WHERE key = 'read.healthy'"), "0");
}

// The idle timeout is "has not read or acked": a consumer that keeps reading
// without acking is kept (max_lag_ms is the limit for that), one that does
// neither is invalidated.
TEST(Retention, IdleTimeoutCountsReads) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_consumer_add('reader'); SELECT cdc_config('max_lag_ms', 0);"
          "SELECT cdc_config('idle_timeout_ms', 600)");
  for (int i = 0; i < 15; i++) {
    Write(db, 1);
    Drain(db, "healthy");  // its acks check the limits
    EXPECT_NE(db.One("SELECT cdc_poll('reader')"), "[]");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Drain(db, "healthy");
  const std::string err = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err.find("it had not read or acked for"), std::string::npos) << err;
  EXPECT_EQ(db.Error("SELECT cdc_poll('reader')"), "");
  EXPECT_EQ(Status(db, "$.consumers[1].state"), "active");  // reader
  EXPECT_EQ(Status(db, "$.consumers[2].state"), "lost");
}

// Recording a read never waits for the write lock, and never writes inside
// the caller's transaction.
TEST(Retention, RecordingAReadNeverWaits) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_config('idle_timeout_ms', 1000)");
  Write(db, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  db.Exec("PRAGMA busy_timeout = 5000");
  Db other(tmp.File("t.db"));
  other.Exec("BEGIN IMMEDIATE");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(db.One("SELECT cdc_poll('healthy')"), "[]");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_EQ(db.One("PRAGMA busy_timeout"), "5000");  // given back
  other.Exec("COMMIT");
  EXPECT_EQ(Status(db, "$.consumers[0].read_ms"), "NULL");  // the lock was taken: not recorded
  db.Exec("BEGIN");
  db.One("SELECT cdc_poll('healthy')");
  db.Exec("COMMIT");
  EXPECT_EQ(Status(db, "$.consumers[0].read_ms"), "NULL");  // in a transaction: not recorded
  db.One("SELECT cdc_poll('healthy')");
  EXPECT_NE(Status(db, "$.consumers[0].read_ms"), "NULL");
}

// A listener whose callback keeps failing reads the same batch again and
// again: it is not idle (its acker records the reads), though it never
// acks; a consumer nobody reads is.
TEST(Retention, ListenerRetryingIsNotIdle) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  MakeTwoConsumers(db);
  db.Exec("SELECT cdc_consumer_add('retry'); SELECT cdc_config('max_lag_ms', 0);"
          "SELECT cdc_config('idle_timeout_ms', 2000)");  // the acker tries to record every 250 ms
  char* err = nullptr;
  ASSERT_EQ(cdc_listen(db.get(), "retry", AlwaysFail, nullptr, nullptr, "{\"retry_max_ms\": 50}", &err), SQLITE_OK)
      << (err ? err : "");
  for (int i = 0; i < 30; i++) {
    Write(db, 1);
    Drain(db, "healthy");  // its acks check the limits
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string err_stalled = db.Error("SELECT cdc_poll('stalled')");
  EXPECT_NE(err_stalled.find("it had not read or acked for"), std::string::npos) << err_stalled;
  EXPECT_EQ(Status(db, "$.consumers[1].name"), "retry");
  EXPECT_EQ(Status(db, "$.consumers[1].state"), "active") << Status(db, "$.consumers[1].lost_reason");
  EXPECT_EQ(Status(db, "$.consumers[1].acked_ms"), "NULL");
  const int64_t now = std::stoll(db.One("SELECT CAST((julianday() - 2440587.5) * 86400000 AS INTEGER)"));
  EXPECT_GT(std::stoll(Status(db, "$.consumers[1].read_ms")), now - 2000);
  EXPECT_EQ(Status(db, "$.listeners[0].state"), "retrying");
  ASSERT_EQ(cdc_unlisten(db.get(), "retry", &err), SQLITE_OK) << (err ? err : "");
}
