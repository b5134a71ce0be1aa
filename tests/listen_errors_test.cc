// listen_errors_test.cc — bad input to cdc_listen, cdc_serve, cdc_unlisten and cdc_wait,
// table-driven: each case asserts the exact error message, starts nothing,
// changes nothing, and leaves the connection and the caller's transaction
// usable. (The other functions' table is errors_test.cc.)
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "cdc.h"
#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

namespace {

struct Case {
  const char* sql;
  const char* error;
};

const char kExample[] = " (e.g. '{\"signals\": [\"watch\", \"interval\"], \"interval_ms\": 250, \"batch\": 256}')";
const char kCallback[] =
    "cdc_listen: callback must be a cdc_callback pointer bound with sqlite3_bind_pointer(..., \"cdc_callback\", "
    "...) (include/cdc.h); for an SQL function use cdc_serve";
const char kUseServe[] =
    "cdc_listen: an SQL-function callback is called by cdc_serve, not cdc_listen: run SELECT cdc_serve('c', "
    "'on_batch') on a connection of its own, in a thread of its own (a background thread calling into this "
    "connection deadlocks hosts with a global lock such as Python's GIL; docs/recipes.md, \"Push delivery\")";

std::string Opt(const char* name, const char* range) {
  return std::string("cdc_serve: option \"") + name + "\" must be an integer from " + range;
}

std::vector<std::pair<std::string, std::string>> Cases() {
  const std::string not_json = std::string("cdc_serve: options is not valid JSON") + kExample;
  const std::string not_object = std::string("cdc_serve: options must be a JSON object") + kExample;
  const std::string not_text = std::string("cdc_serve: options must be JSON object text") + kExample;
  const std::string batch = Opt("batch", "1 to 1000000"), interval = Opt("interval_ms", "1 to 3600000"),
                    retry = Opt("retry_max_ms", "1 to 3600000");
  const std::string unknown_key = "(known: signals, interval_ms, batch, retry_max_ms)";
  return {
      // arity (SQLite's own message: one registration per arity)
      {"SELECT cdc_listen('c')", "wrong number of arguments to function cdc_listen()"},
      {"SELECT cdc_serve('c')", "wrong number of arguments to function cdc_serve()"},
      {"SELECT cdc_serve('c', 'on_batch', '{}', 1)", "wrong number of arguments to function cdc_serve()"},
      {"SELECT cdc_unlisten()", "wrong number of arguments to function cdc_unlisten()"},
      {"SELECT cdc_unlisten('c', 'd')", "wrong number of arguments to function cdc_unlisten()"},
      {"SELECT cdc_wait('c')", "wrong number of arguments to function cdc_wait()"},
      {"SELECT cdc_wait('c', 1, 2)", "wrong number of arguments to function cdc_wait()"},
      // consumer name
      {"SELECT cdc_serve(NULL, 'on_batch')", "cdc_serve: consumer name must not be NULL"},
      {"SELECT cdc_serve(1, 'on_batch')", "cdc_serve: consumer name must be text"},
      {"SELECT cdc_serve(x'63', 'on_batch')", "cdc_serve: consumer name must be text"},
      {"SELECT cdc_serve('', 'on_batch')", "cdc_serve: consumer name must not be empty"},
      {"SELECT cdc_serve('nope', 'on_batch')", "cdc_serve: no such consumer: 'nope' (add it with SELECT cdc_consumer_add('nope'))"},
      {"SELECT cdc_unlisten(NULL)", "cdc_unlisten: consumer name must not be NULL"},
      {"SELECT cdc_unlisten(1)", "cdc_unlisten: consumer name must be text"},
      {"SELECT cdc_unlisten('')", "cdc_unlisten: consumer name must not be empty"},
      {"SELECT cdc_unlisten('nope')", "cdc_unlisten: no listener for consumer 'nope' on this database (start one with cdc_listen)"},
      {"SELECT cdc_unlisten('c')", "cdc_unlisten: no listener for consumer 'c' on this database (start one with cdc_listen)"},
      {"SELECT cdc_wait(NULL, 1)", "cdc_wait: consumer name must not be NULL"},
      {"SELECT cdc_wait(1, 1)", "cdc_wait: consumer name must be text"},
      {"SELECT cdc_wait('', 1)", "cdc_wait: consumer name must not be empty"},
      {"SELECT cdc_wait('nope', 1)", "cdc_wait: no such consumer: 'nope' (add it with SELECT cdc_consumer_add('nope'))"},
      // callback: cdc_listen takes a cdc_callback pointer, cdc_serve a function name
      {"SELECT cdc_listen('c', NULL)", kCallback},
      {"SELECT cdc_listen('c', 1)", kCallback},
      {"SELECT cdc_listen('c', 1.5)", kCallback},
      {"SELECT cdc_listen('c', x'0011223344556677')", kCallback},  // bytes cannot forge a pointer
      {"SELECT cdc_listen('c', 'on_batch')", kUseServe},
      {"SELECT cdc_serve('c', NULL)", "cdc_serve: callback (the name of an SQL function) must not be NULL"},
      {"SELECT cdc_serve('c', 1)", "cdc_serve: callback (the name of an SQL function) must be text"},
      {"SELECT cdc_serve('c', '')", "cdc_serve: callback (the name of an SQL function) must not be empty"},
      {"SELECT cdc_serve('c', 'on_batch' || char(0) || 'x')", "cdc_serve: the callback name contains a NUL character"},
      {"SELECT cdc_serve('c', 'no_such_fn')",
       "cdc_serve: no SQL function \"no_such_fn\" taking one argument is registered on this connection"},
      {"SELECT cdc_serve('c', 'cdc_status')",
       "cdc_serve: no SQL function \"cdc_status\" taking one argument is registered on this connection"},
      {"SELECT cdc_serve('c', 'on_batch')",
       "cdc_serve: the connection is inside a transaction: the function's writes would commit only with it, "
       "after their batches were acked; call cdc_serve outside a transaction"},
      // timeouts
      {"SELECT cdc_wait('c', NULL)", "cdc_wait: timeout_ms must not be NULL"},
      {"SELECT cdc_wait('c', 'x')", "cdc_wait: timeout_ms must be an integer"},
      {"SELECT cdc_wait('c', '10')", "cdc_wait: timeout_ms must be an integer"},
      {"SELECT cdc_wait('c', 1.5)", "cdc_wait: timeout_ms must be an integer"},
      {"SELECT cdc_wait('c', x'00')", "cdc_wait: timeout_ms must be an integer"},
      {"SELECT cdc_wait('c', 1e300)", "cdc_wait: timeout_ms must be an integer"},
      {"SELECT cdc_wait('c', -1)", "cdc_wait: timeout_ms must not be negative"},
      {"SELECT cdc_wait('c', -9223372036854775808)", "cdc_wait: timeout_ms must not be negative"},
      // options: not an object
      {"SELECT cdc_serve('c', 'on_batch', 1)", not_text},
      {"SELECT cdc_serve('c', 'on_batch', x'7b7d')", not_text},
      {"SELECT cdc_serve('c', 'on_batch', NULL)", not_text},
      {"SELECT cdc_serve('c', 'on_batch', '')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '   ')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{}}')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 2} x')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 01}')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": NaN}')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '{''batch'': 2}')", not_json},
      {"SELECT cdc_serve('c', 'on_batch', '[]')", not_object},
      {"SELECT cdc_serve('c', 'on_batch', 'null')", not_object},
      {"SELECT cdc_serve('c', 'on_batch', '\"x\"')", not_object},
      // options: keys
      {"SELECT cdc_serve('c', 'on_batch', '{\"bogus\": 1}')", "cdc_serve: unknown option \"bogus\" " + unknown_key},
      {"SELECT cdc_serve('c', 'on_batch', '{\"\": 1}')", "cdc_serve: unknown option \"\" " + unknown_key},
      {"SELECT cdc_serve('c', 'on_batch', '{\"Batch\": 1}')", "cdc_serve: unknown option \"Batch\" " + unknown_key},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 1, \"batch\": 2}')", "cdc_serve: option \"batch\" is given twice"},
      // options: values
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 0}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": -1}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 1000001}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 9223372036854775808}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 1.5}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": 1e3}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": \"5\"}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"batch\": null}')", batch},
      {"SELECT cdc_serve('c', 'on_batch', '{\"interval_ms\": 0}')", interval},
      {"SELECT cdc_serve('c', 'on_batch', '{\"interval_ms\": 3600001}')", interval},
      {"SELECT cdc_serve('c', 'on_batch', '{\"interval_ms\": 1.0}')", interval},
      {"SELECT cdc_serve('c', 'on_batch', '{\"retry_max_ms\": 0}')", retry},
      {"SELECT cdc_serve('c', 'on_batch', '{\"retry_max_ms\": -1}')", retry},
      {"SELECT cdc_serve('c', 'on_batch', '{\"retry_max_ms\": 99999999999}')", retry},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": []}')",
       "cdc_serve: option \"signals\" must name at least one of \"watch\", \"interval\", \"commit\""},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": \"watch\"}')",
       "cdc_serve: option \"signals\" must be an array of \"watch\", \"interval\", \"commit\""},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": null}')",
       "cdc_serve: option \"signals\" must be an array of \"watch\", \"interval\", \"commit\""},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": [\"watch\", \"watch\"]}')", "cdc_serve: signal \"watch\" is listed twice"},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": [\"inotify\"]}')",
       "cdc_serve: unknown signal \"inotify\" (known: \"watch\", \"interval\", \"commit\")"},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": [1]}')",
       "cdc_serve: option \"signals\" must list signal names (\"watch\", \"interval\", \"commit\"), not a value of type integer"},
      {"SELECT cdc_serve('c', 'on_batch', '{\"signals\": [null]}')",
       "cdc_serve: option \"signals\" must list signal names (\"watch\", \"interval\", \"commit\"), not null"},
      // not from views or triggers of the schema (SQLITE_DIRECTONLY)
      {"SELECT * FROM v_wait", "unsafe use of cdc_wait()"},
      {"SELECT * FROM v_listen", "unsafe use of cdc_listen()"},
      {"SELECT * FROM v_serve", "unsafe use of cdc_serve()"},
      {"INSERT INTO nc VALUES(1)", "unsafe use of cdc_unlisten()"},
  };
}

