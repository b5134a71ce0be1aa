// listener_test.cc — cdc_listen / cdc_unlisten / cdc_wait against the real
// SQLite: C callbacks (include/cdc.h), SQL-function callbacks, retries,
// lifetime (unlisten inside the callback, close during a batch), and real
// writer / listener processes. Waits are bounded loops on conditions, never
// timing assertions.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cdc.h"
#include "testing.h"

extern char** environ;

using cdctest::Db;
using cdctest::TempDir;

namespace {

using cdctest::Eventually;

// Records what a C callback receives.
struct Recorder {
  std::mutex mu;
  std::vector<std::vector<int64_t>> calls;  // every call, failed ones too
  std::vector<int64_t> ids;                 // handled changes, in order
  std::vector<std::string> rows;            // "table op before after" of handled changes
  int fail_first = 0;                       // fail this many calls first
  std::function<void()> inside;             // runs inside each call
  std::atomic<int> destroyed{0};

  size_t Count() {
    std::lock_guard<std::mutex> g(mu);
    return ids.size();
  }
  std::vector<int64_t> Ids() {
    std::lock_guard<std::mutex> g(mu);
    return ids;
  }
};

int Record(void* user, const cdc_change* c, int n) {
  auto* r = static_cast<Recorder*>(user);
  if (r->inside) r->inside();
  std::lock_guard<std::mutex> g(r->mu);
  std::vector<int64_t> batch;
  for (int i = 0; i < n; i++) batch.push_back(c[i].id);
  r->calls.push_back(batch);
  if (static_cast<int>(r->calls.size()) <= r->fail_first) return 1;
  for (int i = 0; i < n; i++) {
    r->ids.push_back(c[i].id);
    r->rows.push_back(std::string(c[i].table) + " " + c[i].op + " " + (c[i].before ? c[i].before : "-") +
                      " " + (c[i].after ? c[i].after : "-"));
  }
  return 0;
}

void Destroyed(void* user) { static_cast<Recorder*>(user)->destroyed++; }

std::string Listen(Db& db, const char* name, Recorder* r, const char* options = nullptr) {
  char* err = nullptr;
  int rc = cdc_listen(db.get(), name, Record, r, Destroyed, options, &err);
  std::string msg = rc == SQLITE_OK ? "" : (err ? err : "?");
  sqlite3_free(err);
  return msg;
}

// A database with table t(id, v) captured and consumer c, in WAL mode.
void Prepare(Db& db, const std::string& consumer = "c", bool wal = true) {
  if (wal) db.Exec("PRAGMA journal_mode=WAL");
  db.Exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)");
  db.Exec("SELECT cdc_setup('t')");
  db.Exec("SELECT cdc_consumer_add('" + consumer + "')");
}

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i <= to; i++) v.push_back(i);
  return v;
}

std::string Position(Db& db, const std::string& consumer) {
  return db.One("SELECT pos FROM __cdc_consumers WHERE name = '" + consumer + "'");
}

// --- C callbacks --------------------------------------------------------------

TEST(Listener, DrainsTheBacklogThenDeliversNewCommitsInOrder) {
  TempDir tmp;
  Recorder r;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  for (int i = 1; i <= 10; i++) db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  ASSERT_EQ(Listen(db, "c", &r, "{\"batch\": 3}"), "");
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 10; }));
  // Writes from a connection that never loaded the extension.
  Db other(path, false);
  other.Exec("INSERT INTO t(v) VALUES('x'); UPDATE t SET v = 'y' WHERE id = 1; DELETE FROM t WHERE id = 2");
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 13; }));
  // The UPDATE's before image is a continuation row (id 12) before its event.
  std::vector<int64_t> ids = Range(1, 11);
  ids.push_back(13);
  ids.push_back(14);
  EXPECT_EQ(r.Ids(), ids);
  {
    std::lock_guard<std::mutex> g(r.mu);
    for (const auto& c : r.calls) EXPECT_LE(c.size(), 3u);
    EXPECT_EQ(r.rows[0], "t INSERT - {\"id\":1,\"v\":1}");
    EXPECT_EQ(r.rows[11], "t UPDATE {\"id\":1,\"v\":1} {\"id\":1,\"v\":\"y\"}");
    EXPECT_EQ(r.rows[12], "t DELETE {\"id\":2,\"v\":2} -");
  }
  ASSERT_TRUE(Eventually([&] { return Position(db, "c") == "14"; }));
  std::string st = db.One("SELECT cdc_status()");
  EXPECT_NE(st.find("\"listeners\":[{\"consumer\":\"c\",\"callback\":\"c\","
                    "\"signals\":[\"watch\",\"interval\",\"commit\"],\"interval_ms\":250,\"batch\":3"),
            std::string::npos)
      << st;
  EXPECT_NE(st.find("\"changes\":13,\"retries\":0,\"last_error\":null"), std::string::npos) << st;
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
  EXPECT_EQ(r.destroyed.load(), 1);
  EXPECT_NE(db.One("SELECT cdc_status()").find("\"listeners\":[]"), std::string::npos);
  // Stopped: later changes wait for the next listener.
  db.Exec("INSERT INTO t(v) VALUES('after')");
  EXPECT_EQ(r.Count(), 13u);
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 0)"), "1");
}

