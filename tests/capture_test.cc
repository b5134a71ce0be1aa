// capture_test.cc — cdc_setup / cdc_teardown and what the triggers write.
#include <gtest/gtest.h>

#include "events.h"
#include "testing.h"

using cdctest::Db;
using cdctest::Describe;
using cdctest::Ev;
using cdctest::PollAll;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

TEST(Capture, VersionIsText) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  EXPECT_EQ(db.One("SELECT cdc_version()"), "0.1.0");
}

TEST(Capture, SetupInstallsThreeTriggersAndLogsEachWrite) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)");
  EXPECT_EQ(db.One("SELECT cdc_setup('t')"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE type='trigger' AND tbl_name='t'"), "3");
  db.Exec("INSERT INTO t VALUES(1,'x'); UPDATE t SET a='y'; DELETE FROM t");
  // An UPDATE's before image goes first, in a continuation row (op 0).
  EXPECT_EQ(db.Rows("SELECT op, v0, v1 FROM __cdc_log ORDER BY id"),
            (std::vector<std::string>{"1|1|x", "0|1|x", "2|1|y", "3|1|y"}));
}

TEST(Capture, ImagesOfInsertUpdateDelete) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b REAL); SELECT cdc_setup('t');"
          "INSERT INTO t VALUES(1,'x',1.5); UPDATE t SET a='y', b=NULL; DELETE FROM t");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":"x","b":R1.5})",
                   R"(t UPDATE {"id":1,"a":"x","b":R1.5} {"id":1,"a":"y","b":null})",
                   R"(t DELETE {"id":1,"a":"y","b":null} null)"}));
}

// DESIGN §1.1: a connection that never loaded the extension is captured.
TEST(Capture, ConnectionWithoutTheExtensionIsCaptured) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a); SELECT cdc_setup('t')");
  {
    Db plain(tmp.File("t.db"), /*load=*/false);
    EXPECT_NE(plain.Error("SELECT cdc_version()"), "");  // really not loaded
    plain.Exec("INSERT INTO t VALUES(1, x'00ff'); UPDATE t SET a = 9e999; DELETE FROM t");
  }
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":{"$blob":"00FF"}})",
                   R"(t UPDATE {"id":1,"a":{"$blob":"00FF"}} {"id":1,"a":Rinf})",
                   R"(t DELETE {"id":1,"a":Rinf} null)"}));
}

TEST(Capture, PlainSqliteShellIsCaptured) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  {
    Db db(path);
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a); SELECT cdc_setup('t')");
  }
  std::string out = cdctest::Shell(
      path, "INSERT INTO t VALUES(1,'shell'); UPDATE t SET a='again'; DELETE FROM t;\n", /*load=*/false);
  EXPECT_EQ(out, "");
  Db db(path);
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":"shell"})",
                   R"(t UPDATE {"id":1,"a":"shell"} {"id":1,"a":"again"})",
                   R"(t DELETE {"id":1,"a":"again"} null)"}));
}

TEST(Capture, NoTriggerCallsAnExtensionFunction) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, u UNIQUE, v); SELECT cdc_setup('t')");
  auto sqls = db.Rows("SELECT sql FROM sqlite_schema WHERE type='trigger'");
  EXPECT_EQ(sqls.size(), 5u);
  for (const auto& sql : sqls) {
    // "cdc_" only ever appears as part of an internal "__cdc_" name.
    for (size_t at = sql.find("cdc_"); at != std::string::npos; at = sql.find("cdc_", at + 1)) {
      EXPECT_TRUE(at >= 2 && sql.compare(at - 2, 2, "__") == 0) << sql;
    }
  }
}

// DESIGN §1.2: atomic with the change.
TEST(Capture, RollbackAndSavepointRollbackLeaveNoEvent) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a NOT NULL CHECK(a <> 'bad')); SELECT cdc_setup('t')");
  db.Exec("BEGIN; INSERT INTO t VALUES(1,'a'); ROLLBACK");
  db.Exec("BEGIN; INSERT INTO t VALUES(2,'b'); SAVEPOINT s; INSERT INTO t VALUES(3,'c');"
          "UPDATE t SET a='z'; ROLLBACK TO s; RELEASE s; COMMIT");
  db.Exec("SAVEPOINT outer_sp; DELETE FROM t; ROLLBACK TO outer_sp; RELEASE outer_sp");
  // Statement failures: a constraint error undoes the statement's events.
  EXPECT_NE(db.Error("INSERT INTO t VALUES(4,'d'),(5,NULL)"), "");
  EXPECT_NE(db.Error("INSERT INTO t VALUES(6,'e'),(7,'bad')"), "");
  EXPECT_NE(db.Error("UPDATE t SET a = NULL"), "");
  EXPECT_NE(db.Error("INSERT INTO t VALUES(2,'dup')"), "");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "1");
  EXPECT_EQ(Describe(PollAll(db)), (Lines{R"(t INSERT null {"id":2,"a":"b"})"}));
}

