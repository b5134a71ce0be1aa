// compat_test.cc — behaviour that differs between SQLite versions. The suite
// runs on Debian's SQLite and, with `make test-sqlite-latest`, on a recent
// amalgamation; these tests pin what must hold on both.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

TEST(Compat, LinkedSqliteIsTheOneUnderTest) {
  const char* want = getenv("CDC_SQLITE_EXPECT_VERSION");  // set by ctest in the amalgamation build
  if (!want || !*want) GTEST_SKIP() << "running on SQLite " << sqlite3_libversion();
  EXPECT_STREQ(sqlite3_libversion(), want);
  EXPECT_EQ(sqlite3_libversion_number(), SQLITE_VERSION_NUMBER);
}

namespace {

// cdc_poll output with every "ts":<digits> replaced by "ts":TS.
std::string PollNoTs(Db& db, const std::string& consumer) {
  std::string s = db.One("SELECT cdc_poll('" + consumer + "')");
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 5, "\"ts\":") == 0) {
      out += "\"ts\":TS";
      i += 5;
      while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) i++;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

// SQLite's own JSON printing changed between versions (3.40 prints 15
// digits and `Inf`; later ones print 17 digits and 9.0e+999): events must not
// depend on it, so the bytes are the same on every SQLite.
TEST(Compat, EventJsonIsTheSameOnEverySqlite) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, r REAL, b BLOB, s TEXT);"
          "SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
          "INSERT INTO t VALUES(9223372036854775807, 0.1+0.2, x'00ff', 'é\"\\');"
          "INSERT INTO t VALUES(-9223372036854775808, 9e999, 'x', NULL);"
          "INSERT INTO t VALUES(1, -9e999, 1.0, 2);"
          "UPDATE t SET r = 1e-320, s = char(1, 10) WHERE id = 1;");
  EXPECT_EQ(PollNoTs(db, "c"),
            "[{\"id\":1,\"ts\":TS,\"table\":\"t\",\"op\":\"INSERT\",\"before\":null,\"after\":"
            "{\"id\":9223372036854775807,\"r\":0.30000000000000004,\"b\":{\"$blob\":\"00FF\"},\"s\":\"é\\\"\\\\\"}},"
            "{\"id\":2,\"ts\":TS,\"table\":\"t\",\"op\":\"INSERT\",\"before\":null,\"after\":"
            "{\"id\":-9223372036854775808,\"r\":9e999,\"b\":\"x\",\"s\":null}},"
            "{\"id\":3,\"ts\":TS,\"table\":\"t\",\"op\":\"INSERT\",\"before\":null,\"after\":"
            "{\"id\":1,\"r\":-9e999,\"b\":1.0,\"s\":\"2\"}},"
            "{\"id\":5,\"ts\":TS,\"table\":\"t\",\"op\":\"UPDATE\",\"before\":"
            "{\"id\":1,\"r\":-9e999,\"b\":1.0,\"s\":\"2\"},\"after\":"
            "{\"id\":1,\"r\":1e-320,\"b\":1.0,\"s\":\"\\u0001\\n\"}}]");
  // SQLite's own parser (either version) accepts it as JSON.
  EXPECT_EQ(db.One("SELECT json_valid(cdc_poll('c'))"), "1");
}

// Timestamps are integer Unix milliseconds without `subsec` (3.42+ only).
TEST(Compat, TimestampsAreUnixMilliseconds) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(x); SELECT cdc_setup('t');");
  std::string before = db.One("SELECT CAST(unixepoch('now') AS INTEGER) * 1000");
  db.Exec("INSERT INTO t VALUES(1)");
  std::string after = db.One("SELECT (CAST(unixepoch('now') AS INTEGER) + 1) * 1000");
  auto ts = db.One("SELECT ts FROM cdc_changes");
  EXPECT_EQ(db.One("SELECT typeof(ts) FROM cdc_changes"), "integer");
  EXPECT_LE(std::stoll(before), std::stoll(ts));
  EXPECT_LE(std::stoll(ts), std::stoll(after));
}

// Wider than json_object's argument limit (63 pairs on 3.40's default
// MAX_FUNCTION_ARG=127; 1000 from 3.48): every column, NULLs included.
TEST(Compat, WideTableImagesHoldEveryColumn) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  std::string cols, vals, want;
  for (int i = 0; i < 300; i++) {
    cols += (i ? ",c" : "c") + std::to_string(i);
    vals += i ? (i % 7 == 0 ? ",NULL" : "," + std::to_string(i)) : "0";
    want += (i ? ",\"c" : "{\"c") + std::to_string(i) + "\":" + (i && i % 7 == 0 ? "null" : std::to_string(i));
  }
  want += "}";
  db.Exec("CREATE TABLE w(" + cols + "); SELECT cdc_setup('w'); INSERT INTO w VALUES(" + vals + ")");
  EXPECT_EQ(db.One("SELECT after FROM cdc_changes"), want);
}
