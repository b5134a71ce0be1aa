// delivery_test.cc — consumers, cdc_poll / cdc_ack, pruning, ids that are
// never reused, and the cdc_changes virtual table.
#include <gtest/gtest.h>

#include "events.h"
#include "testing.h"

using cdctest::Db;
using cdctest::Ev;
using cdctest::ParseEvents;
using cdctest::Scalar;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

namespace {

std::vector<Ev> Poll(Db& db, const std::string& name, int limit = 1000000) {
  return ParseEvents(Scalar(db.get(), "SELECT cdc_poll('" + name + "', " + std::to_string(limit) + ")"));
}

std::vector<int64_t> Ids(const std::vector<Ev>& evs) {
  std::vector<int64_t> ids;
  for (auto& e : evs) ids.push_back(e.id);
  return ids;
}

// A database with table t captured and `n` inserted rows (ids 1..n).
struct Fixture {
  explicit Fixture(int n = 0) : db(tmp.File("t.db")) {
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t')");
    Write(n);
  }
  void Write(int n) {
    db.Exec("BEGIN");
    for (int i = 0; i < n; i++) db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
    db.Exec("COMMIT");
  }
  std::string LogIds() { return db.One("SELECT group_concat(id) FROM (SELECT id FROM __cdc_log ORDER BY id)"); }
  TempDir tmp;
  Db db;
};

}  // namespace

TEST(Consumers, EarliestAndLatest) {
  Fixture f(3);
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('e')"), "0");
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('e2', 'earliest')"), "0");
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('l', 'latest')"), "3");
  EXPECT_EQ(Ids(Poll(f.db, "e")), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Ids(Poll(f.db, "l")), (std::vector<int64_t>{}));
  f.Write(1);
  EXPECT_EQ(Ids(Poll(f.db, "e")), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(Ids(Poll(f.db, "l")), (std::vector<int64_t>{4}));
}

TEST(Consumers, AddBeforeAnySetupAndEmptyLog) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  EXPECT_EQ(db.One("SELECT cdc_consumer_add('c', 'latest')"), "0");
  EXPECT_EQ(db.One("SELECT cdc_poll('c')"), "[]");
  db.Exec("CREATE TABLE t(x); SELECT cdc_setup('t'); INSERT INTO t VALUES(1)");
  EXPECT_EQ(Ids(Poll(db, "c")), (std::vector<int64_t>{1}));
}

TEST(Consumers, AddIsIdempotentAndKeepsThePosition) {
  Fixture f(3);
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('c')"), "0");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', 2)"), "2");
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('c')"), "2");
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('c', 'latest')"), "2");
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_add('c', 'earliest')"), "2");
  EXPECT_EQ(f.db.One("SELECT count(*) FROM __cdc_consumers"), "1");
}

TEST(Consumers, PositionIsDurableAcrossConnections) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c'); SELECT cdc_ack('c', 3)");
  Db other(f.tmp.File("t.db"));
  EXPECT_EQ(Ids(Poll(other, "c")), (std::vector<int64_t>{4, 5}));
}

TEST(Consumers, AckInRolledBackTransactionIsUndone) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c'); BEGIN; SELECT cdc_ack('c', 4); ROLLBACK");
  EXPECT_EQ(Ids(Poll(f.db, "c")).size(), 5u);
  EXPECT_EQ(f.LogIds(), "1,2,3,4,5");
}

TEST(Ack, BelowPositionIsNoOpAndPastNewestIsAnError) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c')");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', 3)"), "3");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', 1)"), "3");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', 3)"), "3");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', -7)"), "3");
  EXPECT_EQ(f.db.Error("SELECT cdc_ack('c', 6)"), "cdc_ack: id 6 is past the newest change (5)");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', 5.0)"), "5");
  EXPECT_EQ(f.db.One("SELECT cdc_poll('c')"), "[]");
}

