// bootstrap_test.cc — cdc_bootstrap: a BOOTSTRAP marker then one INSERT per
// row, in one call or resumable chunks; and the replay-replica proof that a
// consumer applying events in id order ends with exactly the table.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>

#include "events.h"
#include "testing.h"

using cdctest::Db;
using cdctest::Ev;
using cdctest::ParseEvents;
using cdctest::PollAll;
using cdctest::Scalar;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

namespace {

// "a|b|v" of an image, as the sqlite3 API prints those columns (values are
// integers and texts only).
std::string RowText(const strictjson::Value& img) {
  std::string out;
  for (size_t i = 0; i < img.members.size(); i++) {
    const auto& v = img.members[i].second;
    if (i) out += "|";
    if (v.kind == strictjson::Value::kInt) {
      out += std::to_string(v.i);
    } else if (v.kind == strictjson::Value::kString) {
      out += v.s;
    } else if (v.kind == strictjson::Value::kNull) {
      out += "NULL";
    } else {
      out += "?" + cdctest::Dump(v);
    }
  }
  return out;
}

// A replica of captured tables keyed by their key columns, fed with events
// in id order: BOOTSTRAP drops the table's rows, INSERT/UPDATE upsert by key
// (an UPDATE that changes the key first removes the old key), DELETE
// removes by key.
class Replica {
 public:
  explicit Replica(std::vector<std::string> key) : key_(std::move(key)) {}
  void Apply(const Ev& e) {
    auto& rows = tables_[e.table];
    if (e.op == "BOOTSTRAP") {
      EXPECT_TRUE(e.before.IsNull() && e.after.IsNull());
      rows.clear();
    } else if (e.op == "INSERT") {
      rows[Key(e.after)] = RowText(e.after);
    } else if (e.op == "UPDATE") {
      rows.erase(Key(e.before));
      rows[Key(e.after)] = RowText(e.after);
    } else if (e.op == "DELETE") {
      rows.erase(Key(e.before));
    } else {
      ADD_FAILURE() << "unknown op " << e.op;
    }
    EXPECT_GT(e.id, last_id_);
    last_id_ = e.id;
  }
  // Polls, applies and acks everything pending for `consumer`, in batches.
  void Drain(Db& db, const std::string& consumer, int batch = 37) {
    for (;;) {
      auto evs = ParseEvents(Scalar(db.get(), "SELECT cdc_poll('" + consumer + "', " + std::to_string(batch) + ")"));
      if (evs.empty()) return;
      for (auto& e : evs) Apply(e);
      db.Exec("SELECT cdc_ack('" + consumer + "', " + std::to_string(evs.back().id) + ")");
    }
  }
  Lines Rows(const std::string& table) {
    Lines out;
    for (auto& [k, v] : tables_[table]) out.push_back(v);
    return out;
  }

 private:
  std::string Key(const strictjson::Value& img) {
    std::string k;
    for (auto& c : key_) k += cdctest::Dump(img[c]) + "\x1f";
    return k;
  }
  std::vector<std::string> key_;
  std::map<std::string, std::map<std::string, std::string>> tables_;
  int64_t last_id_ = 0;
};

// Rows of t in key order, as "a|b|v".
Lines TableRows(Db& db) { return db.Rows("SELECT a, b, v FROM t ORDER BY a, b"); }

}  // namespace

// Composite-key WITHOUT ROWID tables of odd sizes against chunk sizes.
class Chunked : public ::testing::TestWithParam<std::tuple<int, int>> {};

INSTANTIATE_TEST_SUITE_P(SizesByChunks, Chunked,
                         ::testing::Combine(::testing::Values(0, 1, 7, 100, 1001),
                                            ::testing::Values(1, 2, 3, 10, 1000)));