void OnBatch(sqlite3_context* ctx, int, sqlite3_value**) { sqlite3_result_int(ctx, 1); }
int Handled(void*, const cdc_change*, int) { return 0; }

TEST(ListenErrors, EachBadInputFailsWithItsMessageAndChangesNothing) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  ASSERT_EQ(sqlite3_create_function(db.get(), "on_batch", 1, SQLITE_UTF8, nullptr, OnBatch, nullptr, nullptr), SQLITE_OK);
  db.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x); CREATE TABLE nc(x); SELECT cdc_setup('t'), cdc_consumer_add('c');"
          "INSERT INTO t VALUES(1); CREATE VIEW v_wait AS SELECT cdc_wait('c', 0) AS r;"
          "CREATE VIEW v_listen AS SELECT cdc_listen('c', 'on_batch') AS r;"
          "CREATE VIEW v_serve AS SELECT cdc_serve('c', 'on_batch') AS r;"
          "CREATE TRIGGER nc_unlisten AFTER INSERT ON nc BEGIN SELECT cdc_unlisten('c'); END");
  // The stable part of cdc_status (lag_ms moves with the clock).
  const std::string kState =
      "SELECT json_extract(s, '$.listeners') || json_extract(s, '$.consumers[0].position') || ',' || "
      "json_extract(s, '$.consumers[0].pending') || ',' || json_extract(s, '$.log_rows') FROM (SELECT cdc_status() AS s)";
  const std::string status = db.One(kState);
  for (const auto& c : Cases()) {
    db.Exec("BEGIN; INSERT INTO t VALUES(2)");
    EXPECT_EQ(db.Error(c.first), c.second) << c.first;
    // The caller's transaction is still open and usable; nothing started.
    EXPECT_FALSE(sqlite3_get_autocommit(db.get())) << c.first;
    EXPECT_EQ(db.One("SELECT count(*) FROM t"), "2") << c.first;
    db.Exec("ROLLBACK");
    EXPECT_EQ(db.One(kState), status) << c.first;  // no listener, same position and log
  }
  // After all that, the real thing works.
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 9223372036854775807)"), "1");  // pending: returns at once
  char* err = nullptr;
  ASSERT_EQ(cdc_listen(db.get(), "c", Handled, nullptr, nullptr, "{\"signals\": [\"interval\"], \"interval_ms\": 1}", &err),
            SQLITE_OK);
  ASSERT_NE(cdc_listen(db.get(), "c", Handled, nullptr, nullptr, nullptr, &err), SQLITE_OK);
  EXPECT_STREQ(err, "cdc_listen: consumer 'c' already has a listener in this process (stop it with SELECT cdc_unlisten('c'))");
  sqlite3_free(err);
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

}  // namespace
