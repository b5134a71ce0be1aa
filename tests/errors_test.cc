// errors_test.cc — every function's bad input fails with its exact error
// message, changes nothing, and leaves the connection (and the caller's
// transaction) usable.
#include <gtest/gtest.h>

#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;
using Lines = std::vector<std::string>;

namespace {

struct Case {
  const char* sql;
  const char* error;
};

std::string NoConsumer(const std::string& fn, const std::string& name) {
  return fn + ": no such consumer: '" + name + "' (add it with SELECT cdc_consumer_add('" + name + "'))";
}

const char kSchema[] =
    "CREATE TABLE t(x); CREATE VIEW v AS SELECT * FROM t;"
    "CREATE VIRTUAL TABLE f USING fts5(x); CREATE VIRTUAL TABLE r USING rtree(id, a, b);"
    "CREATE TEMP TABLE tt(x); CREATE TABLE nc(x); CREATE TABLE \"a.b\"(x);"
    "SELECT cdc_setup('t'), cdc_consumer_add('c')";

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      // wrong arity (SQLite's own message: the functions are registered per arity)
      {"SELECT cdc_version(1)", "wrong number of arguments to function cdc_version()"},
      {"SELECT cdc_setup()", "wrong number of arguments to function cdc_setup()"},
      {"SELECT cdc_setup('t', 'u', 'v')", "wrong number of arguments to function cdc_setup()"},
      {"SELECT cdc_setup('t', 'u')", "cdc_setup: options must be a JSON object (e.g. '{\"on_schema_change\": \"error\"}')"},
      {"SELECT cdc_setup('t', NULL)", "cdc_setup: options must be JSON object text (e.g. '{\"on_schema_change\": \"error\"}')"},
      {"SELECT cdc_setup('t', '[1]')", "cdc_setup: options must be a JSON object (e.g. '{\"on_schema_change\": \"error\"}')"},
      {"SELECT cdc_setup('t', '{\"x\": 1}')", "cdc_setup: unknown option 'x'; the only option is on_schema_change"},
      {"SELECT cdc_setup('t', '{\"on_schema_change\": \"ignore\"}')", "cdc_setup: on_schema_change must be 'resync' or 'error'"},
      {"SELECT cdc_setup('t', '{\"on_schema_change\": 1}')", "cdc_setup: on_schema_change must be 'resync' or 'error'"},
      {"SELECT cdc_teardown('t', 'u')", "wrong number of arguments to function cdc_teardown()"},
      {"SELECT cdc_bootstrap()", "wrong number of arguments to function cdc_bootstrap()"},
      {"SELECT cdc_bootstrap('t', 1, 2)", "wrong number of arguments to function cdc_bootstrap()"},
      {"SELECT cdc_consumer_add()", "wrong number of arguments to function cdc_consumer_add()"},
      {"SELECT cdc_consumer_add('a', 'earliest', 1)", "wrong number of arguments to function cdc_consumer_add()"},
      {"SELECT cdc_consumer_drop()", "wrong number of arguments to function cdc_consumer_drop()"},
      {"SELECT cdc_poll()", "wrong number of arguments to function cdc_poll()"},
      {"SELECT cdc_poll('c', 1, 2)", "wrong number of arguments to function cdc_poll()"},
      {"SELECT cdc_ack()", "wrong number of arguments to function cdc_ack()"},
      {"SELECT cdc_ack('c', 1, 2)", "wrong number of arguments to function cdc_ack()"},
      {"SELECT cdc_status(1)", "wrong number of arguments to function cdc_status()"},
      // cdc_setup
      {"SELECT cdc_setup(NULL)", "cdc_setup: table must not be NULL"},
      {"SELECT cdc_setup(1)", "cdc_setup: table must be text"},
      {"SELECT cdc_setup(x'74')", "cdc_setup: table must be text"},
      {"SELECT cdc_setup('')", "cdc_setup: table must not be empty"},
      {"SELECT cdc_setup('nope')", "cdc_setup: no such table: 'nope' (only tables of the main database can be captured)"},
      {"SELECT cdc_setup('tt')", "cdc_setup: no such table: 'tt' (only tables of the main database can be captured)"},
      {"SELECT cdc_setup('main.t')", "cdc_setup: no such table: 'main.t' (only tables of the main database can be captured)"},
      {"SELECT cdc_setup('v')", "cdc_setup: 'v' is a view, not a table"},
      {"SELECT cdc_setup('f')", "cdc_setup: 'f' is a virtual table; only ordinary tables can be captured"},
      {"SELECT cdc_setup('r')", "cdc_setup: 'r' is a virtual table; only ordinary tables can be captured"},
      {"SELECT cdc_setup('f_data')", "cdc_setup: 'f_data' is a shadow table; only ordinary tables can be captured"},
      {"SELECT cdc_setup('sqlite_schema')", "cdc_setup: 'sqlite_schema' is an SQLite internal table"},
      {"SELECT cdc_setup('SQLITE_MASTER')", "cdc_setup: 'SQLITE_MASTER' is an SQLite internal table"},
      {"SELECT cdc_setup('__cdc_log')", "cdc_setup: '__cdc_log' is an internal table of sqlite-cdc"},
      {"SELECT cdc_setup('__CDC_consumers')", "cdc_setup: '__CDC_consumers' is an internal table of sqlite-cdc"},
      {"SELECT cdc_setup('x''); DROP TABLE t; --')",
       "cdc_setup: no such table: 'x''); DROP TABLE t; --' (only tables of the main database can be captured)"},
      // cdc_teardown
      {"SELECT cdc_teardown(NULL)", "cdc_teardown: table must not be NULL"},
      {"SELECT cdc_teardown(1)", "cdc_teardown: table must be text"},
      {"SELECT cdc_teardown('')", "cdc_teardown: table must not be empty"},
      {"SELECT cdc_teardown('nope')", "cdc_teardown: table 'nope' is not captured"},
      {"SELECT cdc_teardown('nc')", "cdc_teardown: table 'nc' is not captured"},
      {"SELECT cdc_teardown('v')", "cdc_teardown: table 'v' is not captured"},
      // cdc_bootstrap
      {"SELECT cdc_bootstrap(NULL)", "cdc_bootstrap: table must not be NULL"},
      {"SELECT cdc_bootstrap(7)", "cdc_bootstrap: table must be text"},
      {"SELECT cdc_bootstrap('')", "cdc_bootstrap: table must not be empty"},
      {"SELECT cdc_bootstrap('t', NULL)", "cdc_bootstrap: chunk size must not be NULL"},
      {"SELECT cdc_bootstrap('t', 'x')", "cdc_bootstrap: chunk size must be an integer"},
      {"SELECT cdc_bootstrap('t', 1.5)", "cdc_bootstrap: chunk size must be an integer"},
      {"SELECT cdc_bootstrap('t', 0)", "cdc_bootstrap: chunk size must be at least 1"},
      {"SELECT cdc_bootstrap('t', -1)", "cdc_bootstrap: chunk size must be at least 1"},
      {"SELECT cdc_bootstrap('nope')", "cdc_bootstrap: no such table: 'nope' (only tables of the main database can be captured)"},
      {"SELECT cdc_bootstrap('v')", "cdc_bootstrap: 'v' is a view, not a table"},
      {"SELECT cdc_bootstrap('f')", "cdc_bootstrap: 'f' is a virtual table; only ordinary tables can be captured"},
      {"SELECT cdc_bootstrap('sqlite_schema')", "cdc_bootstrap: 'sqlite_schema' is an SQLite internal table"},
      {"SELECT cdc_bootstrap('__cdc_log')", "cdc_bootstrap: '__cdc_log' is an internal table of sqlite-cdc"},
      {"SELECT cdc_bootstrap('nc')", "cdc_bootstrap: table 'nc' is not captured (run SELECT cdc_setup('nc') first)"},
      {"SELECT cdc_bootstrap('a.b')", "cdc_bootstrap: table 'a.b' is not captured (run SELECT cdc_setup('a.b') first)"},
      // cdc_consumer_add / drop
      {"SELECT cdc_consumer_add(NULL)", "cdc_consumer_add: name must not be NULL"},
      {"SELECT cdc_consumer_add(1)", "cdc_consumer_add: name must be text"},
      {"SELECT cdc_consumer_add('')", "cdc_consumer_add: name must not be empty"},
      {"SELECT cdc_consumer_add('d', NULL)", "cdc_consumer_add: start must not be NULL"},
      {"SELECT cdc_consumer_add('d', 1)", "cdc_consumer_add: start must be text"},
      {"SELECT cdc_consumer_add('d', 'middle')", "cdc_consumer_add: start must be 'earliest' or 'latest', not 'middle'"},
      {"SELECT cdc_consumer_add('d', 'LATEST')", "cdc_consumer_add: start must be 'earliest' or 'latest', not 'LATEST'"},
      {"SELECT cdc_consumer_drop(NULL)", "cdc_consumer_drop: name must not be NULL"},
      {"SELECT cdc_consumer_drop(2)", "cdc_consumer_drop: name must be text"},
      {"SELECT cdc_consumer_drop('')", "cdc_consumer_drop: name must not be empty"},
      {"SELECT cdc_consumer_drop('nope')", "NOCONSUMER:cdc_consumer_drop:nope"},
      {"SELECT cdc_consumer_drop('C')", "NOCONSUMER:cdc_consumer_drop:C"},  // names are case-sensitive
      // cdc_poll
      {"SELECT cdc_poll(NULL)", "cdc_poll: name must not be NULL"},
      {"SELECT cdc_poll(1)", "cdc_poll: name must be text"},
      {"SELECT cdc_poll('')", "cdc_poll: name must not be empty"},
      {"SELECT cdc_poll('nope')", "NOCONSUMER:cdc_poll:nope"},
      {"SELECT cdc_poll('c', 0)", "cdc_poll: limit must be at least 1"},
      {"SELECT cdc_poll('c', -5)", "cdc_poll: limit must be at least 1"},
      {"SELECT cdc_poll('c', NULL)", "cdc_poll: limit must not be NULL"},
      {"SELECT cdc_poll('c', 'ten')", "cdc_poll: limit must be an integer"},
      {"SELECT cdc_poll('c', 2.5)", "cdc_poll: limit must be an integer"},
      {"SELECT cdc_poll('c', 1e300)", "cdc_poll: limit must be an integer"},
      {"SELECT cdc_poll('nope', 0)", "cdc_poll: limit must be at least 1"},
      // cdc_ack
      {"SELECT cdc_ack(NULL, 1)", "cdc_ack: name must not be NULL"},
      {"SELECT cdc_ack('', 1)", "cdc_ack: name must not be empty"},
      {"SELECT cdc_ack('nope', 1)", "NOCONSUMER:cdc_ack:nope"},
      {"SELECT cdc_ack('c', NULL)", "cdc_ack: id must not be NULL"},
      {"SELECT cdc_ack('c')",
       "cdc_ack: this connection has not polled consumer 'c': call cdc_poll first, or pass the id of the last "
       "change handled"},
      {"SELECT cdc_ack('nope')", "NOCONSUMER:cdc_ack:nope"},
      {"SELECT cdc_ack('c', 'x')",
       "cdc_ack: the batch is not valid JSON: pass the text cdc_poll returned, or the id of the last change handled"},
      {"SELECT cdc_ack('c', '')",
       "cdc_ack: the batch is not valid JSON: pass the text cdc_poll returned, or the id of the last change handled"},
      {"SELECT cdc_ack('c', '3')",
       "cdc_ack: the batch must be the JSON array cdc_poll returned, not a JSON integer (an id is passed as an "
       "integer)"},
      {"SELECT cdc_ack('c', '{\"id\": 1}')",
       "cdc_ack: the batch must be the JSON array cdc_poll returned, not a JSON object (an id is passed as an "
       "integer)"},
      {"SELECT cdc_ack('c', '[1]')",
       "cdc_ack: the batch's last element has no integer \"id\": pass the text cdc_poll returned, or the id of "
       "the last change handled"},
      {"SELECT cdc_ack('c', '[{\"id\": 1}, {\"id\": \"1\"}]')",
       "cdc_ack: the batch's last element has no integer \"id\": pass the text cdc_poll returned, or the id of "
       "the last change handled"},
      {"SELECT cdc_ack('c', '[{\"id\": 99}]')", "cdc_ack: id 99 is past the newest change (1)"},
      {"SELECT cdc_ack('c', 1.5)", "cdc_ack: id must be an integer"},
      {"SELECT cdc_ack('c', x'01')", "cdc_ack: id must be an integer"},
      {"SELECT cdc_ack('c', 99)", "cdc_ack: id 99 is past the newest change (1)"},
      // cdc_changes
      {"SELECT * FROM cdc_changes('nope')", "NOCONSUMER:cdc_changes:nope"},
      {"SELECT * FROM cdc_changes(NULL)", "cdc_changes: the consumer argument must be a consumer name (text)"},
      {"SELECT * FROM cdc_changes(3)", "cdc_changes: the consumer argument must be a consumer name (text)"},
      {"SELECT * FROM cdc_changes('c', 'x')", "too many arguments on cdc_changes() - max 1"},
      {"DELETE FROM cdc_changes", "table cdc_changes may not be modified"},
      {"CREATE VIRTUAL TABLE temp.x USING cdc_changes", "no such module: cdc_changes"},
      // DIRECTONLY: not from triggers, views, CHECK constraints
      {"CREATE TRIGGER trg AFTER INSERT ON nc BEGIN SELECT cdc_setup('t'); END;"
       "INSERT INTO nc VALUES(1)", "unsafe use of cdc_setup()"},
      {"CREATE VIEW vs AS SELECT cdc_teardown(); SELECT * FROM vs", "unsafe use of cdc_teardown()"},
      {"CREATE VIEW vb AS SELECT cdc_bootstrap('t'); SELECT * FROM vb", "unsafe use of cdc_bootstrap()"},
      {"CREATE VIEW vp AS SELECT cdc_poll('c'); SELECT * FROM vp", "unsafe use of cdc_poll()"},
      {"CREATE VIEW va AS SELECT cdc_ack('c', 1); SELECT * FROM va", "unsafe use of cdc_ack()"},
      {"CREATE VIEW vc AS SELECT * FROM cdc_changes; SELECT * FROM vc", "unsafe use of virtual table \"cdc_changes\""},
  };
  return cases;
}