// cdc_ack(name): up to the last event of this connection's last cdc_poll of
// `name` (per connection, per consumer); an empty poll acks nothing.
TEST(Ack, WithoutIdAcksWhatThisConnectionLastPolled) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c'), cdc_consumer_add('d')");
  EXPECT_EQ(Ids(Poll(f.db, "c", 2)), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(Ids(Poll(f.db, "d", 1)), (std::vector<int64_t>{1}));
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c')"), "2");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c')"), "2");  // again: a no-op
  EXPECT_EQ(f.db.One("SELECT cdc_ack('d')"), "1");
  EXPECT_EQ(Ids(Poll(f.db, "c", 10)), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c')"), "5");
  EXPECT_EQ(f.db.One("SELECT cdc_poll('c')"), "[]");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c')"), "5");  // an empty poll: nothing to ack
  // Per connection: another one has polled nothing.
  Db other(f.tmp.File("t.db"));
  EXPECT_EQ(other.Error("SELECT cdc_ack('d')"),
            "cdc_ack: this connection has not polled consumer 'd': call cdc_poll first, or pass the id of the last "
            "change handled");
  // The poll is remembered with its consumer: one dropped and added again
  // since (here by another connection) is not acked with it.
  EXPECT_EQ(Ids(Poll(f.db, "d", 2)), (std::vector<int64_t>{2, 3}));
  other.Exec("SELECT cdc_consumer_drop('d'); SELECT cdc_consumer_add('d')");
  const std::string pos = other.One("SELECT json_extract(cdc_status(), '$.consumers[1].position')");
  EXPECT_EQ(f.db.Error("SELECT cdc_ack('d')"),
            "cdc_ack: consumer 'd' was dropped or added again since this connection's last cdc_poll of it: poll "
            "again, or pass the id of the last change handled");
  EXPECT_EQ(other.One("SELECT json_extract(cdc_status(), '$.consumers[1].position')"), pos);
  // Rolled back with the caller's transaction, like an ack with an id.
  f.Write(2);
  EXPECT_EQ(Ids(Poll(f.db, "c", 1)), (std::vector<int64_t>{6}));
  f.db.Exec("BEGIN");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c')"), "6");
  f.db.Exec("ROLLBACK");
  EXPECT_EQ(Ids(Poll(f.db, "c", 1)), (std::vector<int64_t>{6}));
}

// cdc_ack(name, batch): the text cdc_poll returned acks up to its last
// event, whether it is this connection's last poll or any other array of
// events (another connection's, or re-serialised).
TEST(Ack, WithTheBatchAcksItsLastId) {
  Fixture f(6);
  f.db.Exec("SELECT cdc_consumer_add('c')");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', cdc_poll('c', 2))"), "2");
  const std::string batch = Scalar(f.db.get(), "SELECT cdc_poll('c', 2)");
  EXPECT_EQ(Ids(ParseEvents(batch)), (std::vector<int64_t>{3, 4}));
  Db other(f.tmp.File("t.db"));
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(other.get(), "SELECT cdc_ack('c', ?1)", -1, &st, nullptr), SQLITE_OK);
  sqlite3_bind_text(st, 1, batch.c_str(), -1, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 4);
  sqlite3_finalize(st);
  // Re-serialised (spaces, other key order): read with SQLite's JSON.
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', '[{\"id\": 5}, {\"table\": \"t\", \"id\": 5.0e0}, "
                     "{\"ts\": 1, \"id\": 5}]')"),
            "5");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', '[]')"), "5");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', ' [ ] ')"), "5");
  EXPECT_EQ(Ids(Poll(f.db, "c")), (std::vector<int64_t>{6}));
  // The last batch polled here, changed by one byte, is no longer it.
  std::string last = Scalar(f.db.get(), "SELECT cdc_poll('c')");
  last.replace(last.find("\"id\":6"), 6, "\"id\":9");
  EXPECT_EQ(f.db.Error("SELECT cdc_ack('c', '" + last + "')"), "cdc_ack: id 9 is past the newest change (6)");
  EXPECT_EQ(f.db.One("SELECT cdc_ack('c', cdc_poll('c'))"), "6");
}