// Acks are made by the acker thread: a write lock held elsewhere delays the
// acks, not the delivery.
TEST(Listener, DeliversWhileAnotherConnectionHoldsTheWriteLock) {
  TempDir tmp;
  Recorder r;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  for (int i = 1; i <= 10; i++) db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  Db holder(path, false);
  holder.Exec("BEGIN IMMEDIATE");
  ASSERT_EQ(Listen(db, "c", &r, "{\"batch\": 3}"), "");
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 10; }));
  EXPECT_EQ(r.Ids(), Range(1, 10));
  EXPECT_EQ(Position(db, "c"), "0");  // nothing could be acked yet
  holder.Exec("COMMIT");
  ASSERT_TRUE(Eventually([&] { return Position(db, "c") == "10"; }));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

// cdc_status shows the consumer's position from the start, before any ack.
TEST(Listener, StatusShowsThePositionBeforeTheFirstAck) {
  TempDir tmp;
  Recorder r;
  Db db(tmp.File("t.db"));
  Prepare(db);
  db.Exec("INSERT INTO t(v) VALUES(1), (2), (3); SELECT cdc_ack('c', 3)");
  ASSERT_EQ(Listen(db, "c", &r), "");
  ASSERT_TRUE(Eventually([&] {
    return db.One("SELECT json_extract(cdc_status(), '$.listeners[0].position')") == "3";
  })) << db.One("SELECT cdc_status()");
  EXPECT_EQ(r.Count(), 0u);
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

// A listener whose consumer is dropped (and added again, in one transaction
// or two) stops with a clear last_error instead of delivering the new
// consumer's changes, whose ids may start again at 1 (cdc_teardown()); a new
// listener then starts from the consumer as it is.
TEST(Listener, StopsWhenItsConsumerIsDroppedOrRecreated) {
  for (const char* recreate : {"SELECT cdc_consumer_drop('c'); SELECT cdc_consumer_add('c', 'earliest')",
                               "BEGIN; SELECT cdc_consumer_drop('c'); SELECT cdc_consumer_add('c'); COMMIT",
                               "SELECT cdc_teardown(); SELECT cdc_setup('t'), cdc_consumer_add('c')"}) {
    TempDir tmp;
    Recorder r;
    std::string path = tmp.File("t.db");
    Db db(path);
    Prepare(db);
    db.Exec("INSERT INTO t(v) VALUES(1), (2), (3)");
    ASSERT_EQ(Listen(db, "c", &r), "");
    ASSERT_TRUE(Eventually([&] { return Position(db, "c") == "3"; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a created_ms of its own
    db.Exec(recreate);
    db.Exec("INSERT INTO t(v) VALUES(4)");
    ASSERT_TRUE(Eventually([&] { return db.One("SELECT cdc_status() ->> '$.listeners[0].state'") == "stopped"; }))
        << recreate;
    EXPECT_EQ(db.One("SELECT cdc_status() ->> '$.listeners[0].last_error'"),
              "consumer 'c' was dropped (cdc_consumer_drop or cdc_teardown()); the listener stopped: start one "
              "again for the consumer as it is now");
    EXPECT_EQ(r.Ids(), Range(1, 3)) << recreate;
    EXPECT_EQ(r.destroyed.load(), 1);
    // A new listener replaces the stopped one and reads the consumer as it is.
    Recorder r2;
    ASSERT_EQ(Listen(db, "c", &r2), "");
    const std::string last = db.One("SELECT max(id) FROM __cdc_log");
    ASSERT_TRUE(Eventually([&] { return Position(db, "c") == last; })) << recreate;
    EXPECT_EQ(r2.Ids().back(), std::stoll(last));
    EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
  }
}

TEST(Listener, RetriesTheSameBatchUntilHandledWithoutSkippingOrReordering) {
  TempDir tmp;
  Recorder r;
  Db db(tmp.File("t.db"));
  Prepare(db);
  for (int i = 1; i <= 5; i++) db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  r.fail_first = 3;
  ASSERT_EQ(Listen(db, "c", &r, "{\"batch\": 2, \"retry_max_ms\": 20}"), "");
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 5; }));
  EXPECT_EQ(r.Ids(), Range(1, 5));
  {
    std::lock_guard<std::mutex> g(r.mu);
    std::vector<std::vector<int64_t>> want = {{1, 2}, {1, 2}, {1, 2}, {1, 2}, {3, 4}, {5}};
    EXPECT_EQ(r.calls, want);
  }
  std::string st = db.One("SELECT cdc_status()");
  // The retries are counted; last_error is cleared once the batch went through.
  EXPECT_NE(st.find("\"retries\":3,\"last_error\":null"), std::string::npos) << st;
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

TEST(Listener, UnlistenInsideTheCallbackDoesNotDeadlock) {
  TempDir tmp;
  Recorder r, r2;
  Db db(tmp.File("t.db"));
  Prepare(db);
  db.Exec("INSERT INTO t(v) VALUES(1)");
  std::atomic<int> rc{-1};
  r.inside = [&] {
    char* err = nullptr;
    rc = sqlite3_exec(db.get(), "SELECT cdc_unlisten('c')", nullptr, nullptr, &err);
    sqlite3_free(err);
  };
  ASSERT_EQ(Listen(db, "c", &r), "");
  ASSERT_TRUE(Eventually([&] { return r.destroyed.load() == 1; }));
  EXPECT_EQ(rc.load(), SQLITE_OK);
  EXPECT_EQ(r.Ids(), Range(1, 1));
  // The batch it handled was acked before the thread ended.
  EXPECT_EQ(Position(db, "c"), "1");
  db.Exec("INSERT INTO t(v) VALUES(2)");
  EXPECT_EQ(r.Count(), 1u);
  EXPECT_NE(db.Error("SELECT cdc_unlisten('c')").find("no listener for consumer 'c'"), std::string::npos);
  // A new listener may start at once and picks up where the old one acked.
  ASSERT_EQ(Listen(db, "c", &r2), "");
  ASSERT_TRUE(Eventually([&] { return r2.Count() >= 1; }));
  EXPECT_EQ(r2.Ids(), (std::vector<int64_t>{2}));
}

TEST(Listener, CloseDuringABatchWaitsForTheCallbackAndStops) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Recorder r;
  std::atomic<bool> in_callback{false}, release{false};
  r.inside = [&] {
    in_callback = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  std::thread releaser;
  {
    Db db(path);
    Prepare(db);
    db.Exec("INSERT INTO t(v) VALUES(1)");
    ASSERT_EQ(Listen(db, "c", &r), "");
    ASSERT_TRUE(Eventually([&] { return in_callback.load(); }));
    releaser = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      release = true;
    });
    // ~Db closes the registering connection while the callback runs.
  }
  releaser.join();
  EXPECT_TRUE(release.load());  // close returned only after the callback
  EXPECT_EQ(r.destroyed.load(), 1);
  EXPECT_EQ(r.Ids(), Range(1, 1));
  Db check(path, false);
  EXPECT_EQ(Position(check, "c"), "1");
}