std::string Expected(const std::string& e) {
  if (e.rfind("NOCONSUMER:", 0) != 0) return e;
  std::string rest = e.substr(11);
  return NoConsumer(rest.substr(0, rest.find(':')), rest.substr(rest.find(':') + 1));
}

const char kSchemaQuery[] = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid";
const char kStateQuery[] =
    "SELECT 'log', id, op FROM __cdc_log UNION ALL SELECT 'consumer', name, pos FROM __cdc_consumers "
    "UNION ALL SELECT 'table', name, shape FROM __cdc_tables";

}  // namespace

// Each bad call, in autocommit mode and inside the caller's transaction:
// the exact error; nothing changed; the connection and transaction usable.
TEST(Errors, EveryBadCallFailsCleanly) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec(kSchema);
  db.Exec("INSERT INTO t VALUES(1)");
  const Lines schema = db.Rows(kSchemaQuery), state = db.Rows(kStateQuery);
  for (const auto& c : Cases()) {
    SCOPED_TRACE(c.sql);
    for (bool in_tx : {false, true}) {
      if (in_tx) db.Exec("BEGIN; INSERT INTO nc VALUES(2)");
      EXPECT_EQ(db.Error(c.sql), Expected(c.error)) << (in_tx ? "in a transaction" : "autocommit");
      if (in_tx) {
        EXPECT_EQ(sqlite3_get_autocommit(db.get()), 0) << "the caller's transaction was ended";
        EXPECT_EQ(db.One("SELECT count(*) FROM nc"), "1");
        db.Exec("ROLLBACK");
      }
      EXPECT_EQ(sqlite3_get_autocommit(db.get()), 1);
      // Drop whatever the case itself created (views, triggers), then the
      // schema and the extension's state must be exactly as before.
      db.Exec("DROP VIEW IF EXISTS vb; DROP VIEW IF EXISTS vp; DROP VIEW IF EXISTS va; DROP VIEW IF EXISTS vc;"
              "DROP VIEW IF EXISTS vs; DROP TRIGGER IF EXISTS trg; DELETE FROM nc");
      EXPECT_EQ(db.Rows(kSchemaQuery), schema);
      EXPECT_EQ(db.Rows(kStateQuery), state);
      EXPECT_EQ(db.One("SELECT count(*) FROM cdc_changes('c')"), "1");
    }
  }
}

