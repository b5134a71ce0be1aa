// schema_change_test.cc — DDL on captured tables never leaves a consumer
// silently stale (DESIGN §8, drift.cc).
//
// Each pattern runs the way applications run it: a migration from a
// connection that never loaded the extension (as an ORM's own driver would),
// while a writer process that never loaded it either keeps inserting, with
// one consumer on cdc_poll and one on a listener (its own thread and
// connection). Afterwards every consumer's replica, built only from the
// events, equals the table, and the stream holds exactly the resyncs the
// change called for.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "cdc.h"
#include "events.h"
#include "testing.h"

extern char** environ;

using cdctest::Db;
using cdctest::Dump;
using cdctest::Ev;
using cdctest::ParseEvents;
using cdctest::Scalar;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

namespace {

// A consumer's copy of the database, built from events alone. Tables are
// keyed by their "id" column.
struct Replica {
  std::map<std::string, std::map<int64_t, std::string>> tables;
  std::vector<std::string> markers;  // "BOOTSTRAP t (reason)", "DROP t (reason)"

  void Apply(const Ev& e) {
    if (e.op == "BOOTSTRAP" || e.op == "DROP") {
      tables[e.table].clear();
      if (e.op == "DROP") tables.erase(e.table);
      markers.push_back(e.op + " " + e.table + " (" + e.reason + ")");
    } else if (e.op == "DELETE") {
      tables[e.table].erase(e.before["id"].i);
    } else {
      tables[e.table][e.after["id"].i] = Dump(e.after);
    }
  }
  // Rows of `table` as the database has them, in the images' JSON form.
  static std::map<int64_t, std::string> Actual(Db& db, const std::string& table) {
    std::string obj;
    for (auto& c : db.Rows("SELECT name FROM pragma_table_xinfo('" + table + "') WHERE hidden IN (0, 2, 3)")) {
      obj += std::string(obj.empty() ? "" : ", ") + "'" + c + "', \"" + c + "\"";
    }
    std::map<int64_t, std::string> out;
    for (auto& r : db.Rows("SELECT id, json_object(" + obj + ") FROM \"" + table + "\"")) {
      size_t bar = r.find('|');
      out[std::stoll(r.substr(0, bar))] = r.substr(bar + 1);
    }
    return out;
  }
};

// A cdc_poll consumer on its own connection.
struct Poller {
  Poller(const std::string& path, const std::string& name) : db(path), name(name) {
    db.Exec("PRAGMA busy_timeout=10000");
  }
  // Reads and acks until nothing is pending; returns the events read.
  size_t Drain() {
    size_t n = 0;
    for (;;) {
      auto evs = ParseEvents(Scalar(db.get(), "SELECT cdc_poll('" + name + "', 500)"));
      if (evs.empty()) return n;
      for (auto& e : evs) replica.Apply(e);
      n += evs.size();
      db.Exec("SELECT cdc_ack('" + name + "', " + std::to_string(evs.back().id) + ")");
    }
  }
  Db db;
  std::string name;
  Replica replica;
};

// A listener consumer: its callback applies each batch to a replica.
struct Listening {
  std::mutex mu;
  Replica replica;
  int64_t last = 0;
  static int OnBatch(void* user, const cdc_change* c, int n) {
    auto* self = static_cast<Listening*>(user);
    std::lock_guard<std::mutex> g(self->mu);
    for (int i = 0; i < n; i++) {
      std::string json = std::string("[{\"id\":") + std::to_string(c[i].id) + ",\"ts\":" + std::to_string(c[i].ts) +
                         ",\"table\":\"" + c[i].table + "\",\"op\":\"" + c[i].op + "\",\"before\":" +
                         (c[i].before ? c[i].before : "null") + ",\"after\":" + (c[i].after ? c[i].after : "null") +
                         "}]";
      for (auto& e : ParseEvents(json)) {
        e.reason = c[i].reason ? c[i].reason : "";
        self->replica.Apply(e);
      }
      self->last = c[i].id;
    }
    return 0;
  }
};

pid_t SpawnWriter(const std::string& path, int count, int pause_ms, const std::string& sql) {
  std::vector<std::string> args = {CDC_TEST_WRITER, path, std::to_string(count), std::to_string(pause_ms)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; e++) env_s.push_back(*e);
  env_s.push_back("CDC_WRITER_SQL=" + sql);
  std::vector<char*> env;
  for (auto& e : env_s) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, CDC_TEST_WRITER, nullptr, nullptr, argv.data(), env.data()), 0);
  return pid;
}