TEST(Listener, TwoListenersOnOneDatabaseAndListenersOnTwoDatabases) {
  TempDir tmp;
  Recorder ra1, ra2, rb1, dup;  // outlive the connections (and so the listeners)
  Db a(tmp.File("a.db"));
  Db b(tmp.File("b.db"));
  Prepare(a, "c1");
  a.Exec("SELECT cdc_consumer_add('c2')");
  Prepare(b, "c1");
  ASSERT_EQ(Listen(a, "c1", &ra1), "");
  ASSERT_EQ(Listen(a, "c2", &ra2, "{\"batch\": 1}"), "");
  ASSERT_EQ(Listen(b, "c1", &rb1), "");
  for (int i = 0; i < 20; i++) {
    a.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
    if (i % 2) b.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  }
  ASSERT_TRUE(Eventually([&] { return ra1.Count() >= 20 && ra2.Count() >= 20 && rb1.Count() >= 10; }));
  EXPECT_EQ(ra1.Ids(), Range(1, 20));
  EXPECT_EQ(ra2.Ids(), Range(1, 20));
  EXPECT_EQ(rb1.Ids(), Range(1, 10));
  // The same consumer cannot have two listeners in one process.
  EXPECT_EQ(Listen(a, "c1", &dup),
            "cdc_listen: consumer 'c1' already has a listener in this process "
            "(stop it with SELECT cdc_unlisten('c1'))");
  EXPECT_EQ(dup.destroyed.load(), 0);  // a failed cdc_listen leaves user data to the caller
  // Listeners of a, stopped by closing a; b's keeps going.
  std::string st = a.One("SELECT cdc_status()");
  EXPECT_NE(st.find("\"consumer\":\"c1\""), std::string::npos);
  EXPECT_NE(st.find("\"consumer\":\"c2\""), std::string::npos);
  EXPECT_EQ(b.One("SELECT json_array_length(cdc_status(), '$.listeners')"), "1");
}

TEST(Listener, CommitSignalAloneDeliversInProcessWrites) {
  TempDir tmp;
  Recorder r;
  Db db(tmp.File("t.db"));
  Prepare(db);
  ASSERT_EQ(Listen(db, "c", &r, "{\"signals\": [\"commit\"]}"), "");
  for (int i = 1; i <= 5; i++) {
    db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
    ASSERT_TRUE(Eventually([&] { return r.Count() >= static_cast<size_t>(i); })) << i;
  }
  EXPECT_EQ(r.Ids(), Range(1, 5));
  std::string st = db.One("SELECT cdc_status()");
  EXPECT_NE(st.find("\"signals\":[\"commit\"]"), std::string::npos) << st;
  EXPECT_EQ(st.find("\"commit\":0,"), std::string::npos) << st;  // woken by commits
}

TEST(Listener, RollbackJournalModeWithWatchOnly) {
  TempDir tmp;
  Recorder r;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db, "c", /*wal=*/false);
  ASSERT_EQ(Listen(db, "c", &r, "{\"signals\": [\"watch\"]}"), "");
  Db other(path, false);
  for (int i = 1; i <= 5; i++) {
    other.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
    ASSERT_TRUE(Eventually([&] { return r.Count() >= static_cast<size_t>(i); })) << i;
  }
  EXPECT_EQ(r.Ids(), Range(1, 5));
}

// A VFS over the default one whose xSync of a -wal file first sleeps
// g_wal_sync_delay_us: with synchronous=FULL a writer syncs its WAL frames
// before it publishes them, so the inotify events of its writes come that
// long before its commit is visible (the case the re-checks are for).
std::atomic<int64_t> g_wal_sync_delay_us{0};

struct SlowFile {
  sqlite3_file base;
  sqlite3_file* real;  // follows this struct
  bool wal;
};

sqlite3_io_methods g_slow_io;
sqlite3_vfs g_slow_vfs;

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<SlowFile*>(f)->real; }