TEST(Poll, LimitSemanticsAndPollDoesNotAdvance) {
  Fixture f(150);
  f.db.Exec("SELECT cdc_consumer_add('c')");
  EXPECT_EQ(ParseEvents(Scalar(f.db.get(), "SELECT cdc_poll('c')")).size(), 100u);  // default
  EXPECT_EQ(Ids(Poll(f.db, "c", 1)), (std::vector<int64_t>{1}));
  EXPECT_EQ(Ids(Poll(f.db, "c", 2)), (std::vector<int64_t>{1, 2}));  // same again: reads only
  EXPECT_EQ(Poll(f.db, "c", 1000).size(), 150u);
  f.db.Exec("SELECT cdc_ack('c', 149)");
  EXPECT_EQ(Ids(Poll(f.db, "c", 5)), (std::vector<int64_t>{150}));
  f.db.Exec("SELECT cdc_ack('c', 150)");
  EXPECT_EQ(f.db.One("SELECT cdc_poll('c', 5)"), "[]");
}

TEST(Poll, EventShapeMatchesDesign) {
  Fixture f;
  f.db.Exec("SELECT cdc_consumer_add('c'); INSERT INTO t VALUES(7, 9.5)");
  std::string raw = Scalar(f.db.get(), "SELECT cdc_poll('c')");
  auto v = strictjson::Parse(raw);
  ASSERT_EQ(v.items.size(), 1u);
  std::vector<std::string> keys;
  for (auto& m : v[0].members) keys.push_back(m.first);
  EXPECT_EQ(keys, (Lines{"id", "ts", "table", "op", "before", "after"}));
  // ts: Unix milliseconds, close to now.
  int64_t now = std::stoll(f.db.One("SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"));
  EXPECT_LE(v[0]["ts"].i, now);
  EXPECT_GT(v[0]["ts"].i, now - 60000);
}

// Issue 13: the last consumer's drop left the whole log behind, for nobody.
TEST(Prune, DroppingTheLastConsumerPrunesToTheNewest) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c'); SELECT cdc_consumer_drop('c')");
  EXPECT_EQ(f.LogIds(), "5");
}