// SQLite enforces SQLITE_DIRECTONLY in main-schema triggers and views (see
// EveryBadCallFailsCleanly), but not in CHECK constraints (3.40; newer
// versions refuse the CREATE TABLE) nor in TEMP
// triggers and views, which it trusts. There a schema-changing call runs
// inside the user's write statement, where its savepoint (or DROP) is
// refused: a clear error, nothing changed.
TEST(Errors, DirectOnlyInSchemaAndTempObjects) {
  TempDir tmp;
  bool check_refused;  // newer SQLite enforces DIRECTONLY in CHECK too
  {
    Db db(tmp.File("t.db"));
    db.Exec(kSchema);
    const std::string err = db.Error("CREATE TABLE ck(x CHECK (cdc_consumer_add('z') IS NOT NULL))");
    check_refused = !err.empty();
    if (check_refused) {
      EXPECT_GE(sqlite3_libversion_number(), 3041000) << err;
      EXPECT_EQ(err, "unsafe use of cdc_consumer_add()");
    }
  }
  Db db(tmp.File("t.db"));
  const Lines schema = db.Rows(kSchemaQuery), state = db.Rows(kStateQuery);
  if (!check_refused) {
    EXPECT_EQ(db.Error("INSERT INTO ck VALUES(1)"), "cannot open savepoint - SQL statements in progress");
  }
  db.Exec("CREATE TEMP TABLE tt(x)");
  EXPECT_EQ(db.Error("CREATE TEMP TRIGGER trg AFTER INSERT ON tt BEGIN SELECT cdc_setup('t'); END;"
                     "INSERT INTO tt VALUES(1)"),
            "cannot open savepoint - SQL statements in progress");
  EXPECT_EQ(db.Error("CREATE TEMP VIEW vs AS SELECT cdc_teardown(); SELECT * FROM vs"), "database table is locked");
  EXPECT_EQ(db.Error("CREATE TEMP VIEW vs2 AS SELECT cdc_consumer_add('zz'); SELECT * FROM vs2"), "");
  db.Exec("SELECT cdc_consumer_drop('zz')");
  EXPECT_EQ(db.Rows(kSchemaQuery), schema);
  EXPECT_EQ(db.Rows(kStateQuery), state);
  EXPECT_EQ(sqlite3_get_autocommit(db.get()), 1);
}