int SlowOpen(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* sf = reinterpret_cast<SlowFile*>(f);
  sf->real = reinterpret_cast<sqlite3_file*>(sf + 1);
  sf->wal = (flags & SQLITE_OPEN_WAL) != 0;
  auto* under = static_cast<sqlite3_vfs*>(vfs->pAppData);
  int rc = under->xOpen(under, name, sf->real, flags, out_flags);
  static std::mutex init;
  std::lock_guard<std::mutex> g(init);
  f->pMethods = sf->real->pMethods ? &g_slow_io : nullptr;
  if (sf->real->pMethods && g_slow_io.iVersion == 0) {
    const sqlite3_io_methods* m = sf->real->pMethods;
    sqlite3_io_methods io = *m;  // every method passes through but xSync
    io.xClose = [](sqlite3_file* x) { return Real(x)->pMethods->xClose(Real(x)); };
    io.xRead = [](sqlite3_file* x, void* b, int n, sqlite3_int64 o) {
      return Real(x)->pMethods->xRead(Real(x), b, n, o);
    };
    io.xWrite = [](sqlite3_file* x, const void* b, int n, sqlite3_int64 o) {
      return Real(x)->pMethods->xWrite(Real(x), b, n, o);
    };
    io.xTruncate = [](sqlite3_file* x, sqlite3_int64 n) { return Real(x)->pMethods->xTruncate(Real(x), n); };
    io.xSync = [](sqlite3_file* x, int fl) {
      const int64_t us = g_wal_sync_delay_us;
      if (reinterpret_cast<SlowFile*>(x)->wal && us > 0) usleep(static_cast<useconds_t>(us));
      return Real(x)->pMethods->xSync(Real(x), fl);
    };
    io.xFileSize = [](sqlite3_file* x, sqlite3_int64* n) { return Real(x)->pMethods->xFileSize(Real(x), n); };
    io.xLock = [](sqlite3_file* x, int l) { return Real(x)->pMethods->xLock(Real(x), l); };
    io.xUnlock = [](sqlite3_file* x, int l) { return Real(x)->pMethods->xUnlock(Real(x), l); };
    io.xCheckReservedLock = [](sqlite3_file* x, int* o) { return Real(x)->pMethods->xCheckReservedLock(Real(x), o); };
    io.xFileControl = [](sqlite3_file* x, int op, void* a) { return Real(x)->pMethods->xFileControl(Real(x), op, a); };
    io.xSectorSize = [](sqlite3_file* x) { return Real(x)->pMethods->xSectorSize(Real(x)); };
    io.xDeviceCharacteristics = [](sqlite3_file* x) { return Real(x)->pMethods->xDeviceCharacteristics(Real(x)); };
    io.xShmMap = [](sqlite3_file* x, int i, int sz, int e, void volatile** pp) {
      return Real(x)->pMethods->xShmMap(Real(x), i, sz, e, pp);
    };
    io.xShmLock = [](sqlite3_file* x, int o, int n, int fl) { return Real(x)->pMethods->xShmLock(Real(x), o, n, fl); };
    io.xShmBarrier = [](sqlite3_file* x) { Real(x)->pMethods->xShmBarrier(Real(x)); };
    io.xShmUnmap = [](sqlite3_file* x, int d) { return Real(x)->pMethods->xShmUnmap(Real(x), d); };
    io.xFetch = [](sqlite3_file* x, sqlite3_int64 o, int n, void** pp) {
      return Real(x)->pMethods->xFetch(Real(x), o, n, pp);
    };
    io.xUnfetch = [](sqlite3_file* x, sqlite3_int64 o, void* p) { return Real(x)->pMethods->xUnfetch(Real(x), o, p); };
    g_slow_io = io;
  }
  return rc;
}

// Registers "slowsync" (once).
void RegisterSlowSync() {
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite3_vfs* under = sqlite3_vfs_find(nullptr);
    g_slow_vfs = *under;
    g_slow_vfs.zName = "slowsync";
    g_slow_vfs.pAppData = under;
    g_slow_vfs.szOsFile = static_cast<int>(sizeof(SlowFile)) + under->szOsFile;
    g_slow_vfs.xOpen = SlowOpen;
    g_slow_vfs.pNext = nullptr;
    sqlite3_vfs_register(&g_slow_vfs, 0);
  });
}