TEST(Capture, EveryCommittedWriteLeavesOneEvent) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a); SELECT cdc_setup('t')");
  db.Exec("BEGIN");
  for (int i = 0; i < 200; i++) db.Exec("INSERT INTO t VALUES(" + std::to_string(i) + ", 'x')");
  db.Exec("COMMIT; UPDATE t SET a = 'y' WHERE id % 2 = 0; DELETE FROM t WHERE id < 50");
  auto evs = PollAll(db);
  ASSERT_EQ(evs.size(), 200u + 100u + 50u);
  for (size_t i = 1; i < evs.size(); i++) EXPECT_GT(evs[i].id, evs[i - 1].id);
  EXPECT_EQ(evs[0].after["id"].i, 0);
  EXPECT_EQ(evs[199].after["id"].i, 199);
}

// DESIGN §1.5: identifiers are always quoted.
TEST(Capture, AwkwardIdentifiers) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec(R"sql(CREATE TABLE "we""ird 'tab.le" ("index" INTEGER PRIMARY KEY, "select", "a b", "x.y", "üñí 名",
             "q""uote", "'sq'", "a""); DROP TABLE victim; --", "]"))sql");
  db.Exec("CREATE TABLE victim(x)");
  EXPECT_EQ(db.One(R"(SELECT cdc_setup('we"ird ''tab.le'))"), "1");
  db.Exec(R"(INSERT INTO "we""ird 'tab.le" VALUES(1,2,3,4,5,6,7,8,9);
             UPDATE "we""ird 'tab.le" SET "select" = 'S';
             DELETE FROM "we""ird 'tab.le")");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE name='victim'"), "1");
  auto evs = PollAll(db);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].table, "we\"ird 'tab.le");
  EXPECT_EQ(cdctest::Dump(evs[0].after),
            R"({"index":1,"select":2,"a b":3,"x.y":4,"üñí 名":5,"q\"uote":6,"'sq'":7,"a\"); DROP TABLE victim; --":8,"]":9})");
  EXPECT_EQ(evs[1].after["select"].s, "S");
  EXPECT_EQ(evs[2].before["select"].s, "S");
}

// Columns named rowid / oid / _rowid_ shadow the rowid; captured as columns.
TEST(Capture, RowidShadowingColumns) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE a(rowid TEXT, u UNIQUE);"
          "CREATE TABLE b(rowid, oid, _rowid_, u UNIQUE);"
          "CREATE TABLE c(\"ROWID\" INTEGER PRIMARY KEY, \"OID\", u UNIQUE);"
          "SELECT cdc_setup('a'), cdc_setup('b'), cdc_setup('c');"
          "INSERT INTO a VALUES('r1', 1); INSERT OR REPLACE INTO a VALUES('r2', 1);"
          "INSERT INTO b VALUES(1, 2, 3, 'u'); UPDATE b SET oid = 20;"
          "INSERT OR REPLACE INTO b VALUES(4, 5, 6, 'u');"
          "INSERT INTO c VALUES(7, 8, 'x'); INSERT OR REPLACE INTO c VALUES(9, 10, 'x');");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(a INSERT null {"rowid":"r1","u":1})",
                   R"(a DELETE {"rowid":"r1","u":1} null)",
                   R"(a INSERT null {"rowid":"r2","u":1})",
                   R"(b INSERT null {"rowid":1,"oid":2,"_rowid_":3,"u":"u"})",
                   R"(b UPDATE {"rowid":1,"oid":2,"_rowid_":3,"u":"u"} {"rowid":1,"oid":20,"_rowid_":3,"u":"u"})",
                   // every rowid alias is shadowed: the REPLACE deletion cannot be
                   // keyed, so it is not captured (documented limitation)
                   R"(b INSERT null {"rowid":4,"oid":5,"_rowid_":6,"u":"u"})",
                   R"(c INSERT null {"ROWID":7,"OID":8,"u":"x"})",
                   R"(c DELETE {"ROWID":7,"OID":8,"u":"x"} null)",
                   R"(c INSERT null {"ROWID":9,"OID":10,"u":"x"})"}));
}