TEST_P(Chunked, MarkerThenEveryRowOnceInKeyOrder) {
  const auto [rows, chunk] = GetParam();
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("PRAGMA synchronous = OFF; CREATE TABLE t(a INT, b TEXT, v, PRIMARY KEY(a, b)) WITHOUT ROWID");
  // Keys chosen so that a > ? AND b > ? paging (the peer's bug) would skip rows:
  // several b per a, b not increasing with a.
  db.Exec("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " + std::to_string(rows) +
          " - 1) INSERT INTO t SELECT i / 3, char(122 - i % 3) || (i % 5), i FROM n WHERE " + std::to_string(rows) +
          " > 0");
  ASSERT_EQ(db.One("SELECT count(*) FROM t"), std::to_string(rows));
  db.Exec("SELECT cdc_setup('t'), cdc_consumer_add('c')");
  std::vector<int64_t> returned;
  for (int call = 0; call < rows + 3; call++) {
    int64_t n = std::stoll(db.One("SELECT cdc_bootstrap('t', " + std::to_string(chunk) + ")"));
    returned.push_back(n);
    if (n == 0) break;
    EXPECT_LE(n, chunk);
  }
  ASSERT_EQ(returned.back(), 0);
  int64_t sum = 0;
  for (size_t i = 0; i + 1 < returned.size(); i++) {
    sum += returned[i];
    if (i + 2 < returned.size()) { EXPECT_EQ(returned[i], chunk) << "only the last chunk may be short"; }
  }
  EXPECT_EQ(sum, rows);
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_bootstrap"), "0");  // done: no state left
  auto evs = PollAll(db, "c");
  ASSERT_EQ(evs.size(), static_cast<size_t>(rows) + 1);
  EXPECT_EQ(evs[0].op, "BOOTSTRAP");
  EXPECT_EQ(evs[0].table, "t");
  Lines got;
  for (size_t i = 1; i < evs.size(); i++) {
    EXPECT_EQ(evs[i].op, "INSERT");
    got.push_back(RowText(evs[i].after));
  }
  EXPECT_EQ(got, TableRows(db));
  // Calling again after completion starts a new bootstrap.
  if (rows > 0) {
    EXPECT_EQ(db.One("SELECT cdc_bootstrap('t', 1000000)"), std::to_string(rows));
    EXPECT_EQ(PollAll(db, "c").size(), 2 * (static_cast<size_t>(rows) + 1));
  }
}

TEST(Bootstrap, OneCallInTheCallersTransaction) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 'a'), (2, x'00'), (3, NULL);"
          "SELECT cdc_setup('t')");
  db.Exec("BEGIN");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('t')"), "3");
  db.Exec("ROLLBACK");
  EXPECT_EQ(PollAll(db).size(), 0u);
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('T')"), "3");
  EXPECT_EQ(cdctest::Describe(PollAll(db)),
            (Lines{"t BOOTSTRAP null null", R"(t INSERT null {"id":1,"v":"a"})",
                   R"(t INSERT null {"id":2,"v":{"$blob":"00"}})", R"(t INSERT null {"id":3,"v":null})"}));
  db.Exec("DELETE FROM t");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('t')"), "0");  // empty table: the marker alone
  EXPECT_EQ(PollAll(db).back().op, "BOOTSTRAP");
}

// Chunked state lives in the database: another connection continues.
TEST(Bootstrap, ResumesFromAnotherConnection) {
  TempDir tmp;
  Db a(tmp.File("t.db"));
  a.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
         "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) INSERT INTO t SELECT i, i FROM n;"
         "SELECT cdc_setup('t')");
  EXPECT_EQ(a.One("SELECT cdc_bootstrap('t', 4)"), "4");
  {
    Db b(tmp.File("t.db"));
    EXPECT_EQ(b.One("SELECT cdc_bootstrap('t', 4)"), "4");
  }
  EXPECT_EQ(a.One("SELECT cdc_bootstrap('t', 4)"), "2");
  EXPECT_EQ(a.One("SELECT cdc_bootstrap('t', 4)"), "0");
  auto evs = PollAll(a);
  ASSERT_EQ(evs.size(), 11u);
  for (int i = 1; i <= 10; i++) EXPECT_EQ(evs[static_cast<size_t>(i)].after["id"].i, i);
}

// A chunked bootstrap interrupted by cdc_teardown(t) must not resume, after
// a new cdc_setup(t), without its marker.
TEST(Bootstrap, TeardownForgetsAnUnfinishedBootstrap) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 1), (2, 2), (3, 3);"
          "SELECT cdc_setup('t'); SELECT cdc_bootstrap('t', 2);"
          "SELECT cdc_teardown('t'); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c', 'latest')");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('t', 2)"), "2");
  auto evs = PollAll(db, "c");
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].op, "BOOTSTRAP");
  EXPECT_EQ(evs[1].after["id"].i, 1);
}