// A watch wake comes before its commit is visible by more than a listener
// looks continuously after it (signals.h, kSpinUs), by more than the short
// re-checks, and after a read that found changes: each commit still arrives
// with the watch alone (no interval, no commit hook, no later write).
TEST(Listener, WatchWakesBeforeTheCommitIsVisibleAreStillDelivered) {
  RegisterSlowSync();
  TempDir tmp;
  Recorder r;
  Db db(tmp.File("t.db"));
  Prepare(db);
  Db writer("file:" + tmp.File("t.db") + "?vfs=slowsync", false);
  writer.Exec("PRAGMA synchronous=FULL");
  ASSERT_EQ(Listen(db, "c", &r, "{\"signals\": [\"watch\"]}"), "");
  auto rechecks = [&] { return std::stoll(db.One("SELECT cdc_status() ->> '$.listeners[0].wakes.recheck'")); };
  int64_t n = 0;
  for (int64_t delay_us : {0, 50, 300, 3000, 50000, 0, 3000}) {
    g_wal_sync_delay_us = delay_us;
    const int64_t before = rechecks();
    writer.Exec("INSERT INTO t(v) VALUES(" + std::to_string(delay_us) + ")");
    n++;
    ASSERT_TRUE(Eventually([&] { return r.Count() >= static_cast<size_t>(n); }))
        << "delay " << delay_us << " us: " << db.One("SELECT cdc_status()");
    // 50 ms late: found by a re-check of the listener's own, not by a later
    // write (the acker's commits are writes too, but at most one a second).
    if (delay_us == 50000) {
      EXPECT_GT(rechecks(), before) << db.One("SELECT cdc_status()");
    }
  }
  // Two commits in a row, the second published long after its events while
  // the listener reads the first.
  g_wal_sync_delay_us = 0;
  writer.Exec("INSERT INTO t(v) VALUES('a')");
  g_wal_sync_delay_us = 3000;
  writer.Exec("INSERT INTO t(v) VALUES('b')");
  n += 2;
  ASSERT_TRUE(Eventually([&] { return r.Count() >= static_cast<size_t>(n); })) << db.One("SELECT cdc_status()");
  g_wal_sync_delay_us = 0;
  EXPECT_EQ(r.Ids(), Range(1, n));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

// The commit hook fires before the commit is written; with synchronous=FULL
// and a slow WAL sync (here 400 ms, past the short re-checks) the commit is
// visible only later, and a listener with the commit signal alone (no watch,
// no interval) still finds it by its own re-checks.
TEST(Listener, CommitSignalAloneDeliversACommitPublishedLate) {
  RegisterSlowSync();
  TempDir tmp;
  Recorder r;
  Db db("file:" + tmp.File("t.db") + "?vfs=slowsync");
  Prepare(db);
  db.Exec("PRAGMA synchronous=FULL");
  ASSERT_EQ(Listen(db, "c", &r, "{\"signals\": [\"commit\"]}"), "");
  g_wal_sync_delay_us = 400000;
  db.Exec("INSERT INTO t(v) VALUES('late')");
  g_wal_sync_delay_us = 0;
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 1; })) << db.One("SELECT cdc_status()");
  EXPECT_EQ(r.Ids(), Range(1, 1));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

// Writers on three connections commit as fast as they can, some of them
// publishing their commits late (slow WAL sync), while the listener reads
// and delivers: whatever commits while a batch is read or delivered, or
// between the look at data_version and the read, arrives, once, in order.
TEST(Listener, NoChangeIsMissedWhenCommitsRaceTheReads) {
  RegisterSlowSync();
  TempDir tmp;
  Recorder r;
  Db db(tmp.File("t.db"));
  Prepare(db);
  ASSERT_EQ(Listen(db, "c", &r, "{\"signals\": [\"watch\"], \"batch\": 4}"), "");
  const int kWriters = 3, kEach = 100;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; w++) {
    writers.emplace_back([&, w] {
      Db c("file:" + tmp.File("t.db") + "?vfs=slowsync", false);
      c.Exec("PRAGMA busy_timeout=10000; PRAGMA synchronous=FULL");
      for (int i = 0; i < kEach; i++) {
        c.Exec("INSERT INTO t(v) VALUES(" + std::to_string(w * 1000 + i) + ")");
        if (i % 10 == w) std::this_thread::sleep_for(std::chrono::microseconds(200 * w));
      }
    });
  }
  // Some commits publish 0.5 ms after their events, while the others run.
  for (int i = 0; i < 20; i++) {
    g_wal_sync_delay_us = i % 2 ? 500 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& t : writers) t.join();
  g_wal_sync_delay_us = 0;
  const size_t total = kWriters * kEach;
  ASSERT_TRUE(Eventually([&] { return r.Count() >= total; })) << r.Count() << " " << db.One("SELECT cdc_status()");
  EXPECT_EQ(r.Ids(), Range(1, static_cast<int64_t>(total)));
  EXPECT_EQ(db.One("SELECT count(*) FROM t"), std::to_string(total));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

TEST(Listener, WorksOnTheRegisteringConnectionsNonDefaultVfs) {
  // unix-dotfile locks with a lock file: a listener on the default VFS would
  // not see the writer's locks. Rollback-journal mode (no shared memory).
  TempDir tmp;
  Recorder r;
  std::string uri = "file:" + tmp.File("t.db") + "?vfs=unix-dotfile";
  Db db(uri);
  Prepare(db, "c", /*wal=*/false);
  ASSERT_EQ(Listen(db, "c", &r), "");
  Db other(uri, false);
  for (int i = 1; i <= 5; i++) other.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  ASSERT_TRUE(Eventually([&] { return r.Count() >= 5; }));
  EXPECT_EQ(r.Ids(), Range(1, 5));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

TEST(Listener, ArgumentErrors) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  Recorder r;
  EXPECT_EQ(Listen(db, "c", &r), "cdc_listen: no such consumer: 'c' (add it with SELECT cdc_consumer_add('c'))");
  Prepare(db);
  EXPECT_EQ(Listen(db, "c", &r, "{\"batch\": 0}"), "cdc_listen: option \"batch\" must be an integer from 1 to 1000000");
  EXPECT_EQ(Listen(db, "c", &r, "{\"interval_ms\": \"5\"}"),
            "cdc_listen: option \"interval_ms\" must be an integer from 1 to 3600000");
  EXPECT_EQ(Listen(db, "c", &r, "{\"signal\": []}"),
            "cdc_listen: unknown option \"signal\" (known: signals, interval_ms, batch, retry_max_ms)");
  EXPECT_EQ(Listen(db, "c", &r, "{\"signals\": [\"inotify\"]}"),
            "cdc_listen: unknown signal \"inotify\" (known: \"watch\", \"interval\", \"commit\")");
  EXPECT_EQ(Listen(db, "c", &r, "{"),
            "cdc_listen: options is not valid JSON (e.g. '{\"signals\": [\"watch\", \"interval\"], "
            "\"interval_ms\": 250, \"batch\": 256}')");
  EXPECT_NE(db.Error("SELECT cdc_listen('c', 'no_such_fn')").find("is called by cdc_serve, not cdc_listen"),
            std::string::npos);
  EXPECT_NE(db.Error("SELECT cdc_listen('c', NULL)").find("callback must be a cdc_callback pointer"),
            std::string::npos);
  EXPECT_NE(db.Error("SELECT cdc_listen('c', 1)").find("callback must be"), std::string::npos);
  EXPECT_EQ(db.Error("SELECT cdc_listen(NULL, 'abs')"), "cdc_listen: consumer name must not be NULL");
  EXPECT_EQ(db.Error("SELECT cdc_unlisten('c')"),
            "cdc_unlisten: no listener for consumer 'c' on this database (start one with cdc_listen)");
  // An SQL string cannot forge a C callback: a text/blob is not a pointer.
  EXPECT_NE(db.Error("SELECT cdc_listen('c', x'00112233')").find("callback must be"), std::string::npos);
  // A consumer added in an open transaction is not visible to the listener's connection.
  db.Exec("BEGIN; SELECT cdc_consumer_add('later')");
  EXPECT_EQ(Listen(db, "later", &r),
            "cdc_listen: consumer 'later' is not committed yet; commit the transaction that added it first");
  db.Exec("COMMIT");
  EXPECT_EQ(r.destroyed.load(), 0);
}