// Every function that writes refuses a read-only database; readers work.
TEST(Errors, ReadOnlyDatabase) {
  TempDir tmp;
  {
    Db db(tmp.File("t.db"));
    db.Exec(kSchema);
    db.Exec("INSERT INTO t VALUES(1)");
  }
  for (const std::string& uri : {"file:" + tmp.File("t.db") + "?mode=ro", tmp.File("t.db")}) {
    bool ro_flag = uri.rfind("file:", 0) != 0;
    Db db(uri, true, ro_flag ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI);
    SCOPED_TRACE(uri);
    const std::vector<Case> cases = {
        {"SELECT cdc_setup('t')", "cdc_setup: the database is read-only"},
        {"SELECT cdc_teardown('t')", "cdc_teardown: the database is read-only"},
        {"SELECT cdc_teardown()", "cdc_teardown: the database is read-only"},
        {"SELECT cdc_bootstrap('t')", "cdc_bootstrap: the database is read-only"},
        {"SELECT cdc_bootstrap('t', 5)", "cdc_bootstrap: the database is read-only"},
        {"SELECT cdc_consumer_add('d')", "cdc_consumer_add: the database is read-only"},
        {"SELECT cdc_consumer_drop('c')", "cdc_consumer_drop: the database is read-only"},
        {"SELECT cdc_ack('c', 1)", "cdc_ack: the database is read-only"},
    };
    for (const auto& c : cases) EXPECT_EQ(db.Error(c.sql), c.error) << c.sql;
    EXPECT_EQ(db.One("SELECT json_array_length(cdc_poll('c'))"), "1");
    EXPECT_EQ(db.One("SELECT count(*) FROM cdc_changes('c')"), "1");
    EXPECT_EQ(db.One("SELECT json_extract(cdc_status(), '$.consumers[0].pending')"), "1");
  }
}

