// fuzz_args.cc — libFuzzer target: argument and option handling of every
// SQL function and of the cdc_changes virtual table.
//
// Each input drives a fresh database file (a captured table, a view, a
// virtual table, two consumers) through a sequence of calls chosen by the
// fuzz data: cdc_setup / teardown / bootstrap / consumer_add / drop / poll /
// ack / status / wait / listen / unlisten and cdc_changes queries with
// id/tbl constraints, each argument NULL, an integer (extremes included), a
// real (NaN, ±Inf, fractions), a blob, or text (known and unknown names,
// internal and sqlite_ tables, the view, empty strings, raw bytes) — and for
// cdc_listen, options JSON built from the grammar of its keys with wrong
// types, duplicates, out-of-range numbers and raw bytes. Writes interleave.
//
// Every call must either return a row or fail with SQLITE_ERROR and a
// message that names a cdc_ function (SQLite's own refusals of DIRECTONLY
// use are fine too); nothing may crash, leak (LeakSanitizer), return
// SQLITE_MISUSE/CORRUPT/INTERNAL, or leave the connection unusable; a
// listener that was started is stopped by cdc_unlisten or by closing.
// Functions that the loaded build lacks (cdc_wait, cdc_listen before the
// listener landed) are skipped.
#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

extern "C" int sqlite3_cdc_init(sqlite3* db, char** err, const sqlite3_api_routines* api);

namespace {

std::string g_dir;

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "fuzz_args: %s\n", what.c_str());
  abort();
}

struct Fn {
  const char* name;
  int nargs;
};

const Fn kFns[] = {{"cdc_setup", 1},     {"cdc_teardown", 1},      {"cdc_teardown", 0},  {"cdc_bootstrap", 1},
                   {"cdc_bootstrap", 2}, {"cdc_consumer_add", 1},  {"cdc_consumer_add", 2}, {"cdc_consumer_drop", 1},
                   {"cdc_poll", 1},      {"cdc_poll", 2},          {"cdc_ack", 2},       {"cdc_status", 0},
                   {"cdc_wait", 2},      {"cdc_listen", 2},        {"cdc_listen", 3},    {"cdc_unlisten", 1},
                   {"cdc_version", 0},   {"cdc_config", 1},        {"cdc_config", 2}};

const char* kTexts[] = {"c", "d", "t", "T", "nope", "", "earliest", "latest", "max_log_rows", "max_lag_ms",
                        "__cdc_log", "__cdc_consumers",
                        "sqlite_schema", "sqlite_sequence", "v", "vt", "main.t", "t ", "'t'", "\"t\"", "on_batch",
                        "no_such_fn", "c\x00x", "\xff\xfe", "{}", "[]"};

std::string OptionsJson(FuzzedDataProvider& f) {
  if (f.ConsumeIntegralInRange(0, 5) == 0) return f.ConsumeRandomLengthString(40);
  static const char* keys[] = {"signals", "interval_ms", "batch", "retry_max_ms", "bogus", "", "Batch", "signals\\u0000"};
  static const char* vals[] = {"0", "-1", "1", "2", "250", "1000000", "1000001", "3600000", "3600001",
                               "9223372036854775807", "9223372036854775808", "1e3", "1.5", "-0", "null", "true",
                               "\"5\"", "[]", "{}", "[\"watch\"]", "[\"interval\"]", "[\"commit\"]",
                               "[\"watch\",\"interval\",\"commit\"]", "[\"watch\",\"watch\"]", "[\"inotify\"]",
                               "[1]", "[null]", "[\"interval\",\"commit\"]", "9e999", "\"\\ud800\""};
  std::string s = "{";
  int n = f.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < n; i++) {
    if (i) s += f.ConsumeIntegralInRange(0, 20) == 0 ? "" : ",";
    s += std::string("\"") + keys[f.ConsumeIntegralInRange<size_t>(0, 7)] + "\":";
    s += vals[f.ConsumeIntegralInRange<size_t>(0, sizeof vals / sizeof *vals - 1)];
  }
  s += f.ConsumeIntegralInRange(0, 20) == 0 ? "" : "}";
  if (f.ConsumeIntegralInRange(0, 10) == 0) s = " " + s + " ";
  if (f.ConsumeIntegralInRange(0, 15) == 0) s += "x";
  return s;
}