TEST(Listener, MemoryAndReadOnlyDatabasesAreRefused) {
  Db mem(":memory:");
  mem.Exec("CREATE TABLE t(a); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c')");
  Recorder r;
  EXPECT_EQ(Listen(mem, "c", &r),
            "cdc_listen: the database is in memory or temporary: a listener needs its own connection to a "
            "database file (use cdc_wait, cdc_poll and cdc_ack on this connection instead)");
  // cdc_wait works there: nothing pending until this connection writes.
  EXPECT_EQ(mem.One("SELECT cdc_wait('c', 20)"), "0");
  mem.Exec("INSERT INTO t VALUES(1)");
  EXPECT_EQ(mem.One("SELECT cdc_wait('c', 20)"), "1");
  TempDir tmp;
  {
    Db db(tmp.File("t.db"));
    Prepare(db);
  }
  Db ro("file:" + tmp.File("t.db") + "?mode=ro");
  EXPECT_EQ(Listen(ro, "c", &r), "cdc_listen: the database is read-only");
  EXPECT_EQ(ro.One("SELECT cdc_wait('c', 0)"), "0");
}

// --- SQL-function callbacks ----------------------------------------------------------

struct SqlFnState {
  std::mutex mu;
  std::vector<std::string> batches;
  int fail_first = 0;
  int calls = 0;
  bool unlisten_inside = false;
};

void SqlFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto* s = static_cast<SqlFnState*>(sqlite3_user_data(ctx));
  std::string json = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  bool fail;
  {
    std::lock_guard<std::mutex> g(s->mu);
    fail = s->calls++ < s->fail_first;
    if (!fail) s->batches.push_back(json);
  }
  if (fail) {
    if (s->calls % 2) return sqlite3_result_error(ctx, "index is down", -1);
    return sqlite3_result_int(ctx, 0);
  }
  if (s->unlisten_inside) {
    sqlite3_exec(sqlite3_context_db_handle(ctx), "SELECT cdc_unlisten('c')", nullptr, nullptr, nullptr);
  }
  sqlite3_result_int(ctx, 1);
}

size_t Batches(SqlFnState& s) {
  std::lock_guard<std::mutex> g(s.mu);
  return s.batches.size();
}

// cdc_serve(consumer, 'on_changes' [, options]) on a connection and thread
// of its own (the recipe of docs/recipes.md). `result` is its value, or "error: ...".
struct Server {
  std::thread thread;
  std::string result;
  void Start(const std::string& path, SqlFnState* s, const std::string& options = "", int flags = 0) {
    thread = std::thread([this, path, s, options, flags] {
      sqlite3* own = nullptr;
      sqlite3_open_v2(path.c_str(), &own, SQLITE_OPEN_READWRITE | flags, nullptr);
      sqlite3_enable_load_extension(own, 1);
      sqlite3_load_extension(own, cdctest::ExtensionPath().c_str(), nullptr, nullptr);
      sqlite3_create_function_v2(own, "on_changes", 1, SQLITE_UTF8, s, SqlFn, nullptr, nullptr, nullptr);
      std::string sql = "SELECT cdc_serve('c', 'on_changes'" + (options.empty() ? "" : ", '" + options + "'") + ")";
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(own, sql.c_str(), -1, &st, nullptr);
      if (sqlite3_step(st) == SQLITE_ROW) {
        result = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      } else {
        result = std::string("error: ") + sqlite3_errmsg(own);
      }
      sqlite3_finalize(st);
      sqlite3_close(own);
    });
  }
  std::string Join() {
    thread.join();
    return result;
  }
};