TEST(Capture, TableKinds) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE ipk(id INTEGER PRIMARY KEY, v);"
          "CREATE TABLE plain(v);"
          "CREATE TABLE wr(a TEXT, b INT, c, PRIMARY KEY(b, a)) WITHOUT ROWID;"
          "CREATE TABLE st(i INTEGER, r REAL, t TEXT, b BLOB, a ANY) STRICT;"
          "CREATE TABLE gen(a INT, b INT, v INT AS (a + b) VIRTUAL, s TEXT AS (a || '-' || b) STORED, c);");
  for (auto t : {"ipk", "plain", "wr", "st", "gen"}) {
    EXPECT_EQ(db.One(std::string("SELECT cdc_setup('") + t + "')"), "1");
  }
  db.Exec("INSERT INTO ipk(v) VALUES('x'); INSERT INTO plain VALUES(1);"
          "INSERT INTO wr VALUES('k', 2, 'c'); UPDATE wr SET c = 'd';"
          "INSERT INTO st VALUES(1, 2, 't', x'01', x'02'); UPDATE st SET a = 3.5;"
          "INSERT INTO gen(a, b, c) VALUES(1, 2, 'c'); UPDATE gen SET a = 10; DELETE FROM gen;");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(ipk INSERT null {"id":1,"v":"x"})",
                   R"(plain INSERT null {"v":1})",
                   R"(wr INSERT null {"a":"k","b":2,"c":"c"})",
                   R"(wr UPDATE {"a":"k","b":2,"c":"c"} {"a":"k","b":2,"c":"d"})",
                   R"(st INSERT null {"i":1,"r":R2,"t":"t","b":{"$blob":"01"},"a":{"$blob":"02"}})",
                   R"(st UPDATE {"i":1,"r":R2,"t":"t","b":{"$blob":"01"},"a":{"$blob":"02"}} {"i":1,"r":R2,"t":"t","b":{"$blob":"01"},"a":R3.5})",
                   R"(gen INSERT null {"a":1,"b":2,"v":3,"s":"1-2","c":"c"})",
                   R"(gen UPDATE {"a":1,"b":2,"v":3,"s":"1-2","c":"c"} {"a":10,"b":2,"v":12,"s":"10-2","c":"c"})",
                   R"(gen DELETE {"a":10,"b":2,"v":12,"s":"10-2","c":"c"} null)"}));
}

TEST(Capture, SetupIsIdempotent) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, u UNIQUE)");
  for (int i = 0; i < 3; i++) EXPECT_EQ(db.One("SELECT cdc_setup('t')"), "1");
  EXPECT_EQ(db.One("SELECT cdc_setup('T')"), "1");  // any case
  EXPECT_EQ(db.Rows("SELECT type, name FROM sqlite_schema WHERE name LIKE '\\_\\_cdc%' ESCAPE '\\' ORDER BY 1, 2"),
            (Lines{"table|__cdc_consumers", "table|__cdc_log", "table|__cdc_meta", "table|__cdc_shapes", "table|__cdc_stage_1",
                   "table|__cdc_tables", "trigger|__cdc_1_before_insert", "trigger|__cdc_1_before_update",
                   "trigger|__cdc_1_delete", "trigger|__cdc_1_insert", "trigger|__cdc_1_update"}));
  EXPECT_EQ(db.Rows("SELECT id, name, shape FROM __cdc_tables"), (Lines{"1|t|1"}));
  EXPECT_EQ(db.One("SELECT count(*) FROM __cdc_shapes"), "1");
  db.Exec("INSERT INTO t VALUES(1, 2)");
  EXPECT_EQ(PollAll(db).size(), 1u);
}

