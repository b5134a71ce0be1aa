// regressions_test.cc — focused tests of the defects the fault loops found,
// each hitting its fault point on purpose instead of by count (the loops of
// the suite try a sample of the fault points; these always hit):
//   - a writing function that ran out of memory after it had opened its
//     transaction (or savepoint) left the transaction open, holding the
//     write lock, with its partial work (ext/util.cc, Savepoint);
//   - cdc_status reported a table as drifted ("cdc_status: out of memory")
//     when inspecting it failed for lack of memory (ext/delivery.cc);
//   - cdc_status and cdc_changes answered "nothing captured" / no rows when
//     reading the schema failed with an I/O error (ext/schema.cc callers);
//   - after a read error inside cdc_consumer_add (or cdc_setup) the internal
//     tables were created and committed on their own (EnsureInternalTables).
// The C++ allocation defects (cdc_listen's thread left running with its
// connections closed, connections and values leaked when `new` failed) are
// covered by the NewTransient loops, which try every C++ allocation of
// cdc_listen, cdc_wait and cdc_poll; the listener threads by
// listener_faults_test.cc.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>

#include "harness.h"
#include "inject.h"
#include "ops.h"

namespace faulttest {
namespace {

const char* kSetup =
    "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
    "INSERT INTO t VALUES(1, 'a'), (2, 'b'), (3, 'c');\n"
    "CREATE TABLE u(id INTEGER PRIMARY KEY, code TEXT UNIQUE);\n"
    "SELECT cdc_consumer_add('audit'); SELECT cdc_setup('t'); SELECT cdc_bootstrap('t');\n"
    "SELECT cdc_consumer_add('c1'); UPDATE t SET v = 'B' WHERE id = 2;";

// Arms a persistent allocation failure on this thread as soon as a
// statement whose text starts with `prefix` has run (trace callback).
struct ArmAfter {
  const char* prefix;
  bool persistent = true;
  bool armed = false;
};

int ArmOnProfile(unsigned type, void* ctx, void* p, void*) {
  auto* a = static_cast<ArmAfter*>(ctx);
  if (type != SQLITE_TRACE_PROFILE || a->armed) return 0;
  const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(p));
  if (sql && strncmp(sql, a->prefix, strlen(a->prefix)) == 0) {
    a->armed = true;
    faults::ArmAllocThisThread(1, a->persistent);
  }
  return 0;
}

int ArmOnStmt(unsigned type, void* ctx, void* p, void*) {
  auto* a = static_cast<ArmAfter*>(ctx);
  if (type != SQLITE_TRACE_STMT || a->armed) return 0;
  const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(p));
  if (sql && strstr(sql, a->prefix)) {
    a->armed = true;
    faults::ArmAllocThisThread(1, a->persistent);
  }
  return 0;
}

class Regression : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    db_ = Open(dir_.File("r.db"), &err);
    ASSERT_NE(db_, nullptr) << err;
    ASSERT_EQ(Exec(db_, std::string("PRAGMA journal_mode=WAL;") + kSetup), "");
  }
  void TearDown() override {
    faults::Disarm();
    sqlite3_trace_v2(db_, 0, nullptr, nullptr);
    EXPECT_EQ(sqlite3_close(db_), SQLITE_OK);
  }
  // Runs sql with the failure armed after `after`; returns the error.
  std::string RunArmed(const std::string& sql, const char* after, bool on_start = false, bool persistent = true) {
    ArmAfter a{after, persistent};
    sqlite3_trace_v2(db_, on_start ? SQLITE_TRACE_STMT : SQLITE_TRACE_PROFILE, on_start ? ArmOnStmt : ArmOnProfile,
                     &a);
    char* e = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &e);
    faults::Disarm();
    sqlite3_trace_v2(db_, 0, nullptr, nullptr);
    EXPECT_TRUE(a.armed) << "never ran " << after << " in " << sql;
    sqlite3_free(e);  // NULL: copying the message failed too
    EXPECT_NE(rc, SQLITE_OK) << sql;
    return std::to_string(rc) + " " + sqlite3_errmsg(db_);
  }

  TempDir dir_;
  sqlite3* db_ = nullptr;
};