struct Pattern {
  const char* name;
  const char* migration;   // run by a connection without the extension
  const char* writer_sql;  // what the writer process inserts (nullptr: no writer)
  Lines markers;           // what every consumer must see, in order
  const char* table_after; // the captured table's name afterwards ("" when none)
};

class SchemaChange : public ::testing::TestWithParam<std::tuple<Pattern, bool>> {};

TEST_P(SchemaChange, ConsumersConvergeWithExactlyTheResyncsNeeded) {
  const Pattern& p = std::get<0>(GetParam());
  const bool legacy = std::get<1>(GetParam());
  TempDir tmp;
  const std::string path = tmp.File("app.db");
  {
    Db setup(path);
    setup.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
               "SELECT cdc_setup('t'), cdc_consumer_add('poll'), cdc_consumer_add('listen');"
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
               "INSERT INTO t(v) SELECT i FROM n;");
  }
  Poller poller(path, "poll");
  Db lconn(path);
  Listening listening;
  char* err = nullptr;
  ASSERT_EQ(cdc_listen(lconn.get(), "listen", Listening::OnBatch, &listening, nullptr, "{\"batch\": 64}", &err),
            SQLITE_OK)
      << (err ? err : "");
  pid_t writer = p.writer_sql ? SpawnWriter(path, 300, 1, p.writer_sql) : -1;
  Db mig(path, false);
  mig.Exec("PRAGMA busy_timeout=10000");
  // Let the writer get going, with both consumers reading, then migrate.
  for (int i = 0; i < 50 && writer > 0 && std::stoi(mig.One("SELECT count(*) FROM t")) < 160; i++) {
    poller.Drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  poller.Drain();
  mig.Exec(std::string("PRAGMA legacy_alter_table=") + (legacy ? "ON" : "OFF"));
  mig.Exec(p.migration);
  if (writer > 0) {
    int status = 0;
    while (waitpid(writer, &status, WNOHANG) == 0) {
      poller.Drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the writer failed";
  }
  // Every reader keeps the resync going; drain until both are at the end.
  for (int i = 0; i < 3; i++) poller.Drain();
  const std::string t = p.table_after;
  auto newest = [&] { return std::stoll(poller.db.One("SELECT coalesce(max(id), 0) FROM __cdc_log WHERE op <> 0")); };
  bool caught_up = false;
  for (int i = 0; i < 4000 && !caught_up; i++) {
    poller.Drain();
    std::lock_guard<std::mutex> g(listening.mu);
    caught_up = listening.last >= newest() &&
                poller.db.One("SELECT count(*) FROM json_each(cdc_status(), '$.tables') "
                                "WHERE json_extract(value, '$.resyncing')") == "0";
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(caught_up) << "listener at " << listening.last << ", log at " << newest();
  EXPECT_EQ(cdc_unlisten(lconn.get(), "listen", nullptr), SQLITE_OK);

  for (Replica* r : {&poller.replica, &listening.replica}) {
    EXPECT_EQ(r->markers, p.markers);
    if (t.empty()) {
      EXPECT_EQ(r->tables.count("t"), 0u);
    } else {
      EXPECT_EQ(r->tables[t], Replica::Actual(mig, t));
    }
    for (auto& [name, rows] : r->tables) {
      if (name != t) {
        EXPECT_TRUE(rows.empty()) << name << " left in a replica";
      }
    }
  }
  // Capture goes on (or ended, for a dropped table) as cdc_status says.
  EXPECT_EQ(poller.db.One("SELECT group_concat(json_extract(value, '$.name') || ':' || "
                          "json_extract(value, '$.state')) FROM json_each(cdc_status(), '$.tables')"),
            t.empty() ? "NULL" : t + ":intact");
}

const Pattern kPatterns[] = {
    // SQLite's documented procedure, as knex, Django, Prisma, Drizzle do it.
    {"RebuildCopyDropRename",
     "BEGIN; CREATE TABLE t_new(id INTEGER PRIMARY KEY, v, w DEFAULT 0);"
     "INSERT INTO t_new(id, v) SELECT id, v FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t; COMMIT;",
     "INSERT INTO t(v) VALUES(?1)", {"BOOTSTRAP t (triggers missing)"}, "t"},
    // The other order (Sequelize, TypeORM): rename away, create, copy back.
    {"RebuildRenameAwayCopyBack",
     "BEGIN; ALTER TABLE t RENAME TO t_old; CREATE TABLE t(id INTEGER PRIMARY KEY, v, w DEFAULT 0);"
     "INSERT INTO t(id, v) SELECT id, v FROM t_old; DROP TABLE t_old; COMMIT;",
     "INSERT INTO t(v) VALUES(?1)", {"BOOTSTRAP t (triggers missing)"}, "t"},
    {"DropAndCreate", "BEGIN; DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, v); COMMIT;",
     "INSERT INTO t(v) VALUES(?1)", {"BOOTSTRAP t (triggers missing)"}, "t"},
    {"AddColumn", "ALTER TABLE t ADD COLUMN w DEFAULT 7;", "INSERT INTO t(v) VALUES(?1)",
     {"BOOTSTRAP t (columns changed)"}, "t"},
    {"RenameColumn", "ALTER TABLE t RENAME COLUMN v TO v2;", "INSERT INTO t VALUES(NULL, ?1)",
     {"BOOTSTRAP t (columns changed)"}, "t"},
    {"RenameTable", "ALTER TABLE t RENAME TO t2; INSERT INTO t2(v) VALUES('after');", nullptr,
     {"DROP t (renamed to t2)", "BOOTSTRAP t2 (renamed from t)"}, "t2"},
    {"DropTable", "DROP TABLE t;", nullptr, {"DROP t (dropped)"}, ""},
    {"CreateAndDropIndex", "CREATE INDEX t_v ON t(v); DROP INDEX t_v;", "INSERT INTO t(v) VALUES(?1)", {}, "t"},
};

INSTANTIATE_TEST_SUITE_P(Patterns, SchemaChange,
                         ::testing::Combine(::testing::ValuesIn(kPatterns), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) +
                                  (std::get<1>(info.param) ? "_Legacy" : "");
                         });

// The recipe of docs/schema-changes.md: ALTER and cdc_setup in one transaction. Nothing else
// could write in between, so there is nothing to resync.
TEST(SchemaChangeRecipe, AlterAndSetupInOneTransactionNeedNoResync) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "INSERT INTO t(v) VALUES(1);"
          "BEGIN; ALTER TABLE t ADD COLUMN w DEFAULT 0; SELECT cdc_setup('t'); COMMIT;"
          "INSERT INTO t(v, w) VALUES(2, 2);"
          "BEGIN; ALTER TABLE t RENAME COLUMN w TO w2; SELECT cdc_setup('t'); COMMIT;"
          "UPDATE t SET w2 = 3 WHERE id = 2;"
          // DROP COLUMN: SQLite refuses while a trigger names the column;
          // teardown, drop, setup in one transaction.
          "BEGIN; SELECT cdc_teardown('t'); ALTER TABLE t DROP COLUMN w2; SELECT cdc_setup('t'); COMMIT;"
          "DELETE FROM t WHERE id = 1;"
          "BEGIN; CREATE UNIQUE INDEX t_v ON t(v); SELECT cdc_setup('t'); COMMIT;"
          "INSERT OR REPLACE INTO t(id, v) VALUES(9, 2);");
  EXPECT_EQ(cdctest::Describe(cdctest::PollAll(db, "c")),
            (Lines{R"(t INSERT null {"id":1,"v":1})", R"(t INSERT null {"id":2,"v":2,"w":2})",
                   R"(t UPDATE {"id":2,"v":2,"w2":2} {"id":2,"v":2,"w2":3})", R"(t DELETE {"id":1,"v":1} null)",
                   R"(t DELETE {"id":2,"v":2} null)", R"(t INSERT null {"id":9,"v":2})"}));
}

