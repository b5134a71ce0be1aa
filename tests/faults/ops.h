// ops.h — the operations the out-of-memory and I/O loops run, and the loop.
//
// An operation is one SQL statement run on a fresh copy of a prepared
// database. For N = 1, 2, ... the N-th fault point (allocation, or call of the
// chosen VFS methods) fails, transiently or persistently; after each attempt:
//   - a failed call returned an error with a message that names the fault
//     (SQLITE_NOMEM / "out of memory", an I/O error, "database or disk is
//     full", "database is locked"), never a wrong answer or another error;
//   - a call that succeeded despite the fault returned exactly what the call
//     returns without faults, and left exactly the same database;
//   - a failed call changed nothing (dump of every table and the schema);
//   - the connection is in autocommit, no statement is left open on it, and
//     it closes (no statement of the extension left behind);
//   - PRAGMA integrity_check is ok and the log replays exactly to the tables;
//   - the same call, repeated without faults on the same connection,
//     succeeds with the fault-free result (nothing cached went bad);
//   - the listeners running afterwards are the ones expected;
//   - after close, SQLite's allocator holds what it held before (no leak
//     through sqlite3_malloc; ASan catches the rest).
// The loop ends at the first N at which no fault was injected (the operation
// needs fewer fault points).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace faulttest {

struct Op {
  std::string name;
  std::string setup;  // run on the template database (fault-free), committed
  std::string pre;    // run on the attempt's connection before the operation
  std::string sql;    // the operation: one statement
  std::vector<std::string> replay;  // tables whose log must replay to them
  int listeners_ok = 0;    // listeners on the connection after success
  int listeners_fail = 0;  // and after failure (before the retry)
  std::string journal = "wal";  // journal mode of the template
  bool txn = false;  // run inside BEGIN ... COMMIT (a migration's transaction)
  // Opens connections of its own whose busy handler waits about 30 s for a
  // lock by design: a lock that stays busy for good is not tried.
  bool own_busy_wait = false;
  int quick_share = 1;  // the suite tries 1/quick_share of the usual sample (slow operations)
};

const std::vector<Op>& Ops();

// What kind of fault a loop injects.
struct Fault {
  std::string name;
  bool alloc = true;        // else I/O
  bool persistent = false;
  bool only_new = false;    // count and fail C++ operator new only
  unsigned io_methods = 0;  // faults::IoMethod bits
  int io_code = 0;
};

struct LoopStats {
  int64_t points = 0;    // fault points in the operation (fault-free run)
  int64_t attempts = 0;  // attempts with a fault injected
  int64_t failed = 0;    // of them, the operation returned an error
  std::string problems;  // "" when every check passed
};

// Runs the loop for one operation and one kind of fault. `max_attempts`
// bounds the N tried: every N when the operation has that few fault points,
// else a sample (spread evenly in the suite, random in a campaign).
LoopStats RunLoop(const Op& op, const Fault& fault, int64_t max_attempts);

}  // namespace faulttest
