// reliability_test.cc — faults a user's database meets: another writer
// holding the lock, a full disk, a writer process killed mid-transaction.
// (The multi-process soak is tests/soak/soak.cc; fuzzing is tests/fuzz/.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "json_reader.h"
#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

namespace {

// Another connection holds the write lock; `sql` (a writing cdc_ function
// called in autocommit) must wait for it through the busy handler and then
// succeed, not fail at once with "database is locked". Before the fix, the
// functions opened a deferred transaction, read, and then could not upgrade.
std::string RunWhileLocked(const std::string& path, Db& db, const std::string& sql) {
  Db other(path, false);
  other.Exec("BEGIN IMMEDIATE; INSERT INTO t(v) VALUES('from the other writer')");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    other.Exec("COMMIT");
  });
  std::string err = db.Error(sql);
  release.join();
  return err;
}

class WhileAnotherWriterHoldsTheLock : public ::testing::TestWithParam<const char*> {};

TEST_P(WhileAnotherWriterHoldsTheLock, WritingFunctionsWaitInsteadOfFailing) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec(std::string("PRAGMA journal_mode=") + GetParam());
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(a, b, PRIMARY KEY(a, b)) WITHOUT ROWID;"
          "INSERT INTO t(v) VALUES(1),(2),(3),(4),(5); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c')");
  for (const char* sql : {"SELECT cdc_setup('u')", "SELECT cdc_setup('t')", "SELECT cdc_consumer_add('d')",
                          "SELECT cdc_bootstrap('t', 2)", "SELECT cdc_bootstrap('t', 2)", "SELECT cdc_bootstrap('t')",
                          "SELECT cdc_ack('c', 3)", "SELECT cdc_consumer_drop('d')", "SELECT cdc_teardown('u')"}) {
    EXPECT_EQ(RunWhileLocked(path, db, sql), "") << sql;
  }
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), std::to_string(5 + 9));
}

INSTANTIATE_TEST_SUITE_P(JournalModes, WhileAnotherWriterHoldsTheLock, ::testing::Values("wal", "delete"));

// Replays every event of consumer `name` (acking as it goes) into id -> v.
std::map<int64_t, std::string> Replay(Db& db, const std::string& name) {
  std::map<int64_t, std::string> rows;
  for (;;) {
    std::string batch = db.One("SELECT cdc_poll('" + name + "', 500)");
    cdcjson::Json arr;
    cdcjson::Reader rd;
    EXPECT_TRUE(rd.Parse(batch, &arr)) << rd.error();
    if (arr.items.empty()) break;
    int64_t last = 0;
    for (auto& e : arr.items) {
      last = e.Get("id")->i;
      const std::string op = e.Get("op")->s;
      if (op == "INSERT" || op == "UPDATE") {
        const cdcjson::Json* after = e.Get("after");
        if (op == "UPDATE") rows.erase(e.Get("before")->Get("id")->i);
        rows[after->Get("id")->i] = after->Get("v")->s;
      } else if (op == "DELETE") {
        rows.erase(e.Get("before")->Get("id")->i);
      }
    }
    db.Exec("SELECT cdc_ack('" + name + "', " + std::to_string(last) + ")");
  }
  return rows;
}

class DiskFull : public ::testing::TestWithParam<const char*> {};

// A small max_page_count: statements fail with SQLITE_FULL exactly as they
// would without capture, and afterwards the log agrees with the table: no
// event without its row, no row without its event.
TEST_P(DiskFull, StatementsFailCleanlyAndTheLogStaysConsistent) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec(std::string("PRAGMA journal_mode=") + GetParam());
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c')");
  int64_t pages = std::stoll(db.One("PRAGMA page_count"));
  db.Exec("PRAGMA max_page_count=" + std::to_string(pages + 12));
  std::mt19937 rng(7);
  int full = 0, ok = 0;
  for (int i = 0; i < 600 && full < 40; i++) {
    int id = static_cast<int>(rng() % 60);
    std::string v(static_cast<size_t>(rng() % 6000), static_cast<char>('a' + rng() % 26));
    std::string sql;
    switch (rng() % 4) {
      case 0: sql = "INSERT OR REPLACE INTO t VALUES(" + std::to_string(id) + ", '" + v + "')"; break;
      case 1: sql = "UPDATE t SET v = '" + v + "' WHERE id = " + std::to_string(id); break;
      case 2: sql = "DELETE FROM t WHERE id = " + std::to_string(id); break;
      default:
        sql = "BEGIN; INSERT OR REPLACE INTO t VALUES(" + std::to_string(id) + ", '" + v + "'); UPDATE t SET v = v || 'x' WHERE id % 7 = " +
              std::to_string(id % 7) + "; COMMIT";
    }
    int rc = sqlite3_exec(db.get(), sql.c_str(), nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      ok++;
      continue;
    }
    ASSERT_EQ(rc, SQLITE_FULL) << sqlite3_errmsg(db.get()) << "\n" << sql.substr(0, 120);
    EXPECT_STREQ(sqlite3_errmsg(db.get()), "database or disk is full");
    full++;
    if (!sqlite3_get_autocommit(db.get())) db.Exec("ROLLBACK");
    // The log can still be read while the database is full.
    EXPECT_NE(db.One("SELECT count(*) FROM cdc_changes('c')"), "");
  }
  EXPECT_GT(full, 0);
  EXPECT_GT(ok, 0);
  db.Exec("PRAGMA max_page_count=1000000");
  std::map<int64_t, std::string> replica = Replay(db, "c"), table;
  for (auto& r : db.Rows("SELECT id, v FROM t")) {
    size_t bar = r.find('|');
    table[std::stoll(r.substr(0, bar))] = r.substr(bar + 1);
  }
  EXPECT_EQ(replica, table);
}