TEST(SchemaChangeRecipe, DropColumnIsRefusedWhileCaptured) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v, w); SELECT cdc_setup('t')");
  EXPECT_NE(db.Error("ALTER TABLE t DROP COLUMN w"), "");
  EXPECT_EQ(db.One("SELECT count(*) FROM pragma_table_info('t')"), "3");
}

// A UNIQUE index added without cdc_setup: REPLACE conflicts on it need the
// staging triggers; a reader notices and re-installs them, with a resync.
TEST(SchemaChangeRecipe, NewUniqueIndexIsNoticedAndHealed) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "INSERT INTO t VALUES(1, 'a')");
  Db other(path, false);
  other.Exec("CREATE UNIQUE INDEX t_v ON t(v)");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].state')"), "constraints_changed");
  auto evs = cdctest::PollAll(db, "c");  // heals
  other.Exec("INSERT OR REPLACE INTO t VALUES(2, 'a')");
  EXPECT_EQ(cdctest::Describe(cdctest::PollAll(db, "c")),
            (Lines{R"(t INSERT null {"id":1,"v":"a"})", "t BOOTSTRAP (constraints changed) null null",
                   R"(t INSERT null {"id":1,"v":"a"})", R"(t DELETE {"id":1,"v":"a"} null)",
                   R"(t INSERT null {"id":2,"v":"a"})"}));
}