// Schema changes: old events keep their old columns, new ones get the new.
// A refresh after a committed ALTER (other writers may have been logged with
// the old column list meanwhile) resyncs the table: a BOOTSTRAP marker with
// the reason, then its rows.
TEST(Capture, RefreshAfterAlterTable) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); SELECT cdc_setup('t');"
          "INSERT INTO t VALUES(1, 'a1', 'b1');"
          "ALTER TABLE t ADD COLUMN c DEFAULT 'cd';"
          "INSERT INTO t VALUES(2, 'a2', 'b2', 'c2');");  // before the refresh: old shape
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "1");
  db.Exec("SELECT cdc_setup('t');");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "0");
  db.Exec("INSERT INTO t VALUES(3, 'a3', 'b3', 'c3');"
          "ALTER TABLE t RENAME COLUMN a TO aa;");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "1");
  // The triggers follow the rename (SQLite rewrites them), so capture goes on
  // under the old key until the refresh.
  db.Exec("UPDATE t SET aa = 'renamed' WHERE id = 3; SELECT cdc_setup('t');"
          "UPDATE t SET aa = 'again' WHERE id = 3;");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":"a1","b":"b1"})",
                   R"(t INSERT null {"id":2,"a":"a2","b":"b2"})",
                   R"(t BOOTSTRAP (columns changed) null null)",
                   R"(t INSERT null {"id":1,"a":"a1","b":"b1","c":"cd"})",
                   R"(t INSERT null {"id":2,"a":"a2","b":"b2","c":"c2"})",
                   R"(t INSERT null {"id":3,"a":"a3","b":"b3","c":"c3"})",
                   R"(t UPDATE {"id":3,"a":"a3","b":"b3","c":"c3"} {"id":3,"a":"renamed","b":"b3","c":"c3"})",
                   R"(t BOOTSTRAP (columns changed) null null)",
                   R"(t INSERT null {"id":1,"aa":"a1","b":"b1","c":"cd"})",
                   R"(t INSERT null {"id":2,"aa":"a2","b":"b2","c":"c2"})",
                   R"(t INSERT null {"id":3,"aa":"renamed","b":"b3","c":"c3"})",
                   R"(t UPDATE {"id":3,"aa":"renamed","b":"b3","c":"c3"} {"id":3,"aa":"again","b":"b3","c":"c3"})"}));
}

TEST(Capture, DropColumnThenRefresh) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); SELECT cdc_setup('t');"
          "INSERT INTO t VALUES(1, 'a1', 'b1')");
  // SQLite refuses to drop a column the capture triggers name...
  EXPECT_EQ(db.Error("ALTER TABLE t DROP COLUMN b"),
            "error in trigger __cdc_1_insert after drop column: no such column: NEW.b");
  // ...so a migration tears the table's capture down first, in the same
  // transaction as the ALTER and the new cdc_setup: nothing is lost.
  db.Exec("BEGIN; SELECT cdc_teardown('t'); ALTER TABLE t DROP COLUMN b; SELECT cdc_setup('t');"
          "INSERT INTO t VALUES(2, 'a2'); COMMIT");
  db.Exec("UPDATE t SET a = 'x' WHERE id = 1");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":"a1","b":"b1"})",
                   R"(t INSERT null {"id":2,"a":"a2"})",
                   R"(t UPDATE {"id":1,"a":"a1"} {"id":1,"a":"x"})"}));
}

TEST(Capture, AlterAndSetupInOneTransactionLosesNothing) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, a); SELECT cdc_setup('t')");
  Db other(path, false);
  db.Exec("BEGIN IMMEDIATE; INSERT INTO t VALUES(1, 'x'); ALTER TABLE t ADD COLUMN b;"
          "SELECT cdc_setup('t'); INSERT INTO t VALUES(2, 'y', 'z')");
  EXPECT_NE(other.Error("PRAGMA busy_timeout=0; INSERT INTO t(id, a) VALUES(3, 'w')"), "");
  db.Exec("COMMIT");
  other.Exec("INSERT INTO t(id, a) VALUES(3, 'w')");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(t INSERT null {"id":1,"a":"x"})",
                   R"(t INSERT null {"id":2,"a":"y","b":"z"})",
                   R"(t INSERT null {"id":3,"a":"w","b":null})"}));
}

// A failed cdc_setup inside the caller's transaction leaves it intact.
TEST(Capture, FailedSetupKeepsCallerTransaction) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(a); BEGIN; INSERT INTO t VALUES(1)");
  EXPECT_NE(db.Error("SELECT cdc_setup('nope')"), "");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "1");
  db.Exec("COMMIT");
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_\\_cdc%' ESCAPE '\\'"), "0");
}