TEST(Prune, OnlyBelowEveryConsumer) {
  Fixture f(10);
  f.db.Exec("SELECT cdc_consumer_add('a'), cdc_consumer_add('b')");
  f.db.Exec("SELECT cdc_ack('a', 8)");
  EXPECT_EQ(f.LogIds(), "1,2,3,4,5,6,7,8,9,10");
  f.db.Exec("SELECT cdc_ack('b', 3)");
  EXPECT_EQ(f.LogIds(), "4,5,6,7,8,9,10");
  EXPECT_EQ(Ids(Poll(f.db, "b")), (std::vector<int64_t>{4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(Ids(Poll(f.db, "a")), (std::vector<int64_t>{9, 10}));
  // Dropping the laggard releases what it held.
  EXPECT_EQ(f.db.One("SELECT cdc_consumer_drop('b')"), "1");
  EXPECT_EQ(f.LogIds(), "9,10");
  EXPECT_EQ(f.db.Error("SELECT cdc_poll('b')"),
            "cdc_poll: no such consumer: 'b' (add it with SELECT cdc_consumer_add('b'))");
}

// Pruning everything keeps the newest row, so ids are never reused; a
// consumer added afterwards with 'earliest' sees that retained change.
TEST(Prune, IdsNeverReusedAfterEmptyingTheLog) {
  Fixture f(5);
  f.db.Exec("SELECT cdc_consumer_add('c'); SELECT cdc_ack('c', 5)");
  EXPECT_EQ(f.LogIds(), "5");
  EXPECT_EQ(f.db.One("SELECT json_extract(cdc_status(), '$.consumers[0].pending')"), "0");
  f.db.Exec("VACUUM");
  {
    Db plain(f.tmp.File("t.db"), false);
    plain.Exec("INSERT INTO t(v) VALUES('after')");
  }
  auto evs = Poll(f.db, "c");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].id, 6);
  f.db.Exec("SELECT cdc_ack('c', 6)");
  EXPECT_EQ(f.LogIds(), "6");
  // Again, with deletes and updates and the stage in play.
  f.db.Exec("DELETE FROM t; SELECT cdc_ack('c', (SELECT max(id) FROM __cdc_log)); INSERT INTO t VALUES(1, 1)");
  EXPECT_EQ(f.db.One("SELECT max(id) FROM __cdc_log"), "13");
}

// Events spread over continuation rows are never split by an ack or prune.
// (40 columns: the log is 40 values wide, an UPDATE takes two rows.)
TEST(Prune, ContinuationRowsStayWithTheirEvent) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  std::string sql = "CREATE TABLE w(id INTEGER PRIMARY KEY";
  for (int i = 1; i < 40; i++) sql += ", c" + std::to_string(i);
  db.Exec(sql + "); SELECT cdc_setup('w'), cdc_consumer_add('c');"
                "INSERT INTO w(id, c39) VALUES(1, 'a'); UPDATE w SET c39 = 'b'; UPDATE w SET c1 = 'x'");
  // The layout follows the log's width: an event of n values takes
  // ceil(n / width) rows, the last one being the event's own row.
  const int width = std::stoi(db.One("SELECT count(*) - 4 FROM pragma_table_info('__cdc_log')"));
  ASSERT_LT(width, 80);  // the UPDATEs span two rows or more
  std::string ops;
  std::vector<int64_t> event_ids;
  int64_t id = 0;
  for (auto [op, n] : {std::pair{1, 40}, {2, 80}, {2, 80}}) {
    for (int r = (n + width - 1) / width; r > 1; r--) ops += std::string(ops.empty() ? "" : ",") + "0", id++;
    ops += std::string(ops.empty() ? "" : ",") + std::to_string(op);
    event_ids.push_back(++id);
  }
  EXPECT_EQ(db.One("SELECT group_concat(op) FROM (SELECT op FROM __cdc_log ORDER BY id)"), ops);
  // Acking an id inside an event's continuation rows floors to the event before.
  const int64_t inside = event_ids[1] - 1;
  EXPECT_EQ(db.One("SELECT cdc_ack('c', " + std::to_string(inside) + ")"), std::to_string(event_ids[0]));
  EXPECT_EQ(db.One("SELECT min(id) FROM __cdc_log"), std::to_string(event_ids[0] + 1));
  auto evs = Poll(db, "c");
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].before["c39"].s, "a");
  EXPECT_EQ(evs[0].after["c39"].s, "b");
  EXPECT_EQ(evs[1].after["c1"].s, "x");
  EXPECT_EQ(evs[1].after.members.size(), 40u);
  auto count = [&](const std::string& where) { return db.One("SELECT count(*) FROM cdc_changes WHERE " + where); };
  EXPECT_EQ(count("id > " + std::to_string(event_ids[0])), "2");
  EXPECT_EQ(count("id >= " + std::to_string(inside)), "2");  // an id inside event 2's rows still yields it whole
  EXPECT_EQ(count("id > " + std::to_string(inside + 1)), "1");
  EXPECT_EQ(db.One("SELECT json_extract(after, '$.c39') FROM cdc_changes WHERE id = " + std::to_string(event_ids[2])), "b");
}

TEST(Status, ReportsTablesConsumersAndDrift) {
  Fixture f(4);
  f.db.Exec("SELECT cdc_consumer_add('a'), cdc_consumer_add('b', 'latest'); SELECT cdc_ack('a', 1)");
  auto s = strictjson::Parse(f.db.One("SELECT cdc_status()"));
  EXPECT_EQ(s["log_rows"].i, 3);  // id 1 pruned: both consumers are past it
  EXPECT_EQ(s["last_id"].i, 4);
  EXPECT_EQ(cdctest::Dump(s["tables"]), R"([{"name":"t","shape":1,"columns":["id","v"],"state":"intact","on_schema_change":"resync","resyncing":false,"drift":false}])");
  ASSERT_EQ(s["consumers"].items.size(), 2u);
  EXPECT_EQ(s["consumers"][0]["name"].s, "a");
  EXPECT_EQ(s["consumers"][0]["position"].i, 1);
  EXPECT_EQ(s["consumers"][0]["pending"].i, 3);
  EXPECT_GE(s["consumers"][0]["lag_ms"].i, 0);
  EXPECT_EQ(s["consumers"][1]["pending"].i, 0);
  EXPECT_EQ(s["consumers"][1]["lag_ms"].i, 0);
  f.db.Exec("ALTER TABLE t ADD COLUMN w");
  s = strictjson::Parse(f.db.One("SELECT cdc_status()"));
  EXPECT_TRUE(s["tables"][0]["drift"].b);
  f.db.Exec("SELECT cdc_setup('t')");
  s = strictjson::Parse(f.db.One("SELECT cdc_status()"));
  EXPECT_FALSE(s["tables"][0]["drift"].b);
  EXPECT_EQ(s["tables"][0]["shape"].i, 2);
}