// Policy 'error': readers fail, naming the table, the change and the remedy,
// until cdc_setup heals it (with a resync).
TEST(SchemaChangePolicy, ErrorPolicyStopsReadersUntilHealed) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
          "SELECT cdc_setup('t', '{\"on_schema_change\": \"error\"}'), cdc_consumer_add('c');"
          "INSERT INTO t VALUES(1, 'a')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].on_schema_change')"), "error");
  Db other(path, false);
  other.Exec("ALTER TABLE t ADD COLUMN w; INSERT INTO t VALUES(2, 'b', 'w')");
  const std::string msg =
      "capture of 't' is stale (columns changed: captured [\"id\",\"v\"], now [\"id\",\"v\",\"w\"]) and its "
      "policy is on_schema_change = 'error': run SELECT cdc_setup('t') (consumers get a resync of the table)";
  EXPECT_EQ(db.Error("SELECT cdc_poll('c')"), "cdc_poll: " + msg);
  EXPECT_EQ(db.Error("SELECT count(*) FROM cdc_changes('c')"), "cdc_changes: " + msg);
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', 0)"), "cdc_wait: " + msg);
  // A refresh keeps the policy and resyncs.
  db.Exec("SELECT cdc_setup('t')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].on_schema_change')"), "error");
  EXPECT_EQ(cdctest::Describe(cdctest::PollAll(db, "c")),
            (Lines{R"(t INSERT null {"id":1,"v":"a"})", R"(t INSERT null {"id":2,"v":"b"})",
                   "t BOOTSTRAP (columns changed) null null", R"(t INSERT null {"id":1,"v":"a","w":null})",
                   R"(t INSERT null {"id":2,"v":"b","w":"w"})"}));
  // Dropped under policy 'error': the remedy is cdc_teardown, which tells
  // consumers with a DROP event.
  other.Exec("DROP TABLE t");
  EXPECT_EQ(db.Error("SELECT cdc_poll('c')"),
            "cdc_poll: capture of 't' is stale (the table was dropped) and its policy is on_schema_change = "
            "'error': run SELECT cdc_teardown('t') (consumers get a DROP event)");
  db.Exec("SELECT cdc_teardown('t')");
  auto evs = cdctest::PollAll(db, "c");
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back().op + " " + evs.back().reason, "DROP dropped");
}