TEST(Capture, TeardownAllRestoresSchemaExactly) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE a(id INTEGER PRIMARY KEY, u UNIQUE, v);"
          "CREATE TABLE b(k1, k2, w, PRIMARY KEY(k1, k2)) WITHOUT ROWID;"
          "CREATE INDEX a_v ON a(v); CREATE VIEW av AS SELECT * FROM a;"
          "CREATE TRIGGER user_trig AFTER INSERT ON a BEGIN SELECT 1; END;"
          "INSERT INTO a VALUES(1, 1, 1); INSERT INTO b VALUES(1, 1, 1), (1, 2, 2);");
  const std::string q = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid";
  Lines before = db.Rows(q);
  db.Exec("SELECT cdc_setup('a'), cdc_setup('b'), cdc_consumer_add('c');"
          "SELECT cdc_bootstrap('b', 1); INSERT OR REPLACE INTO a VALUES(2, 1, 2);"
          "SELECT cdc_ack('c', 2);");
  EXPECT_NE(db.Rows(q), before);
  EXPECT_EQ(db.One("SELECT cdc_teardown()"), "1");
  EXPECT_EQ(db.Rows(q), before);
  EXPECT_EQ(db.One("SELECT cdc_teardown()"), "1");  // nothing to do: still fine
  EXPECT_EQ(db.Rows(q), before);
  db.Exec("INSERT INTO a VALUES(3, 3, 3)");  // no capture left behind
  EXPECT_EQ(db.One("SELECT count(*) FROM a"), "2");
}

TEST(Capture, TeardownOneTableKeepsItsPendingEvents) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE a(x); CREATE TABLE b(y); SELECT cdc_setup('a'), cdc_setup('b');"
          "INSERT INTO a VALUES(1); INSERT INTO b VALUES(2);");
  EXPECT_EQ(db.One("SELECT cdc_teardown('A')"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE type='trigger' AND tbl_name='a'"), "0");
  db.Exec("INSERT INTO a VALUES(3); INSERT INTO b VALUES(4);");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{R"(a INSERT null {"x":1})", R"(b INSERT null {"y":2})", R"(b INSERT null {"y":4})"}));
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_status(), '$.tables')"), "1");
}

// Renaming a captured table moves its triggers along; setting the new name
// up again must not leave two sets of triggers (double events). Consumers are
// told: a DROP of the old name, then the table under its new one.
TEST(Capture, RenameTableThenSetupCapturesOnce) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, u UNIQUE); SELECT cdc_setup('t');"
          "ALTER TABLE t RENAME TO t2; SELECT cdc_setup('t2'); INSERT INTO t2 VALUES(1, 1);");
  EXPECT_EQ(db.One("SELECT count(*) FROM sqlite_schema WHERE type='trigger'"), "5");
  EXPECT_EQ(Describe(PollAll(db)), (Lines{"t DROP (renamed to t2) null null", "t2 BOOTSTRAP (renamed from t) null null",
                                          R"(t2 INSERT null {"id":1,"u":1})"}));
  EXPECT_EQ(db.Rows("SELECT name FROM __cdc_tables"), (Lines{"t2"}));
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "0");
}

TEST(Capture, DroppedTableShowsAsDriftAndCanBeTornDown) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(x); SELECT cdc_setup('t'); INSERT INTO t VALUES(1); DROP TABLE t;");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "1");
  EXPECT_EQ(db.One("SELECT cdc_teardown('t')"), "1");
  // The teardown of a table that is gone tells consumers to drop their copy.
  EXPECT_EQ(Describe(PollAll(db)), (Lines{R"(t INSERT null {"x":1})", "t DROP (dropped) null null"}));
}

// DESIGN §1.6: ids increase in commit order, across connections and processes.
TEST(Capture, IdsIncreaseInCommitOrderAcrossConnectionsAndProcesses) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db a(path);
  a.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(who, n); SELECT cdc_setup('t')");
  Db b(path, false);
  std::string expect;
  for (int i = 0; i < 10; i++) {
    std::string n = std::to_string(i);
    // a holds the write lock with uncommitted work; b cannot slip in.
    a.Exec("BEGIN IMMEDIATE; INSERT INTO t VALUES('a', " + n + ")");
    EXPECT_NE(b.Error("PRAGMA busy_timeout=0; INSERT INTO t VALUES('b', " + n + ")"), "");
    a.Exec("INSERT INTO t VALUES('a2', " + n + "); COMMIT");
    b.Exec("INSERT INTO t VALUES('b', " + n + ")");
    EXPECT_EQ(cdctest::Shell(path, "INSERT INTO t VALUES('shell', " + n + ");\n", false), "");
    expect += "a" + n + ",a2" + n + ",b" + n + ",shell" + n + ",";
  }
  auto evs = PollAll(a);
  std::string got;
  for (size_t i = 0; i < evs.size(); i++) {
    if (i) { EXPECT_GT(evs[i].id, evs[i - 1].id); }
    got += evs[i].after["who"].s + std::to_string(evs[i].after["n"].i) + ",";
  }
  EXPECT_EQ(got, expect);
}