TEST(Status, BeforeAnySetup) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  auto s = strictjson::Parse(db.One("SELECT cdc_status()"));
  EXPECT_EQ(s["log_rows"].i, 0);
  EXPECT_EQ(s["tables"].items.size(), 0u);
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema"), "0");  // status creates nothing
}

// cdc_changes: every WHERE on id / tbl gives what the same WHERE gives on a
// plain copy of the rows (the vtab narrows its scan; it must never lose rows).
TEST(Changes, FiltersAgreeWithAPlainTable) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE a(x); CREATE TABLE b(y); SELECT cdc_setup('a'), cdc_setup('b');"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)"
          "  INSERT INTO a SELECT i FROM n;"
          "INSERT INTO b VALUES(1), (2); UPDATE a SET x = -x WHERE x % 3 = 0;"
          "CREATE TEMP TABLE snap AS SELECT id, ts, tbl, op, before, after FROM cdc_changes");
  EXPECT_EQ(db.One("SELECT count(*) FROM snap"), "28");
  const char* conds[] = {
      "id > 5", "id >= 5", "id < 5", "id <= 5", "id = 5", "id > 5 AND id < 9", "id >= 5 AND id <= 9",
      "id > 2.5", "id >= 2.5", "id < 2.5", "id <= 2.5", "id = 2.5", "id = 3.0", "id < -1.5", "id > -1.5",
      "id > '5'", "id < '5'", "id >= 'abc'", "id <= 'abc'", "id = '5'", "id > x'00'", "id < x'00'",
      "id > NULL", "id < NULL", "id = NULL", "id > 9223372036854775807", "id >= -9223372036854775808",
      "id < -9223372036854775808", "id <= 9223372036854775807", "id > 1e300", "id < 1e300", "id > -1e300",
      "id = 9223372036854775807", "id > 0 AND id >= 3 AND id < 100 AND id <= 7",
      "tbl = 'b'", "tbl = 'B'", "tbl = 'B' COLLATE NOCASE", "tbl = 'a' AND id > 20", "tbl = NULL",
      "tbl = 1", "tbl > 'a'", "id IN (3, 5, 99)", "id BETWEEN 4 AND 6", "op = 'UPDATE' AND id > 22"};
  for (const char* c : conds) {
    std::string w = std::string(" WHERE ") + c + " ORDER BY id";
    EXPECT_EQ(db.Rows("SELECT id, tbl, op FROM cdc_changes" + w), db.Rows("SELECT id, tbl, op FROM snap" + w))
        << c;
  }
  // Values from columns with an affinity: the comparison converts id (TEXT
  // affinity compares as text), so the vtab must not narrow by number.
  db.Exec("CREATE TEMP TABLE tx(v TEXT); INSERT INTO tx VALUES('9'), ('15');"
          "CREATE TEMP TABLE ti(v INTEGER); INSERT INTO ti VALUES(9), ('15');"
          "CREATE TEMP TABLE tn(name TEXT); INSERT INTO tn VALUES('b'), ('B');");
  const char* joins[] = {"tx, cdc_changes c WHERE c.id > tx.v", "tx, cdc_changes c WHERE c.id < tx.v",
                         "tx, cdc_changes c WHERE c.id = tx.v", "ti, cdc_changes c WHERE c.id > ti.v",
                         "ti, cdc_changes c WHERE c.id <= ti.v", "tn, cdc_changes c WHERE c.tbl = tn.name",
                         "ti, cdc_changes c WHERE c.tbl = ti.v"};
  for (const char* j : joins) {
    std::string q = "SELECT c.id, c.tbl FROM " + std::string(j) + " ORDER BY 1, 2";
    std::string qs = q;
    qs.replace(qs.find("cdc_changes"), 11, "snap");
    EXPECT_EQ(db.Rows(q), db.Rows(qs)) << j;
  }
  // A consumer's view: the same, after its position.
  db.Exec("SELECT cdc_consumer_add('c'); SELECT cdc_ack('c', 10)");
  EXPECT_EQ(db.Rows("SELECT id FROM cdc_changes('c') WHERE id < 14"), (Lines{"11", "12", "13"}));
  EXPECT_EQ(db.Rows("SELECT id FROM cdc_changes('c') WHERE id > 3 AND id <= 12"), (Lines{"11", "12"}));
  EXPECT_EQ(db.Rows("SELECT id FROM cdc_changes WHERE consumer = 'c' AND tbl = 'b'"), (Lines{"21", "22"}));
  EXPECT_EQ(db.One("SELECT count(*) FROM cdc_changes"), "18");  // no argument: all retained (c pruned 1..10)
}