// PRAGMA query_only: the same, naming the pragma.
TEST(Errors, QueryOnlyConnection) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec(kSchema);
  db.Exec("INSERT INTO t VALUES(1); PRAGMA query_only = ON");
  for (const char* fn : {"cdc_setup('t')", "cdc_teardown('t')", "cdc_teardown()", "cdc_bootstrap('t')",
                         "cdc_consumer_add('d')", "cdc_consumer_drop('c')", "cdc_ack('c', 1)"}) {
    std::string name(fn, std::string(fn).find('('));
    EXPECT_EQ(db.Error(std::string("SELECT ") + fn), name + ": the connection is read-only (PRAGMA query_only)");
  }
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_poll('c'))"), "1");
  db.Exec("PRAGMA query_only = OFF");
  EXPECT_EQ(db.One("SELECT cdc_ack('c', 1)"), "1");
}

// The extension loads into a connection whose main database is empty and
// ATTACHed databases are not touched.
TEST(Errors, AttachedDatabasesAreNotCaptured) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("ATTACH '" + tmp.File("aux.db") + "' AS aux; CREATE TABLE aux.at(x)");
  EXPECT_EQ(db.Error("SELECT cdc_setup('at')"),
            "cdc_setup: no such table: 'at' (only tables of the main database can be captured)");
  EXPECT_EQ(db.Error("SELECT cdc_setup('aux.at')"),
            "cdc_setup: no such table: 'aux.at' (only tables of the main database can be captured)");
  EXPECT_EQ(db.One("SELECT count(*) FROM aux.sqlite_schema"), "1");
}