// A full bootstrap supersedes a chunked one in progress.
TEST(Bootstrap, FullBootstrapResetsChunkedState) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 1), (2, 2), (3, 3);"
          "SELECT cdc_setup('t'); SELECT cdc_bootstrap('t', 2); SELECT cdc_bootstrap('t');");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('t', 2)"), "2");  // a fresh chunked run
  auto evs = PollAll(db);
  EXPECT_EQ(cdctest::Ops(evs), "BOOTSTRAP,INSERT,INSERT,BOOTSTRAP,INSERT,INSERT,INSERT,BOOTSTRAP,INSERT,INSERT");
}

TEST(Bootstrap, WideTableChunks) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  std::string sql = "CREATE TABLE w(id INTEGER PRIMARY KEY";
  for (int i = 1; i < 1500; i++) sql += ", c" + std::to_string(i);
  db.Exec(sql + "); INSERT INTO w(id, c1, c1499) VALUES(1, 'first', 'last'), (2, 'f2', 'l2');"
                "SELECT cdc_setup('w')");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('w', 1)"), "1");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('w', 1)"), "1");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('w', 1)"), "0");
  auto evs = PollAll(db);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[1].after.members.size(), 1500u);
  EXPECT_EQ(evs[1].after["c1499"].s, "last");
  EXPECT_EQ(evs[2].after["c1"].s, "f2");
  EXPECT_TRUE(evs[2].after["c700"].IsNull());
}

TEST(Bootstrap, Errors) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(x); CREATE TABLE shadowed(rowid, oid, _rowid_, v); CREATE TABLE nc(x);"
          "SELECT cdc_setup('t'), cdc_setup('shadowed')");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('nc')"),
            "cdc_bootstrap: table 'nc' is not captured (run SELECT cdc_setup('nc') first)");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('nope')"),
            "cdc_bootstrap: no such table: 'nope' (only tables of the main database can be captured)");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('shadowed', 10)"),
            "cdc_bootstrap: cannot page 'shadowed' by key: its rowid is shadowed by columns named rowid, "
            "_rowid_ and oid; bootstrap it in one call");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('shadowed')"), "0");
  db.Exec("ALTER TABLE t ADD COLUMN y");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('t')"),
            "cdc_bootstrap: the columns of 't' changed since cdc_setup; run SELECT cdc_setup('t') again first");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('t', 0)"), "cdc_bootstrap: chunk size must be at least 1");
  // Dropped and created again: its triggers are gone with the old table.
  db.Exec("SELECT cdc_setup('t'); DROP TABLE t; CREATE TABLE t(x, y)");
  EXPECT_EQ(db.Error("SELECT cdc_bootstrap('t', 5)"),
            "cdc_bootstrap: the capture triggers of 't' are missing; run SELECT cdc_setup('t') again first");
  db.Exec("SELECT cdc_setup('t')");
  EXPECT_EQ(db.One("SELECT cdc_bootstrap('t', 5)"), "0");
}

// The replay-replica proof (issue 3): random writes, from this and another
// connection, interleaved between bootstrap chunks and with a consumer
// applying and acking events as it goes; the replica ends equal to the table.
class ReplayReplica : public ::testing::TestWithParam<std::tuple<int, int>> {};

INSTANTIATE_TEST_SUITE_P(SeedsByChunks, ReplayReplica,
                         ::testing::Combine(::testing::Values(1, 2, 3), ::testing::Values(1, 7, 50)));

