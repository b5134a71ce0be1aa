// main.cc — the fault test program: installs the counting allocator and the
// fault VFS before SQLite initialises, then runs the GoogleTest suite, or,
// re-executed with --crash-child, the workload of a power-loss run
// (crash_test.cc).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "harness.h"
#include "inject.h"

namespace faulttest {
int CrashChild(int argc, char** argv);
}

int main(int argc, char** argv) {
  faults::Install();
  if (argc > 1 && strcmp(argv[1], "--crash-child") == 0) return faulttest::CrashChild(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  // Keeps cdc.so loaded for the whole run: each attempt of a loop opens and
  // closes its own connection, and would otherwise map the library again.
  std::string err;
  sqlite3* keep = faulttest::Open(":memory:", &err);
  if (!keep) {
    fprintf(stderr, "cannot load the extension: %s\n", err.c_str());
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  sqlite3_close(keep);
  return rc;
}