// However many connections notice a change at once, the table is resynced
// once.
TEST(SchemaChangeHealing, ManyReadersOneResync) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  {
    Db db(path);
    db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t');"
            "INSERT INTO t(v) VALUES(1), (2), (3)");
    for (int i = 0; i < 4; i++) db.Exec("SELECT cdc_consumer_add('c" + std::to_string(i) + "')");
    Db other(path, false);
    other.Exec("BEGIN; DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t(v) VALUES(9); COMMIT");
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; i++) {
    readers.emplace_back([&, i] {
      Db db(path);
      db.Exec("PRAGMA busy_timeout=10000");
      db.One("SELECT cdc_poll('c" + std::to_string(i) + "')");
    });
  }
  for (auto& r : readers) r.join();
  Db db(path);
  EXPECT_EQ(db.One("SELECT count(*) FROM cdc_changes WHERE op = 'BOOTSTRAP'"), "1");
  EXPECT_EQ(db.One("SELECT reason FROM cdc_changes WHERE op = 'BOOTSTRAP'"), "triggers missing");
}

// A read-only connection cannot heal: it says so, and delivers nothing past
// the change.
TEST(SchemaChangeHealing, ReadOnlyReaderReportsDriftItCannotHeal) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "INSERT INTO t VALUES(1, 'a'); DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  Db ro("file:" + path + "?mode=ro", true, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
  EXPECT_EQ(ro.Error("SELECT cdc_poll('c')"),
            "cdc_poll: capture of 't' is stale (capture triggers are missing: the table was rebuilt, or dropped and "
            "created again) and this connection is read-only, so it cannot heal it; read from a writable connection "
            "once, or run SELECT cdc_setup('t') (consumers get a resync of the table)");
  db.One("SELECT cdc_poll('c')");  // heals
  EXPECT_NE(ro.One("SELECT cdc_poll('c')"), "");
}

// A large table is resynced in chunks, each its own short write transaction:
// readers continue it; the stream stays exact while a writer goes on.
TEST(SchemaChangeHealing, LargeTableResyncsInChunks) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
          "SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7000) "
          "INSERT INTO t(v) SELECT i FROM n;"
          "SELECT cdc_ack('c', (SELECT max(id) FROM __cdc_log))");
  Db other(path, false);
  other.Exec("ALTER TABLE t ADD COLUMN w");
  Replica r;
  int polls = 0;
  for (;; polls++) {
    auto evs = ParseEvents(Scalar(db.get(), "SELECT cdc_poll('c', 1000)"));
    if (evs.empty()) break;
    for (auto& e : evs) r.Apply(e);
    db.Exec("SELECT cdc_ack('c', " + std::to_string(evs.back().id) + ")");
    // Writes between chunks: rows already sent and rows not yet sent.
    if (polls < 20) {
      other.Exec("UPDATE t SET w = 'x' WHERE id IN (1, 6999); DELETE FROM t WHERE id = " +
                 std::to_string(100 + polls) + "; INSERT INTO t(v) VALUES('new')");
    }
    ASSERT_LT(polls, 100);
  }
  EXPECT_EQ(r.markers, (Lines{"BOOTSTRAP t (columns changed)"}));
  EXPECT_EQ(r.tables["t"], Replica::Actual(db, "t"));
  EXPECT_EQ(r.tables["t"].size(), 7000u);
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_bootstrap"), "0");
}

// Legacy ALTER TABLE RENAME does not rewrite trigger bodies. A table
// without extra UNIQUE constraints keeps working untouched; with one, the
// REPLACE staging triggers name the old table (see docs/schema-changes.md).
TEST(SchemaChangeHealing, LegacyRenameKeepsWritesWorking) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('c')");
  Db other(path, false);
  other.Exec("PRAGMA legacy_alter_table=ON; ALTER TABLE t RENAME TO t2; INSERT INTO t2 VALUES(1, 'x');"
             "UPDATE t2 SET v = 'y'; DELETE FROM t2; INSERT INTO t2 VALUES(2, 'z')");
  EXPECT_EQ(cdctest::Describe(cdctest::PollAll(db, "c")),
            (Lines{R"(t INSERT null {"id":1,"v":"x"})", R"(t UPDATE {"id":1,"v":"x"} {"id":1,"v":"y"})",
                   R"(t DELETE {"id":1,"v":"y"} null)", R"(t INSERT null {"id":2,"v":"z"})",
                   "t DROP (renamed to t2) null null", "t2 BOOTSTRAP (renamed from t) null null",
                   R"(t2 INSERT null {"id":2,"v":"z"})"}));
}

}  // namespace