TEST_P(ReplayReplica, ReplicaEqualsTable) {
  const auto [seed, chunk] = GetParam();
  TempDir tmp;
  Db db(tmp.File("t.db"));
  Db other(tmp.File("t.db"), /*load=*/false);
  db.Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;"
          "CREATE TABLE t(a INT, b TEXT, v, u UNIQUE, PRIMARY KEY(a, b)) WITHOUT ROWID;"
          "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 299)"
          "  INSERT INTO t SELECT i % 40, char(97 + i % 7) || (i / 40), i, NULL FROM n;"
          "SELECT cdc_setup('t'), cdc_consumer_add('replica', 'latest')");
  std::mt19937 rng(static_cast<unsigned>(seed));
  auto rnd = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  int counter = 1000;
  auto random_write = [&]() {
    Db& w = rnd(2) ? db : other;
    std::string a = std::to_string(rnd(45)), b = "'" + std::string(1, static_cast<char>('a' + rnd(8))) +
                                                 std::to_string(rnd(9)) + "'";
    std::string v = std::to_string(++counter);
    switch (rnd(7)) {
      case 0: w.Exec("INSERT OR IGNORE INTO t VALUES(" + a + ", " + b + ", " + v + ", NULL)"); break;
      case 1: w.Exec("UPDATE t SET v = " + v + " WHERE a = " + a); break;
      case 2: w.Exec("DELETE FROM t WHERE (a, b) IN (SELECT a, b FROM t WHERE a = " + a + " LIMIT 1)"); break;
      case 3: w.Exec("UPDATE OR REPLACE t SET b = " + b + " WHERE (a, b) IN (SELECT a, b FROM t WHERE a = " + a +
                     " LIMIT 1)"); break;
      case 4: w.Exec("INSERT OR REPLACE INTO t VALUES(" + a + ", " + b + ", " + v + ", " + std::to_string(rnd(5)) +
                     ")"); break;
      case 5: w.Exec("UPDATE OR REPLACE t SET u = " + std::to_string(rnd(5)) + " WHERE a = " + a); break;
      default: w.Exec("UPDATE t SET a = a + 100 WHERE (a, b) IN (SELECT a, b FROM t WHERE a = " + a +
                      " LIMIT 1) AND NOT EXISTS (SELECT 1 FROM t WHERE a = " + a + " + 100)"); break;
    }
  };
  Replica replica({"a", "b"});
  for (int i = 0; i < 20; i++) random_write();
  replica.Drain(db, "replica");  // partial knowledge from before the bootstrap
  int calls = 0;
  for (;;) {
    int64_t n = std::stoll(db.One("SELECT cdc_bootstrap('t', " + std::to_string(chunk) + ")"));
    calls++;
    for (int i = 0, k = rnd(4); i < k; i++) random_write();
    if (rnd(3) == 0) replica.Drain(db, "replica");
    if (n == 0) break;
    ASSERT_LT(calls, 2000);
  }
  for (int i = 0; i < 30; i++) random_write();
  replica.Drain(db, "replica");
  // The replica's map orders keys as text: compare sorted.
  Lines want = TableRows(db);
  std::sort(want.begin(), want.end());
  Lines have;
  for (auto& r : replica.Rows("t")) {
    // Replica rows are a|b|v|u: compare a|b|v, then u separately.
    have.push_back(r.substr(0, r.rfind('|')));
  }
  std::sort(have.begin(), have.end());
  EXPECT_GT(want.size(), 100u);
  EXPECT_EQ(have, want);
  Lines with_u = db.Rows("SELECT a, b, v, coalesce(u, 'NULL') FROM t");
  std::sort(with_u.begin(), with_u.end());
  Lines rep = replica.Rows("t");
  std::sort(rep.begin(), rep.end());
  EXPECT_EQ(rep, with_u);
  // Everything acked: the log is pruned to its newest event (an UPDATE's
  // before image is a continuation row of its own).
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_log WHERE op <> 0"), "1");
}

// SQLite 3.40's INSERT ... SELECT drops a VIRTUAL generated column's declared
// affinity; the bootstrap's events must carry the value SELECT gives.
// (Found by fuzz_schema: bootstrap-virtual-generated-real.)
TEST(Bootstrap, VirtualGeneratedColumnKeepsItsAffinity) {
  cdctest::TempDir tmp;
  cdctest::Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(x NUMERIC PRIMARY KEY, g REAL GENERATED ALWAYS AS (x) VIRTUAL);"
          "INSERT INTO t(x) VALUES(0); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "SELECT cdc_bootstrap('t'); SELECT cdc_bootstrap('t', 5); SELECT cdc_bootstrap('t', 5)");
  EXPECT_EQ(db.Rows("SELECT op, after FROM cdc_changes('c')"),
            (std::vector<std::string>{"BOOTSTRAP|NULL", R"(INSERT|{"x":0,"g":0.0})", "BOOTSTRAP|NULL",
                                      R"(INSERT|{"x":0,"g":0.0})"}));
}
