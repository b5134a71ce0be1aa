// capture_test.cc — cdc_setup / cdc_teardown and what the triggers write.
#include <gtest/gtest.h>

#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

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
  EXPECT_EQ(db.Rows("SELECT op, v0, v1, v2, v3 FROM __cdc_log ORDER BY id"),
            (std::vector<std::string>{"1|1|x|NULL|NULL", "2|1|x|1|y", "3|1|y|NULL|NULL"}));
}