namespace {

// A program built against the header of abi 1 knows a six-field cdc_change.
struct ChangeV1 {
  int64_t id, ts;
  const char *table, *op, *before, *after;
};
struct V1Seen {
  std::mutex mu;
  std::vector<std::string> got;
};
int OnBatchV1(void* user, const cdc_change* c, int n) {
  auto* seen = static_cast<V1Seen*>(user);
  const auto* v1 = reinterpret_cast<const ChangeV1*>(c);
  std::lock_guard<std::mutex> g(seen->mu);
  for (int i = 0; i < n; i++) seen->got.push_back(std::to_string(v1[i].id) + " " + v1[i].table + " " + v1[i].op);
  return 0;
}

TEST(SchemaChangeCallbacks, Abi1CallbacksStillGetTheirLayout) {
  TempDir tmp;
  const std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "INSERT INTO t VALUES(1, 'a'); DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
          "INSERT INTO t VALUES(2, 'b')");
  V1Seen seen;
  cdc_callback cb{1, OnBatchV1, &seen, nullptr};
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT cdc_listen('c', ?1)", -1, &st, nullptr), SQLITE_OK);
  sqlite3_bind_pointer(st, 1, &cb, CDC_CALLBACK_TYPE, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW) << sqlite3_errmsg(db.get());
  sqlite3_finalize(st);
  for (int i = 0; i < 2000; i++) {
    {
      std::lock_guard<std::mutex> g(seen.mu);
      if (seen.got.size() >= 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string status = db.One("SELECT cdc_status()");
  db.Exec("SELECT cdc_unlisten('c')");
  std::lock_guard<std::mutex> g(seen.mu);
  SCOPED_TRACE(status);
  EXPECT_EQ(seen.got, (Lines{"1 t INSERT", "2 t BOOTSTRAP", "3 t INSERT"}));
}

}  // namespace

namespace {

// A heal can run while another statement of the connection reads (a
// cdc_changes scan, cdc_poll called per row of a query): DROP TABLE would
// then fail with "database table is locked", so healing drops no table (a
// REPLACE stage is kept and reused).
TEST(SchemaChangeHealing, HealsInsideAReadingStatement) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE u(id INTEGER PRIMARY KEY, w UNIQUE); CREATE TABLE x(a); INSERT INTO x VALUES(1);"
          "SELECT cdc_setup('u'), cdc_consumer_add('c'); INSERT INTO u VALUES(1, 'b');"
          "DROP TABLE u; CREATE TABLE u(id INTEGER PRIMARY KEY, w UNIQUE); INSERT INTO u VALUES(5, 'e')");
  EXPECT_EQ(db.Rows("SELECT length(cdc_poll('c')) > 0 FROM x"), (Lines{"1"}));
  db.Exec("ALTER TABLE u ADD COLUMN z DEFAULT 'z'");
  EXPECT_EQ(db.Rows("SELECT tbl, op, reason FROM cdc_changes WHERE op = 'BOOTSTRAP' ORDER BY id"),
            (Lines{"u|BOOTSTRAP|triggers missing", "u|BOOTSTRAP|columns changed"}));
  // The reused stage has the new column: a REPLACE victim keeps all values.
  db.Exec("INSERT OR REPLACE INTO u VALUES(6, 'e', 'new')");
  EXPECT_EQ(db.Rows("SELECT op, before FROM cdc_changes WHERE id > (SELECT max(id) FROM cdc_changes "
                    "WHERE op = 'BOOTSTRAP') + 1 ORDER BY id"),
            (Lines{R"(DELETE|{"id":5,"w":"e","z":"z"})", "INSERT|NULL"}));
  db.Exec("ALTER TABLE u RENAME TO u2");
  db.Rows("SELECT length(cdc_poll('c')) FROM x");
  db.Exec("DROP TABLE u2");
  EXPECT_EQ(db.Rows("SELECT op, reason FROM cdc_changes WHERE op = 'DROP' ORDER BY id"),
            (Lines{"DROP|renamed to u2", "DROP|dropped"}));
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_status(), '$.tables')"), "0");
  db.Exec("SELECT cdc_teardown()");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_\\_cdc%' ESCAPE '\\'"), "0");
}

}  // namespace