void BindArg(FuzzedDataProvider& f, sqlite3_stmt* st, int i, const char* fn) {
  switch (f.ConsumeIntegralInRange(0, 8)) {
    case 0: sqlite3_bind_null(st, i); break;
    case 1: {
      const int64_t ints[] = {0, 1, -1, 2, 3, 5, 100, INT64_MAX, INT64_MIN, 1000000, 1001};
      sqlite3_bind_int64(st, i, ints[f.ConsumeIntegralInRange<size_t>(0, 10)]);
      break;
    }
    case 2: sqlite3_bind_int64(st, i, f.ConsumeIntegral<int64_t>()); break;
    case 3: {
      const double reals[] = {NAN, HUGE_VAL, -HUGE_VAL, 1.5, 2.0, -0.0, 1e300, 9.3e18};
      sqlite3_bind_double(st, i, reals[f.ConsumeIntegralInRange<size_t>(0, 7)]);
      break;
    }
    case 4: {
      std::string b = f.ConsumeRandomLengthString(8);
      if (b.empty()) sqlite3_bind_zeroblob(st, i, 0);
      else sqlite3_bind_blob(st, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
      break;
    }
    case 5: {
      std::string t = f.ConsumeRandomLengthString(12);
      sqlite3_bind_text(st, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
      break;
    }
    case 6:
      if (i == 3 && strcmp(fn, "cdc_listen") == 0) {
        std::string o = OptionsJson(f);
        sqlite3_bind_text(st, i, o.data(), static_cast<int>(o.size()), SQLITE_TRANSIENT);
        break;
      }
      [[fallthrough]];
    default: {
      size_t k = f.ConsumeIntegralInRange<size_t>(0, sizeof kTexts / sizeof *kTexts - 1);
      int len = k == 20 ? 3 : -1;  // "c\0x": an embedded NUL
      sqlite3_bind_text(st, i, kTexts[k], len, SQLITE_STATIC);
    }
  }
}

void OnBatch(sqlite3_context* ctx, int, sqlite3_value**) { sqlite3_result_int(ctx, 1); }

int Step(sqlite3* db, const std::string& sql, std::string* err) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (err) *err = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  return rc;
}

void Must(sqlite3* db, const std::string& sql) {
  std::string err;
  if (Step(db, sql, &err) != SQLITE_OK) Fail("setup statement failed: " + sql + ": " + err);
}

void RunOne(FuzzedDataProvider& f) {
  const std::string path = g_dir + "/f.db";
  unlink(path.c_str());
  unlink((path + "-wal").c_str());
  unlink((path + "-shm").c_str());
  unlink((path + "-journal").c_str());
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Fail("open");
  sqlite3_busy_timeout(db, 2000);
  sqlite3_create_function(db, "on_batch", 1, SQLITE_UTF8, nullptr, OnBatch, nullptr, nullptr);
  if (f.ConsumeBool()) Must(db, "PRAGMA journal_mode=WAL");
  Must(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v, u UNIQUE); CREATE VIEW v AS SELECT * FROM t;"
           "CREATE VIRTUAL TABLE vt USING fts5(x); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
           "INSERT INTO t(v, u) VALUES(1, 1), (2.5, 2), ('x', 3)");
  std::set<std::string> have;
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT DISTINCT name FROM pragma_function_list WHERE name LIKE 'cdc%'", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) have.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
  }
  int ncalls = f.ConsumeIntegralInRange(1, 12);
  for (int k = 0; k < ncalls && f.remaining_bytes() > 0; k++) {
    int what = f.ConsumeIntegralInRange(0, 9);
    if (what == 0) {  // a write, so there is something to poll
      Must(db, "INSERT OR REPLACE INTO t(v, u) VALUES(randomblob(4), abs(random()) % 5)");
      continue;
    }
    if (what == 1) {  // the virtual table with random constraints
      static const char* qs[] = {"SELECT * FROM cdc_changes WHERE id > ?1",
                                 "SELECT * FROM cdc_changes(?1)",
                                 "SELECT * FROM cdc_changes(?1) WHERE id >= ?2 AND tbl = ?3",
                                 "SELECT * FROM cdc_changes WHERE tbl = ?1 AND id > ?2 ORDER BY id DESC",
                                 "SELECT count(*) FROM cdc_changes(?1) WHERE id < ?2 OR tbl = ?3",
                                 "SELECT * FROM cdc_changes WHERE consumer = ?1"};
      sqlite3_stmt* st = nullptr;
      const char* q = qs[f.ConsumeIntegralInRange<size_t>(0, 5)];
      if (sqlite3_prepare_v2(db, q, -1, &st, nullptr) != SQLITE_OK) Fail(std::string("prepare ") + q + ": " + sqlite3_errmsg(db));
      for (int i = 1; i <= sqlite3_bind_parameter_count(st); i++) BindArg(f, st, i, "cdc_changes");
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      }
      if (rc != SQLITE_DONE && rc != SQLITE_ERROR) Fail(std::string("cdc_changes returned code ") + std::to_string(rc));
      if (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "cdc_") == nullptr) Fail(std::string("cdc_changes error without a name: ") + sqlite3_errmsg(db));
      sqlite3_finalize(st);
      continue;
    }
    const Fn& fn = kFns[f.ConsumeIntegralInRange<size_t>(0, sizeof kFns / sizeof *kFns - 1)];
    if (!have.count(fn.name)) continue;
    std::string sql = std::string("SELECT ") + fn.name + "(";
    for (int i = 0; i < fn.nargs; i++) sql += (i ? ",?" : "?") + std::to_string(i + 1);
    sql += ")";
    if (f.ConsumeIntegralInRange(0, 15) == 0) {
      // Use from a view / trigger: SQLITE_DIRECTONLY functions must refuse.
      std::string args;
      for (int i = 0; i < fn.nargs; i++) args += i ? ",'c'" : "'c'";
      Step(db, std::string("CREATE TEMP VIEW IF NOT EXISTS dv AS SELECT ") + fn.name + "(" + args + ") AS r", nullptr);
      Step(db, "SELECT * FROM dv", nullptr);
      Step(db, "DROP VIEW IF EXISTS dv", nullptr);
      continue;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) Fail("prepare " + sql + ": " + sqlite3_errmsg(db));
    for (int i = 1; i <= fn.nargs; i++) BindArg(f, st, i, fn.name);
    if (strcmp(fn.name, "cdc_wait") == 0) sqlite3_bind_int(st, 2, f.ConsumeIntegralInRange(-2, 3));  // keep the run short
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
      std::string msg = sqlite3_errmsg(db);
      if (rc != SQLITE_ERROR) Fail(sql + " returned code " + std::to_string(rc) + ": " + msg);
      if (msg.find("cdc_") == std::string::npos) Fail(sql + " failed with a message that names no function: " + msg);
    }
    sqlite3_finalize(st);
    // The connection stays usable.
    std::string err;
    if (Step(db, "SELECT count(*) FROM t", &err) != SQLITE_OK) Fail("connection unusable after " + sql + ": " + err);
    if (!sqlite3_get_autocommit(db)) Fail("a transaction was left open by " + sql);
  }
  if (have.count("cdc_unlisten") && f.ConsumeBool()) {
    Step(db, "SELECT cdc_unlisten('c')", nullptr);
    Step(db, "SELECT cdc_unlisten('d')", nullptr);
  }
  if (sqlite3_close(db) != SQLITE_OK) Fail(std::string("close failed: ") + sqlite3_errmsg(db));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/cdcfuzz.XXXXXX";
  if (!mkdtemp(tmpl)) Fail("mkdtemp");
  g_dir = tmpl;
  atexit([] {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) unlink((g_dir + "/f.db" + suffix).c_str());
    rmdir(g_dir.c_str());
  });
  sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(sqlite3_cdc_init));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider f(data, size);
  RunOne(f);
  return 0;
}