// A captured table dropped and created again with the same columns has lost
// its triggers: cdc_status must report it (not "no drift"), and cdc_setup
// brings capture back, with a resync (the rows changed without events).
TEST(Capture, RecreatedTableWithoutTriggersIsReportedAsDrift) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a); SELECT cdc_setup('t');"
          "DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, a); INSERT INTO t VALUES(1, 'lost')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "1");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift_reason')"),
            "capture triggers are missing: the table was rebuilt, or dropped and created again");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].state')"), "triggers_missing");
  db.Exec("DROP TRIGGER IF EXISTS __cdc_1_insert; SELECT cdc_setup('t'); INSERT INTO t VALUES(2, 'kept')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "0");
  // A capture trigger dropped by hand is drift too.
  db.Exec("DROP TRIGGER __cdc_1_update");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "1");
  db.Exec("SELECT cdc_setup('t')");
  EXPECT_EQ(Describe(PollAll(db)),
            (Lines{"t BOOTSTRAP (triggers missing) null null", R"(t INSERT null {"id":1,"a":"lost"})",
                   R"(t INSERT null {"id":2,"a":"kept"})", "t BOOTSTRAP (triggers missing) null null",
                   R"(t INSERT null {"id":1,"a":"lost"})", R"(t INSERT null {"id":2,"a":"kept"})"}));
}

// Foreign-key actions fire the child's triggers: cascaded changes are
// captured, REPLACE deletions included.
TEST(Capture, ForeignKeyCascades) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("PRAGMA foreign_keys = ON; CREATE TABLE p(id INTEGER PRIMARY KEY, u UNIQUE);"
          "CREATE TABLE c(id INTEGER PRIMARY KEY, pid REFERENCES p(id) ON DELETE CASCADE ON UPDATE CASCADE);"
          "SELECT cdc_setup('p'), cdc_setup('c');"
          "INSERT INTO p VALUES(1, 'a'), (2, 'b'); INSERT INTO c VALUES(10, 1), (20, 2);"
          "UPDATE p SET id = 5 WHERE id = 1; DELETE FROM p WHERE id = 2; INSERT OR REPLACE INTO p VALUES(7, 'a')");
  auto evs = PollAll(db);
  EXPECT_EQ(Describe(std::vector<Ev>(evs.begin() + 4, evs.end())),
            (Lines{R"(c UPDATE {"id":10,"pid":1} {"id":10,"pid":5})", R"(p UPDATE {"id":1,"u":"a"} {"id":5,"u":"a"})",
                   R"(c DELETE {"id":20,"pid":2} null)", R"(p DELETE {"id":2,"u":"b"} null)",
                   R"(c DELETE {"id":10,"pid":5} null)", R"(p DELETE {"id":5,"u":"a"} null)",
                   R"(p INSERT null {"id":7,"u":"a"})"}));
}

// SQLite fires the most recently created trigger first. A user AFTER trigger
// created after cdc_setup that writes the same table runs before capture,
// so its UPDATE would be logged before the INSERT that caused it (a replica
// applying in id order ends with the stale INSERT image). cdc_status
// reports it; cdc_setup again puts capture first.
TEST(Capture, UserTriggersCreatedAfterSetup) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, n DEFAULT 0); SELECT cdc_setup('t');"
          "CREATE TRIGGER bump AFTER INSERT ON t BEGIN UPDATE t SET n = n + 1 WHERE id = NEW.id; END;");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift_reason')"),
            "triggers created after cdc_setup fire before capture; run cdc_setup again");
  db.Exec("INSERT INTO t(id) VALUES(1)");
  EXPECT_EQ(Describe(PollAll(db)), (Lines{R"(t UPDATE {"id":1,"n":0} {"id":1,"n":1})",
                                          R"(t INSERT null {"id":1,"n":0})"}));  // out of order
  db.Exec("SELECT cdc_setup('t')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[0].drift')"), "0");
  db.Exec("INSERT INTO t(id) VALUES(2)");
  auto evs = PollAll(db);
  EXPECT_EQ(Describe(std::vector<Ev>(evs.begin() + 2, evs.end())),
            (Lines{R"(t INSERT null {"id":2,"n":0})", R"(t UPDATE {"id":2,"n":0} {"id":2,"n":1})"}));
  // Triggers created before cdc_setup are no drift.
  db.Exec("CREATE TABLE u(x); CREATE TRIGGER u_t AFTER INSERT ON u BEGIN SELECT 1; END; SELECT cdc_setup('u')");
  EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.tables[1].drift')"), "0");
}