INSTANTIATE_TEST_SUITE_P(JournalModes, DiskFull, ::testing::Values("wal", "delete"));

// A writer process (the plain sqlite3 shell, no extension) is killed with
// SIGKILL inside a transaction: neither its rows nor its events survive, and
// later writes get fresh, larger ids.
TEST(KilledWriter, LeavesNeitherRowsNorEvents) {
  for (const char* mode : {"wal", "delete"}) {
    TempDir tmp;
    const std::string path = tmp.File("t.db");
    Db db(path);
    db.Exec(std::string("PRAGMA journal_mode=") + mode);
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
            "INSERT INTO t VALUES(1, 'kept')");
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      execl(CDC_SQLITE3_SHELL, "sqlite3", "-batch", path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    // Enough rows that the pager spills pages to the WAL/database file before
    // the commit that never comes.
    std::string script =
        "PRAGMA cache_size=10;\nBEGIN;\nWITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i+1 FROM n WHERE i < 3000) "
        "INSERT INTO t SELECT i, randomblob(200) FROM n;\nUPDATE t SET v = 'changed' WHERE id = 1;\nSELECT 'ready';\n";
    ASSERT_EQ(write(in[1], script.data(), script.size()), static_cast<ssize_t>(script.size()));
    std::string got;
    char buf[64];
    while (got.find("ready") == std::string::npos) {
      ssize_t n = read(out[0], buf, sizeof buf);
      ASSERT_GT(n, 0) << "shell ended early: " << got;
      got.append(buf, static_cast<size_t>(n));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(in[1]);
    close(out[0]);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(db.Rows("SELECT id, v FROM t"), std::vector<std::string>{"1|kept"}) << mode;
    EXPECT_EQ(db.One("SELECT count(*) FROM cdc_changes('c')"), "1") << mode;
    db.Exec("INSERT INTO t VALUES(2, 'after')");
    EXPECT_EQ(db.Rows("SELECT op, after FROM cdc_changes('c')"),
              (std::vector<std::string>{"INSERT|{\"id\":1,\"v\":\"kept\"}", "INSERT|{\"id\":2,\"v\":\"after\"}"}))
        << mode;
  }
}

// A statement whose BEFORE trigger staged REPLACE candidates but whose AFTER
// trigger never ran (skipped by DO NOTHING / OR IGNORE, or an upsert turned
// into an UPDATE) left rows in the stage; a later UPDATE that changed the key
// of such a row logged a DELETE for a row that still exists (found by the
// soak: "saw D ..., which no committed statement made").
TEST(StagedReplaceRows, LeftoversNeverBecomePhantomDeletes) {
  struct Case {
    const char* create;
    const char* seed;
    const char* statements;
    const char* ops;
  };
  const Case cases[] = {
      {"CREATE TABLE t(id INTEGER PRIMARY KEY, code TEXT UNIQUE, v)", "INSERT INTO t VALUES(5, 'k', 'x')",
       "INSERT INTO t VALUES(6, 'k', 'skipped') ON CONFLICT DO NOTHING; UPDATE t SET id = 9 WHERE id = 5", "INSERT,UPDATE"},
      {"CREATE TABLE t(id INTEGER PRIMARY KEY, code TEXT UNIQUE, v)", "INSERT INTO t VALUES(5, 'k', 'x')",
       "INSERT OR IGNORE INTO t VALUES(6, 'k', 'skipped'); UPDATE t SET id = 9, v = 'y' WHERE id = 5", "INSERT,UPDATE"},
      {"CREATE TABLE t(id INTEGER PRIMARY KEY, code TEXT UNIQUE, v)", "INSERT INTO t VALUES(5, 'k', 'x'), (7, 'j', 'y')",
       "UPDATE OR IGNORE t SET code = 'k' WHERE id = 7; UPDATE t SET id = 9 WHERE id = 5", "INSERT,INSERT,UPDATE"},
      {"CREATE TABLE t(id INTEGER PRIMARY KEY, code TEXT UNIQUE, v)", "INSERT INTO t VALUES(5, 'k', 'x')",
       "INSERT INTO t VALUES(6, 'k', 'up') ON CONFLICT(code) DO UPDATE SET id = 9", "INSERT,UPDATE"},
      {"CREATE TABLE t(a TEXT, b INT, code TEXT UNIQUE, PRIMARY KEY(a, b)) WITHOUT ROWID", "INSERT INTO t VALUES('p', 1, 'k')",
       "INSERT OR IGNORE INTO t VALUES('p', 2, 'k'); UPDATE t SET b = 3 WHERE b = 1", "INSERT,UPDATE"},
      // A real REPLACE victim is still logged, after leftovers.
      {"CREATE TABLE t(id INTEGER PRIMARY KEY, code TEXT UNIQUE, v)", "INSERT INTO t VALUES(5, 'k', 'x'), (7, 'j', 'y')",
       "INSERT OR IGNORE INTO t VALUES(6, 'k', 'skipped'); UPDATE OR REPLACE t SET code = 'k', id = 8 WHERE id = 7",
       "INSERT,INSERT,DELETE,UPDATE"},
  };
  for (const Case& c : cases) {
    TempDir tmp;
    Db db(tmp.File("t.db"));
    db.Exec(c.create);
    db.Exec("SELECT cdc_setup('t'); SELECT cdc_consumer_add('c')");
    db.Exec(c.seed);
    db.Exec(c.statements);
    EXPECT_EQ(db.One("SELECT group_concat(op) FROM (SELECT op FROM cdc_changes('c') ORDER BY id)"), c.ops) << c.statements;
  }
}

}  // namespace
