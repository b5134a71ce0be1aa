// loops_test.cc — the out-of-memory and I/O error loops (ops.h) over every
// operation of ops.cc.
//
//   Oom/Loop.Transient/<op>   the N-th allocation fails (SQLite's and C++ new)
//   Oom/Loop.Persistent/<op>  the N-th and every later one fails
//   Io/Loop.Errors/<op>       the N-th call of xRead, xWrite, xTruncate, xSync,
//                             xLock, xShmMap or xShmLock fails with an I/O
//                             error, SQLITE_FULL or SQLITE_BUSY, once or for good
//
// In the suite each loop tries at most a small sample of N (spread over
// every fault point of the operation); CDC_FAULTS_LONG=1 (make faults) tries
// every N up to CDC_FAULTS_MAX_N fault points, else that many at random;
// CDC_FAULTS_LIGHT=1 (make tsan) the fewest (harness.h).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdio>

#include "harness.h"
#include "inject.h"
#include "ops.h"

namespace faulttest {
namespace {

const Op& Find(const std::string& name) {
  for (const auto& o : Ops()) {
    if (o.name == name) return o;
  }
  abort();
}

// One line per loop for the figures of docs/reliability.md (CDC_FAULTS_REPORT=file appends).
void Report(const Op& op, const Fault& f, const LoopStats& s) {
  char line[256];
  snprintf(line, sizeof line, "loop %s %s points=%lld attempts=%lld failed=%lld %s\n", op.name.c_str(),
           f.name.c_str(), static_cast<long long>(s.points), static_cast<long long>(s.attempts),
           static_cast<long long>(s.failed), s.problems.empty() ? "ok" : "PROBLEM");
  fputs(line, stdout);
  if (const char* file = getenv("CDC_FAULTS_REPORT")) {
    if (FILE* f2 = fopen(file, "a")) {
      fputs(line, f2);
      fclose(f2);
    }
  }
}

// Fault points tried per loop: `quick` in the suite; in a campaign
// CDC_FAULTS_MAX_N (default 1000).
int64_t Budget(int64_t quick, const Op& op) {
  if (Light()) return 2;
  if (!Long()) return std::max<int64_t>(2, quick / op.quick_share);
  const char* m = getenv("CDC_FAULTS_MAX_N");
  return m && *m ? atoll(m) : 1000;
}

class Loop : public ::testing::TestWithParam<std::string> {};

TEST_P(Loop, Transient) {
  const Op& op = Find(GetParam());
  Fault f;
  f.name = "oom-transient";
  LoopStats s = RunLoop(op, f, Budget(40, op));
  Report(op, f, s);
  EXPECT_EQ(s.problems, "");
  EXPECT_GT(s.attempts, 0);
}

TEST_P(Loop, Persistent) {
  const Op& op = Find(GetParam());
  Fault f;
  f.name = "oom-persistent";
  f.persistent = true;
  LoopStats s = RunLoop(op, f, Budget(20, op));
  Report(op, f, s);
  EXPECT_EQ(s.problems, "");
  EXPECT_GT(s.attempts, 0);
}

// The extension's C++ allocations alone: far fewer than SQLite's, so every
// one of them is tried even in the suite.
TEST_P(Loop, NewTransient) {
  const Op& op = Find(GetParam());
  Fault f;
  f.name = "new-transient";
  f.only_new = true;
  LoopStats s = RunLoop(op, f, Budget(100, op));
  Report(op, f, s);
  EXPECT_EQ(s.problems, "");
}

TEST_P(Loop, IoErrors) {
  const Op& op = Find(GetParam());
  struct K {
    const char* name;
    unsigned methods;
    int code;
  };
  const K kinds[] = {
      {"read-ioerr", faults::kRead, SQLITE_IOERR_READ},
      {"write-ioerr", faults::kWrite, SQLITE_IOERR_WRITE},
      {"write-full", faults::kWrite, SQLITE_FULL},
      {"truncate-ioerr", faults::kTruncate, SQLITE_IOERR_TRUNCATE},
      {"sync-ioerr", faults::kSync, SQLITE_IOERR_FSYNC},
      {"lock-ioerr", faults::kLock, SQLITE_IOERR_LOCK},
      {"lock-busy", faults::kLock, SQLITE_BUSY},
      {"shmmap-ioerr", faults::kShmMap, SQLITE_IOERR_SHMMAP},
      {"shmlock-ioerr", faults::kShmLock, SQLITE_IOERR_SHMLOCK},
      {"shmlock-busy", faults::kShmLock, SQLITE_BUSY},
  };
  int64_t tried = 0;
  for (const K& k : kinds) {
    for (bool persistent : {false, true}) {
      if (persistent && k.code == SQLITE_BUSY && op.own_busy_wait) continue;
      if (persistent && Light()) continue;
      Fault f;
      f.alloc = false;
      f.name = std::string(k.name) + (persistent ? "-persistent" : "-transient");
      f.persistent = persistent;
      f.io_methods = k.methods;
      f.io_code = k.code;
      LoopStats s = RunLoop(op, f, Budget(8, op));
      Report(op, f, s);
      EXPECT_EQ(s.problems, "") << f.name;
      tried += s.attempts;
    }
  }
  EXPECT_GT(tried, 0);
}

std::vector<std::string> OpNames() {
  std::vector<std::string> v;
  for (const auto& o : Ops()) v.push_back(o.name);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Ops, Loop, ::testing::ValuesIn(OpNames()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The replaced operator new is the one cdc.so calls: failing it fails the
// extension's C++ allocations too.
TEST(Allocator, ReachesTheExtension) {
  TempDir dir;
  std::string err;
  sqlite3* db = Open(dir.File("a.db"), &err);
  ASSERT_NE(db, nullptr) << err;
  ASSERT_EQ(Exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'); "
                     "SELECT cdc_consumer_add('c'); INSERT INTO t VALUES(1, 'x')"), "");
  faults::ArmAllocThisThread(INT64_MAX, false);
  std::string out = One(db, "SELECT cdc_poll('c')");
  faults::Disarm();
  EXPECT_GT(faults::NewCalls(), 0) << "no operator new call of cdc_poll was counted";
  EXPECT_NE(out.find("\"op\":\"INSERT\""), std::string::npos) << out;
  sqlite3_close(db);
}

}  // namespace
}  // namespace faulttest