const char* const kWriting[] = {
    "SELECT cdc_consumer_add('c2')", "SELECT cdc_consumer_drop('c1')", "SELECT cdc_ack('c1', 5)",
    "SELECT cdc_setup('u')",         "SELECT cdc_teardown('t')",       "SELECT cdc_teardown()",
    "SELECT cdc_bootstrap('t')",     "SELECT cdc_bootstrap('t', 2)",
};

TEST_F(Regression, OutOfMemoryAfterBeginLeavesNoTransaction) {
  for (const char* sql : kWriting) {
    std::string before = Dump(db_);
    std::string err = RunArmed(sql, "BEGIN IMMEDIATE");
    EXPECT_NE(err.find("out of memory"), std::string::npos) << sql << ": " << err;
    EXPECT_TRUE(sqlite3_get_autocommit(db_)) << sql << " left its transaction open";
    if (!sqlite3_get_autocommit(db_)) Exec(db_, "ROLLBACK");
    EXPECT_EQ(Dump(db_), before) << sql;
  }
}

TEST_F(Regression, OutOfMemoryAfterSavepointUndoesThePartialWork) {
  for (const char* sql : kWriting) {
    std::string before = Dump(db_);
    // Inside the caller's transaction: the function's savepoint is its own.
    ASSERT_EQ(Exec(db_, "BEGIN"), "");
    std::string err = RunArmed(sql, "SAVEPOINT");
    EXPECT_NE(err.find("out of memory"), std::string::npos) << sql << ": " << err;
    if (!sqlite3_get_autocommit(db_)) {
      EXPECT_EQ(Exec(db_, "COMMIT"), "") << sql;
    }
    EXPECT_EQ(Dump(db_), before) << sql << " kept part of its work";
  }
}

TEST_F(Regression, StatusOutOfMemoryIsNotDrift) {
  // One allocation of the table inspection of cdc_status fails.
  std::string err = RunArmed("SELECT cdc_status()", "FROM pragma_table_list", true, false);
  EXPECT_NE(err.find("out of memory"), std::string::npos) << err;
  EXPECT_EQ(One(db_, "SELECT cdc_status() ->> '$.tables[0].drift'"), "0");
}

TEST_F(Regression, SchemaReadErrorsAreNotNothingCaptured) {
  // Another connection, so that the schema is read through the VFS.
  std::string err;
  sqlite3* other = Open(dir_.File("r.db"), &err);
  ASSERT_NE(other, nullptr) << err;
  for (const char* sql : {"SELECT cdc_status()", "SELECT count(*) FROM cdc_changes",
                          "SELECT count(*) FROM cdc_changes('c1')"}) {
    faults::ArmIo(faults::kShmLock | faults::kRead, 1, SQLITE_IOERR_READ, true);
    std::string out = One(other, sql, &err);
    faults::Disarm();
    EXPECT_NE(err, "") << sql << " answered " << out << " while every read failed";
    err.clear();
  }
  EXPECT_EQ(One(other, "SELECT count(*) FROM cdc_changes('c1')"), "5");
  sqlite3_close(other);
}

// A read error inside a writing function: SQLite rolls back the function's
// transaction at once, and what the function did next (after "do the
// internal tables exist?" had failed) committed on its own. Every read of
// cdc_consumer_add and cdc_setup fails in turn (the loop of ops.h).
TEST(Regressions, ReadErrorInWritingFunctionCommitsNothing) {
  for (const char* name : {"consumer_add_latest", "consumer_add_earliest", "setup_refresh"}) {
    const Op* op = nullptr;
    for (const auto& o : Ops()) {
      if (o.name == name) op = &o;
    }
    ASSERT_NE(op, nullptr);
    Fault f;
    f.name = "read-ioerr-transient";
    f.alloc = false;
    f.io_methods = faults::kRead;
    f.io_code = SQLITE_IOERR_READ;
    LoopStats s = RunLoop(*op, f, 1000);
    EXPECT_EQ(s.problems, "") << name;
    EXPECT_GT(s.failed, 0) << name;
  }
}

}  // namespace
}  // namespace faulttest
