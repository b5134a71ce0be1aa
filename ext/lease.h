// lease.h — one active reader per consumer across processes (DESIGN §4).
//
//   SELECT cdc_listen(...) / cdc_serve(...)  -- deliver only while holding the consumer's lease
//   SELECT cdc_status() -> '$.listeners'      -- holders in other processes too
//   SELECT cdc_poll('c')                      -- refused while a listener holds 'c'
//
// How it works. A consumer's lease is an exclusive flock(2) on a small file
// beside the database, "<database>-cdc-<16 hex digits>.lease" (a 64-bit
// FNV-1a hash of the consumer's name), which holds "pid host consumer" of
// the holder. A listener takes it (LOCK_EX | LOCK_NB) before it reads and
// holds it until it stops; a second listener, in any process, is a standby
// that tries again every 20 ms. The kernel drops the lock when the holder's
// process dies in any way (SIGKILL included), so a standby takes over within
// about 20 ms, with no clock, no expiry and no write to the database (a
// listener never waits for the database's write lock to deliver). Readers
// of the holder (cdc_status, cdc_poll) try LOCK_SH | LOCK_NB: refused means
// held. Scope: processes that share the file's locks (one machine, or a file
// system with working flock — the same scope as SQLite's own locking); the
// descriptor is close-on-exec, but a child forked without exec keeps the
// lease while it lives.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "util.h"

namespace cdc {

// Who holds a consumer's lease: live == false when nobody does.
struct LeaseHolder {
  bool live = false;
  int64_t pid = 0;
  std::string host;
};

// The path of `consumer`'s lease file for database file `db_file`.
std::string LeasePath(const std::string& db_file, const std::string& consumer);
// The current holder of `consumer`'s lease (no file = nobody).
LeaseHolder ReadLeaseHolder(const std::string& db_file, const std::string& consumer);
// Fails when a listener holds `consumer`'s lease (cdc_poll).
Status RefuseIfLeased(sqlite3* db, const char* fn, const std::string& consumer);
// "pid N on H".
std::string DescribeHolder(const LeaseHolder& h);

// A listener's lease (its thread only, but held() from any).
class Lease {
 public:
  Lease() = default;
  ~Lease() { Release(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Opens (creating) the lease file; an error names it.
  Status Open(const std::string& db_file, const std::string& consumer);
  // Takes the lease if nobody holds it; true when held (now or before).
  bool TryTake();
  bool held() const { return held_.load(); }  // any thread
  // Drops the lease (closing the file).
  void Release();

 private:
  int fd_ = -1;
  std::atomic<bool> held_{false};
  std::string consumer_;
};

}  // namespace cdc