TEST(ListenerSql, ServeCallsTheFunctionWithTheBatchAsJsonAndRetries) {
  TempDir tmp;
  SqlFnState s;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  s.fail_first = 2;  // an error, then a false result
  db.Exec("INSERT INTO t(v) VALUES('a'), ('b'), ('c')");
  Server server;
  server.Start(path, &s, "{\"batch\": 2, \"retry_max_ms\": 10}");
  ASSERT_TRUE(Eventually([&] { return Batches(s) >= 2; }));
  std::vector<std::string> got;
  {
    std::lock_guard<std::mutex> g(s.mu);
    EXPECT_EQ(s.calls, 4);
    got = s.batches;
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(db.One("SELECT group_concat(value ->> 'id') FROM json_each('" + got[0] + "')"), "1,2");
  EXPECT_EQ(db.One("SELECT value ->> 'after' ->> 'v' FROM json_each('" + got[1] + "')"), "c");
  std::string st = db.One("SELECT cdc_status() ->> '$.listeners[0]'");
  EXPECT_NE(st.find("\"callback\":\"sql:on_changes\""), std::string::npos) << st;
  EXPECT_NE(st.find("\"retries\":2,\"last_error\":null"), std::string::npos) << st;
  // The application keeps using its own connection meanwhile.
  for (int i = 0; i < 20; i++) db.Exec("INSERT INTO t(v) VALUES(" + std::to_string(i) + ")");
  ASSERT_TRUE(Eventually([&] { return Position(db, "c") == "23"; }));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");  // from another connection: returns at once
  EXPECT_EQ(server.Join(), "23");  // cdc_serve returns the number of changes it delivered
}

TEST(ListenerSql, UnlistenFromInsideTheFunction) {
  TempDir tmp;
  SqlFnState s;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  s.unlisten_inside = true;
  db.Exec("INSERT INTO t(v) VALUES('a')");
  Server server;
  server.Start(path, &s);
  EXPECT_EQ(server.Join(), "1");
  EXPECT_EQ(Position(db, "c"), "1");
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_status(), '$.listeners')"), "0");
  EXPECT_EQ(Batches(s), 1u);
}

// The old push design called the function from the listener's thread through
// the registering connection; in a host with a global lock that deadlocks.
TEST(ListenerSql, ListenRefusesAFunctionNameAndServeNeedsNoSerializedConnection) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  {
    Db db(path);
    Prepare(db);
    db.Exec("INSERT INTO t(v) VALUES('a')");
  }
  Db db(path, true, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
  EXPECT_EQ(db.Error("SELECT cdc_listen('c', 'abs')"),
            "cdc_listen: an SQL-function callback is called by cdc_serve, not cdc_listen: run SELECT "
            "cdc_serve('c', 'abs') on a connection of its own, in a thread of its own (a background thread "
            "calling into this connection deadlocks hosts with a global lock such as Python's GIL; "
            "docs/recipes.md, \"Push delivery\")");
  // cdc_serve calls the function on its caller's thread: any threading mode.
  SqlFnState s;
  s.unlisten_inside = true;
  Server server;
  server.Start(path, &s, "", SQLITE_OPEN_NOMUTEX);
  EXPECT_EQ(server.Join(), "1");
  // A C callback does not use the connection from another thread: allowed.
  Recorder r;
  EXPECT_EQ(Listen(db, "c", &r), "");
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

// --- cdc_wait -------------------------------------------------------------------

TEST(Wait, ReturnsPendingAtOnceOrWhenAChangeCommitsOrZeroOnTimeout) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 0)"), "0");
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 30)"), "0");
  db.Exec("INSERT INTO t(v) VALUES(1), (2)");
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 0)"), "2");
  db.Exec("SELECT cdc_ack('c', 2)");
  // Another process-like writer commits while we wait.
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    Db w(path, false);
    w.Exec("INSERT INTO t(v) VALUES(3)");
  });
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 20000)"), "1");
  writer.join();
  // Inside a transaction whose snapshot predates the commit, too.
  db.Exec("SELECT cdc_ack('c', 3); BEGIN; SELECT count(*) FROM t");
  std::thread writer2([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    Db w(path, false);
    w.Exec("INSERT INTO t(v) VALUES(4)");
  });
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 20000)"), "1");
  writer2.join();
  db.Exec("COMMIT");
}

// cdc_wait shortens the calling thread's timer slack for its short
// re-checks, and must give the caller's thread its own value back.
TEST(Wait, RestoresTheCallersTimerSlack) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  Prepare(db);
  ASSERT_EQ(prctl(PR_SET_TIMERSLACK, 123456UL, 0UL, 0UL, 0UL), 0);
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 30)"), "0");
  EXPECT_EQ(prctl(PR_GET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL), 123456);
  ASSERT_EQ(prctl(PR_SET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL), 0);  // back to the default
}

TEST(Wait, ArgumentErrors) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', 0)"), "cdc_wait: no such consumer: 'c' (add it with SELECT cdc_consumer_add('c'))");
  Prepare(db);
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', -1)"), "cdc_wait: timeout_ms must not be negative");
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', 1.5)"), "cdc_wait: timeout_ms must be an integer");
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', '10')"), "cdc_wait: timeout_ms must be an integer");
  EXPECT_EQ(db.Error("SELECT cdc_wait('c', NULL)"), "cdc_wait: timeout_ms must not be NULL");
  EXPECT_EQ(db.Error("SELECT cdc_wait(NULL, 1)"), "cdc_wait: consumer name must not be NULL");
  EXPECT_EQ(db.Error("SELECT cdc_wait('c')"), "wrong number of arguments to function cdc_wait()");
  // SQLITE_DIRECTONLY: not from views or triggers.
  db.Exec("CREATE VIEW w1 AS SELECT cdc_wait('c', 0) AS n; CREATE VIEW w2 AS SELECT cdc_unlisten('c') AS n;"
          "CREATE VIEW w3 AS SELECT cdc_listen('c', 'abs') AS n");
  EXPECT_EQ(db.Error("SELECT n FROM w1"), "unsafe use of cdc_wait()");
  EXPECT_EQ(db.Error("SELECT n FROM w2"), "unsafe use of cdc_unlisten()");
  EXPECT_EQ(db.Error("SELECT n FROM w3"), "unsafe use of cdc_listen()");
  // Huge timeouts are accepted (capped at one day); a pending change returns at once.
  db.Exec("INSERT INTO t(v) VALUES(1)");
  EXPECT_EQ(db.One("SELECT cdc_wait('c', 9223372036854775807)"), "1");
}