TEST(Changes, ColumnsAndJoin) {
  Fixture f(2);
  f.db.Exec("UPDATE t SET v = 'z' WHERE id = 2; DELETE FROM t WHERE id = 1");
  EXPECT_EQ(f.db.Rows("SELECT id, tbl, op, before, after, typeof(ts) FROM cdc_changes"),
            (Lines{R"(1|t|INSERT|NULL|{"id":1,"v":0}|integer)", R"(2|t|INSERT|NULL|{"id":2,"v":1}|integer)",
                   R"(4|t|UPDATE|{"id":2,"v":1}|{"id":2,"v":"z"}|integer)", R"(5|t|DELETE|{"id":1,"v":0}|NULL|integer)"}));
  // (id 3: the UPDATE's before image, a continuation row)
  // As the inner side of a join, the consumer / id come from another table.
  f.db.Exec("SELECT cdc_consumer_add('x'); SELECT cdc_ack('x', 2);"
            "CREATE TEMP TABLE want(name, after_id); INSERT INTO want VALUES('x', 0), ('x', 4)");
  EXPECT_EQ(f.db.Rows("SELECT w.after_id, c.id FROM want w, cdc_changes(w.name) c WHERE c.id > w.after_id ORDER BY 1, 2"),
            (Lines{"0|4", "0|5", "4|5"}));
  EXPECT_EQ(f.db.Rows("SELECT id FROM cdc_changes ORDER BY id DESC LIMIT 2"), (Lines{"5", "4"}));
}

TEST(Changes, Errors) {
  Fixture f(1);
  EXPECT_EQ(f.db.Error("SELECT * FROM cdc_changes('nobody')"),
            "cdc_changes: no such consumer: 'nobody' (add it with SELECT cdc_consumer_add('nobody'))");
  EXPECT_EQ(f.db.Error("SELECT * FROM cdc_changes(NULL)"),
            "cdc_changes: the consumer argument must be a consumer name (text)");
  EXPECT_EQ(f.db.Error("SELECT * FROM cdc_changes(1)"),
            "cdc_changes: the consumer argument must be a consumer name (text)");
  EXPECT_EQ(f.db.Error("SELECT * FROM cdc_changes('a', 'b')"), "too many arguments on cdc_changes() - max 1");
  EXPECT_EQ(f.db.Error("INSERT INTO cdc_changes(id) VALUES(1)"), "table cdc_changes may not be modified");
  EXPECT_EQ(f.db.Error("CREATE VIRTUAL TABLE x USING cdc_changes"), "no such module: cdc_changes");
  EXPECT_EQ(f.db.One("SELECT count(*) FROM cdc_changes"), "1");  // still usable
}

