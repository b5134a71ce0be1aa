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