// --- real processes ------------------------------------------------------------

pid_t Spawn(const std::vector<std::string>& args, int* out_fd = nullptr) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  int p[2] = {-1, -1};
  if (out_fd) {
    if (pipe(p) != 0) return -1;
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
  }
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  if (out_fd) {
    close(p[1]);
    *out_fd = p[0];
  }
  return pid;
}

int Reap(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Runs the writer process (COUNT single-row commits with pauses) while this
// process listens; every change must arrive without any later write.
void CrossProcess(const char* options, const char* synchronous, bool busy_core) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Recorder r;
  Db db(path);
  Prepare(db);
  pid_t spinner = busy_core ? Spawn({"/bin/sh", "-c", "while :; do :; done"}) : -1;
  ASSERT_EQ(Listen(db, "c", &r, options), "");
  const int kCount = 25;
  pid_t w = Spawn({CDC_TEST_WRITER, path, std::to_string(kCount), "8", synchronous});
  ASSERT_GT(w, 0);
  EXPECT_EQ(Reap(w), 0);
  bool all = Eventually([&] { return r.Count() >= static_cast<size_t>(kCount); });
  if (spinner > 0) {
    kill(spinner, SIGKILL);
    Reap(spinner);
  }
  ASSERT_TRUE(all) << "got " << r.Count() << " of " << kCount << ": " << db.One("SELECT cdc_status()");
  EXPECT_EQ(r.Ids(), Range(1, kCount));
  EXPECT_EQ(db.One("SELECT cdc_unlisten('c')"), "1");
}

TEST(CrossProcess, WatchOnlyGetsEveryCommitWithoutALaterWrite) {
  CrossProcess("{\"signals\": [\"watch\"]}", "NORMAL", false);
}
TEST(CrossProcess, WatchOnlyWithSynchronousFull) { CrossProcess("{\"signals\": [\"watch\"]}", "FULL", false); }
TEST(CrossProcess, WatchOnlyWithABusyCore) { CrossProcess("{\"signals\": [\"watch\"]}", "FULL", true); }
TEST(CrossProcess, DefaultSignalsWithABusyCore) { CrossProcess(nullptr, "NORMAL", true); }
TEST(CrossProcess, IntervalOnly) { CrossProcess("{\"signals\": [\"interval\"], \"interval_ms\": 5}", "NORMAL", false); }

// Reads "batch ID ID ..." lines from the listener process until `last` is seen
// or the stream ends; appends the ids to *ids and the batches to *batches.
void ReadBatches(FILE* f, int64_t stop_after_batches, std::vector<std::vector<int64_t>>* batches) {
  char line[65536];
  while (fgets(line, sizeof line, f)) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word != "batch") continue;
    std::vector<int64_t> b;
    int64_t id;
    while (in >> id) b.push_back(id);
    batches->push_back(b);
    if (static_cast<int64_t>(batches->size()) == stop_after_batches) return;
  }
}

TEST(CrossProcess, ListenerKilledMidBatchRedeliversOnlyUnackedAndLosesNothing) {
  TempDir tmp;
  std::string path = tmp.File("t.db");
  Db db(path);
  Prepare(db);
  const int kCount = 300;
  db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
          "INSERT INTO t(v) SELECT i FROM n");
  // First run: hangs inside its 4th batch; killed there.
  int fd = -1;
  pid_t p = Spawn({CDC_TEST_LISTENER, cdctest::ExtensionPath(), path, "c", "50", std::to_string(kCount), "3"}, &fd);
  ASSERT_GT(p, 0);
  FILE* f = fdopen(fd, "r");
  std::vector<std::vector<int64_t>> first;
  ReadBatches(f, 4, &first);
  ASSERT_EQ(first.size(), 4u);
  // The 4th batch is in its callback: the first three are acked.
  ASSERT_TRUE(Eventually([&] { return Position(db, "c") == "150"; }));
  kill(p, SIGKILL);
  int status = Reap(p);
  EXPECT_TRUE(WIFSIGNALED(status));
  fclose(f);
  EXPECT_EQ(Position(db, "c"), "150");
  // Second run: from the last ack to the end.
  p = Spawn({CDC_TEST_LISTENER, cdctest::ExtensionPath(), path, "c", "50", std::to_string(kCount)}, &fd);
  f = fdopen(fd, "r");
  std::vector<std::vector<int64_t>> second;
  ReadBatches(f, -1, &second);
  fclose(f);
  EXPECT_EQ(Reap(p), 0);
  std::vector<int64_t> all;
  for (auto* run : {&first, &second}) {
    for (const auto& b : *run) all.insert(all.end(), b.begin(), b.end());
  }
  // Exactly the unacked batch (151..200) was delivered twice; nothing lost.
  std::vector<int64_t> want = Range(1, 200);
  auto rest = Range(151, kCount);
  want.insert(want.end(), rest.begin(), rest.end());
  EXPECT_EQ(all, want);
  EXPECT_EQ(Position(db, "c"), std::to_string(kCount));
}

}  // namespace
