// inject.h — fault injection for the fault tests (tests/faults/): a
// counting allocator under SQLite and C++ `new`, and a shim VFS that fails
// chosen I/O calls, fixes the clock, or simulates a power loss.
//
//   faults::Install();                  // in main(), before sqlite3_initialize()
//   faults::ArmAlloc(n, persistent);    // the n-th allocation from now fails
//   ... run one operation ...
//   faults::Disarm();                   // faults::AllocHits(): how many failed
//
// Allocations: SQLITE_CONFIG_MALLOC installs a malloc wrapper, and this
// program replaces the global operator new/delete (cdc.so links libstdc++
// dynamically, so its `new` resolves to the replacement too). Both share one
// counter. Transient: only the n-th fails; persistent: the n-th and every one
// after, until Disarm(). With ArmAllocThisThread the count is limited to the
// calling thread (a listener thread started meanwhile runs unharmed, so the
// count stays deterministic); ArmAllocRandom fails each allocation of any
// thread with probability 1/every (deterministic per allocation number).
// Allocations inside a HostScope are never counted or failed (the test's own
// bookkeeping in the middle of an armed operation).
//
// I/O: the VFS "faultvfs" wraps the default unix VFS and is registered as the
// default (so the extension's own connections use it as well: they open with
// the VFS of the registering connection). ArmIo(methods, n, code, persistent)
// makes the n-th call of any of `methods` (kRead | kWrite | ...) return `code`
// without doing it. Its clock is fixed (xCurrentTimeInt64), so event
// timestamps are the same in every attempt.
//
// Power loss: SetCrash(seed, at_sync) keeps, per file, an undo record of every
// write and truncate since that file's last xSync (the writes themselves go
// through, so reads see them). The `at_sync`-th xSync (counted over all
// files; 0 = never) does not happen: instead every pending record is decided
// at random (seeded): written, dropped (old bytes restored) or torn (each
// 512-byte piece independently old or new), and the process _exit()s with
// kCrashExit. Crash() does the same at any moment. File deletion is taken as
// durable at once.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace faults {

// Registers the allocator and the VFS. Call once, before anything else
// touches SQLite.
void Install();

// --- allocations -------------------------------------------------------------
void ArmAlloc(int64_t n, bool persistent);
void ArmAllocThisThread(int64_t n, bool persistent, bool only_new = false);  // only_new: C++ new only
void ArmAllocRandom(uint64_t seed, uint32_t every);
void Disarm();             // allocations and I/O
int64_t AllocCount();      // allocations counted since the last Arm*
int64_t AllocHits();       // of them, failed
int64_t NewCalls();        // operator new calls counted since the last Arm* (any outcome)

// Not counted, never failed, on this thread while alive.
class HostScope {
 public:
  HostScope();
  ~HostScope();
  HostScope(const HostScope&) = delete;
  HostScope& operator=(const HostScope&) = delete;
};

// --- I/O ------------------------------------------------------------------------
enum IoMethod : unsigned {
  kRead = 1,
  kWrite = 2,
  kTruncate = 4,
  kSync = 8,
  kLock = 16,
  kShmMap = 32,
  kShmLock = 64,
};
void ArmIo(unsigned methods, int64_t n, int code, bool persistent);
int64_t IoCount();
int64_t IoHits();

// The fixed time of the VFS clock, in ms since the Unix epoch.
constexpr int64_t kFixedNowMs = 1764000000000;
// How long a crashed child's _exit status is.
constexpr int kCrashExit = 86;

// --- power loss ---------------------------------------------------------------
void SetCrash(uint64_t seed, int64_t at_sync);
int64_t SyncCount();
[[noreturn]] void Crash();

}  // namespace faults