// DIRECTONLY: cdc_changes cannot be used from a trigger or view.
TEST(Changes, NotFromTriggersOrViews) {
  Fixture f(1);
  f.db.Exec("CREATE VIEW v AS SELECT id FROM cdc_changes");
  EXPECT_EQ(f.db.Error("SELECT * FROM v"), "unsafe use of virtual table \"cdc_changes\"");
}

// An application that writes to a captured table for each change it reads
// (on the same connection) must not see its own new changes in the running
// scan: the scan is a snapshot of the log as of its start, or it never ends.
TEST(Changes, ScanDoesNotSeeChangesWrittenDuringIt) {
  Fixture f(5);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(f.db.get(), "SELECT id FROM cdc_changes WHERE id > 0", -1, &st, nullptr), SQLITE_OK);
  int seen = 0;
  while (sqlite3_step(st) == SQLITE_ROW && seen < 100) {
    seen++;
    f.db.Exec("INSERT INTO t(v) VALUES('derived')");
  }
  sqlite3_finalize(st);
  EXPECT_EQ(seen, 5);
  EXPECT_EQ(f.db.One("SELECT count(*) FROM cdc_changes"), "10");
}

// The newest event is kept when everything is pruned (ids never reused). If
// it spans continuation rows, those must be kept too: a consumer added later
// with 'earliest', and cdc_changes, read it whole, never a truncated image.
TEST(Prune, NewestEventIsKeptWhole) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  std::string sql = "CREATE TABLE w(id INTEGER PRIMARY KEY";
  for (int i = 1; i < 40; i++) sql += ", c" + std::to_string(i);
  db.Exec(sql + "); SELECT cdc_setup('w'), cdc_consumer_add('c');"
                "INSERT INTO w(id, c1, c39) VALUES(1, 'a', 'z'); UPDATE w SET c1 = 'b'");
  EXPECT_EQ(db.One("SELECT max(id) FROM __cdc_log"), "3");
  EXPECT_EQ(db.One("SELECT cdc_ack('c', 3)"), "3");
  EXPECT_EQ(db.One("SELECT group_concat(id) FROM __cdc_log"), "2,3");
  db.Exec("SELECT cdc_consumer_add('late', 'earliest')");
  auto evs = Poll(db, "late");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].op, "UPDATE");
  EXPECT_EQ(evs[0].before["c1"].s, "a");
  EXPECT_EQ(evs[0].before["c39"].s, "z");
  EXPECT_EQ(evs[0].after["id"].i, 1);
  EXPECT_EQ(evs[0].after["c1"].s, "b");
  EXPECT_EQ(db.One("SELECT json_extract(before, '$.c1') FROM cdc_changes"), "a");
}

// The source id names the database in sinks' dedupe ids: random, made once
// at the first setup, stable across connections and later setups, and added
// to a database whose internal tables an earlier version made.
TEST(SourceId, MadeOnceAndStable) {
  TempDir tmp;
  Db a(tmp.File("a.db")), b(tmp.File("b.db"));
  EXPECT_EQ(a.One("SELECT json_extract(cdc_status(), '$.source_id')"), "NULL");  // nothing set up yet
  a.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t')");
  b.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t')");
  std::string ida = a.One("SELECT json_extract(cdc_status(), '$.source_id')");
  EXPECT_EQ(ida.size(), 32u);
  EXPECT_NE(ida, b.One("SELECT json_extract(cdc_status(), '$.source_id')"));
  a.Exec("SELECT cdc_setup('t'), cdc_consumer_add('c')");
  EXPECT_EQ(a.One("SELECT json_extract(cdc_status(), '$.source_id')"), ida);
  Db again(tmp.File("a.db"));
  EXPECT_EQ(again.One("SELECT json_extract(cdc_status(), '$.source_id')"), ida);
  // An older layout (no __cdc_meta): the next setup adds it.
  a.Exec("DROP TABLE __cdc_meta");
  EXPECT_EQ(a.One("SELECT json_extract(cdc_status(), '$.source_id')"), "NULL");
  a.Exec("SELECT cdc_consumer_add('d')");
  EXPECT_EQ(a.One("SELECT length(json_extract(cdc_status(), '$.source_id'))"), "32");
}
