// ops.cc — see ops.h.
#include "ops.h"

#include <sqlite3.h>

#include <algorithm>
#include <random>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "cdc.h"
#include "harness.h"
#include "inject.h"

namespace faulttest {

namespace {

std::string WideTable() {
  std::string s = "CREATE TABLE w(id INTEGER PRIMARY KEY";
  for (int i = 1; i < 300; i++) s += ", c" + std::to_string(i);
  return s + ");\n";
}

// Tables before capture: t (narrow, every type), u (UNIQUE), and with
// `wide` w (300 columns).
std::string Raw(bool wide = false) {
  return "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL, d BLOB);\n"
         "INSERT INTO t VALUES(1, 'one', 10, 1.5, x'00ff'), (2, 'two', 20, NULL, NULL),\n"
         "  (3, NULL, 30, 2.25, x''), (4, 'four''s \"q\"', 40, -0.5, x'41');\n"
         "CREATE TABLE u(id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, v INTEGER);\n"
         "INSERT INTO u VALUES(1, 'a', 1), (2, 'b', 2), (3, 'c', 3);\n" +
         (wide ? WideTable() + "INSERT INTO w(id, c1, c150, c299) VALUES(1, 'x', 2, 3.5), (2, NULL, 'y', x'00ff');\n"
               : std::string());
}

// The same, captured, bootstrapped, with consumers `audit` (never acks: the
// log stays whole) and `c1`, and a few changes.
std::string Captured(bool audit = true, bool wide = false) {
  return Raw(wide) + (audit ? "SELECT cdc_consumer_add('audit');\n" : "") +
         "SELECT cdc_setup('t'); SELECT cdc_bootstrap('t');\n"
         "SELECT cdc_setup('u'); SELECT cdc_bootstrap('u');\n" +
         (wide ? "SELECT cdc_setup('w'); SELECT cdc_bootstrap('w');\n" : "") +
         "SELECT cdc_consumer_add('c1');\n"
         "INSERT INTO t VALUES(5, 'five', 50, 5.5, NULL);\n"
         "UPDATE t SET a = 'TWO', c = 0.25 WHERE id = 2;\n"
         "DELETE FROM t WHERE id = 3;\n" +
         (wide ? "UPDATE w SET c2 = 7, c298 = 'z' WHERE id = 1;\n" : "") +
         "REPLACE INTO u VALUES(9, 'a', 99);\n";
}

// listen_c: cdc_listen with a C callback (cdc_listen takes no SQL function
// since cdc_serve), through cdc.h's pointer-passing call; see ListenC.
const char* kListen = "SELECT listen_c('c1', '{\"signals\": [\"interval\"], \"interval_ms\": 1000}')";

std::vector<Op> MakeOps() {
  const std::vector<std::string> all = {"t", "u"};
  const std::vector<std::string> all_wide = {"t", "u", "w"};
  std::vector<Op> v;
  auto add = [&](std::string name, std::string setup, std::string sql, std::vector<std::string> replay) {
    Op o;
    o.name = std::move(name);
    o.setup = std::move(setup);
    o.sql = std::move(sql);
    o.replay = std::move(replay);
    v.push_back(o);
    return &v.back();
  };
  add("setup_narrow", Raw(), "SELECT cdc_setup('t')", {});
  add("setup_wide", Raw(true), "SELECT cdc_setup('w')", {})->quick_share = 5;
  add("setup_unique", Raw(), "SELECT cdc_setup('u')", {});
  add("setup_refresh", Captured() + "ALTER TABLE u ADD COLUMN extra TEXT DEFAULT 'e';\n", "SELECT cdc_setup('u')",
      {"t"});
  add("setup_journal", Raw(), "SELECT cdc_setup('t')", {})->journal = "delete";
  add("teardown_table", Captured(), "SELECT cdc_teardown('t')", all);
  add("teardown_all", Captured(), "SELECT cdc_teardown()", {});
  add("bootstrap_whole", Captured(), "SELECT cdc_bootstrap('u')", all);
  add("bootstrap_chunk_first", Captured(), "SELECT cdc_bootstrap('t', 2)", {"u"});
  add("bootstrap_chunk_next", Captured() + "SELECT cdc_bootstrap('t', 2);\n", "SELECT cdc_bootstrap('t', 2)",
      {"u"});
  add("consumer_add_latest", Captured(), "SELECT cdc_consumer_add('c2', 'latest')", all);
  add("consumer_add_earliest", Captured(), "SELECT cdc_consumer_add('c2')", all);
  add("consumer_drop", Captured(), "SELECT cdc_consumer_drop('c1')", all);
  add("poll", Captured(), "SELECT cdc_poll('c1', 100)", all);
  add("poll_limit", Captured(), "SELECT cdc_poll('c1', 3)", all);
  add("ack", Captured(), "SELECT cdc_ack('c1', (SELECT max(id) FROM __cdc_log))", all);
  add("ack_prune", Captured(false), "SELECT cdc_ack('c1', (SELECT max(id) FROM __cdc_log))", {});
  add("ack_journal", Captured(), "SELECT cdc_ack('c1', (SELECT max(id) FROM __cdc_log))", all)->journal = "delete";
  add("status", Captured(), "SELECT cdc_status()", all);
  add("changes_scan", Captured(),
      "SELECT count(*), group_concat(id || ts || tbl || op || coalesce(before, '-') || coalesce(after, '-'), '|') "
      "FROM cdc_changes",
      all);
  add("changes_consumer", Captured(),
      "SELECT group_concat(id || op || coalesce(after, '-'), '|') FROM cdc_changes('c1') WHERE id > 3 AND tbl = 't'",
      all);
  add("wait_pending", Captured(), "SELECT cdc_wait('c1', 1000)", all);
  add("wait_timeout", Captured() + "SELECT cdc_ack('c1', (SELECT max(id) FROM __cdc_log));\n",
      "SELECT cdc_wait('c1', 1)", all)->own_busy_wait = true;
  {
    Op* o = add("listen", Captured(), kListen, all);
    o->listeners_ok = 1;
    o->own_busy_wait = true;
  }
  {
    Op* o = add("unlisten", Captured(), "SELECT cdc_unlisten('c1')", all);
    o->pre = kListen;
    o->listeners_fail = 1;
    o->own_busy_wait = true;
  }
  add("insert", Captured(), "INSERT INTO t VALUES(10, 'ten', 100, 10.5, x'0102')", all);
  add("insert_select", Captured(), "INSERT INTO t SELECT id + 100, a, b, c, d FROM t", all);
  add("update", Captured(), "UPDATE t SET a = a || '!', b = b + 1", all);
  add("update_key", Captured(), "UPDATE t SET id = id + 1000 WHERE id = 1", all);
  add("delete", Captured(), "DELETE FROM t WHERE id IN (1, 2)", all);
  add("replace_unique", Captured(), "REPLACE INTO u VALUES(4, 'b', 40)", all);
  add("insert_wide", Captured(true, true), "INSERT INTO w(id, c1, c200) VALUES(3, 1, 2)", all_wide);
  add("update_wide", Captured(true, true), "UPDATE w SET c3 = 'zz', c299 = 9 WHERE id = 2", all_wide);
  add("poll_wide", Captured(true, true), "SELECT cdc_poll('c1', 100)", all_wide);
  add("setup_in_txn", Raw(), "SELECT cdc_setup('u')", {})->txn = true;
  add("teardown_in_txn", Captured(), "SELECT cdc_teardown('u')", all)->txn = true;
  add("bootstrap_in_txn", Captured(), "SELECT cdc_bootstrap('t')", all)->txn = true;
  add("ack_in_txn", Captured(), "SELECT cdc_ack('c1', (SELECT max(id) FROM __cdc_log))", all)->txn = true;
  add("consumer_add_in_txn", Captured(), "SELECT cdc_consumer_add('c2')", all)->txn = true;
  add("insert_journal", Captured(), "INSERT INTO t VALUES(10, 'ten', 100, 10.5, x'0102')", all)->journal = "delete";
  return v;
}

// The callback of cdc_listen in the loops: refuses every batch, so the
// listener never acks and the database stays as the operation left it.
int Refuse(void*, const cdc_change*, int) { return 1; }

// listen_c(consumer, options): SELECT cdc_listen(?1, <Refuse>, ?2) on the
// caller's connection, its error (and code) passed on.
void ListenC(sqlite3_context* ctx, int, sqlite3_value** argv) {
  static cdc_callback cb{CDC_CALLBACK_ABI, Refuse, nullptr, nullptr};
  sqlite3* db = sqlite3_context_db_handle(ctx);
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT cdc_listen(?1, ?2, ?3)", -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_value(st, 1, argv[0]);
    sqlite3_bind_pointer(st, 2, &cb, CDC_CALLBACK_TYPE, nullptr);
    sqlite3_bind_value(st, 3, argv[1]);
    rc = sqlite3_step(st);
  }
  if (rc == SQLITE_ROW) {
    sqlite3_result_int(ctx, 1);
  } else {
    int code = sqlite3_extended_errcode(db);
    sqlite3_result_error(ctx, sqlite3_errmsg(db), -1);
    if ((code & 0xff) == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_error_code(ctx, code);
  }
  sqlite3_finalize(st);
}

// CDC_FAULTS_TRACE=1: every statement run on the attempt's connection.
int Trace(unsigned type, void*, void* p, void* x) {
  faults::HostScope host;
  auto* st = static_cast<sqlite3_stmt*>(p);
  if (type == SQLITE_TRACE_STMT) {
    fprintf(stderr, "  trace: %s\n", static_cast<const char*>(x));
  } else {
    fprintf(stderr, "  trace: done (autocommit=%d) %s\n", sqlite3_get_autocommit(sqlite3_db_handle(st)),
            sqlite3_sql(st));
  }
  return 0;
}

struct Outcome {
  int rc = SQLITE_OK;
  std::string err, result;
};

// Runs one statement; the result rows are copied without faults.
Outcome RunOne(sqlite3* db, const std::string& sql) {
  Outcome o;
  sqlite3_stmt* st = nullptr;
  o.rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  if (o.rc == SQLITE_OK) {
    while ((o.rc = sqlite3_step(st)) == SQLITE_ROW) {
      faults::HostScope host;
      for (int i = 0; i < sqlite3_column_count(st); i++) {
        const unsigned char* p = sqlite3_column_text(st, i);
        o.result += p ? reinterpret_cast<const char*>(p) : "NULL";
        o.result += '|';
      }
      o.result += '\n';
    }
    if (o.rc == SQLITE_DONE) o.rc = SQLITE_OK;
  }
  if (o.rc != SQLITE_OK) {
    faults::HostScope host;
    o.err = sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  return o;
}

// Does the error name the injected fault?
bool CleanError(const Fault& f, const Outcome& o) {
  if (o.err.empty()) return false;
  auto has = [&](const char* s) { return o.err.find(s) != std::string::npos; };
  if (f.alloc) return (o.rc & 0xff) == SQLITE_NOMEM || has("out of memory");
  int base = o.rc & 0xff;
  // SQLITE_PROTOCOL: SQLite's answer when WAL locks stay busy.
  if (base == SQLITE_IOERR || base == SQLITE_FULL || base == SQLITE_BUSY || base == SQLITE_NOMEM ||
      base == SQLITE_PROTOCOL) {
    return true;
  }
  return has("disk I/O error") || has("database or disk is full") || has("database is locked") ||
         has("out of memory") || has("locking protocol");
}

int ListenerCount(sqlite3* db) {
  std::string n = One(db, "SELECT json_array_length(cdc_status(), '$.listeners')");
  return atoi(n.c_str());
}

struct Template {
  TempDir dir;
  std::string file;
};

}  // namespace

const std::vector<Op>& Ops() {
  static const std::vector<Op>* ops = new std::vector<Op>(MakeOps());
  return *ops;
}

LoopStats RunLoop(const Op& op, const Fault& fault, int64_t max_attempts) {
  LoopStats stats;
  Template tpl;
  tpl.file = tpl.dir.File("template.db");
  std::string work = tpl.dir.File("work.db");
  auto fail = [&](const std::string& what) {
    if (stats.problems.size() < 4000) stats.problems += what + "\n";
  };
  {
    std::string err;
    sqlite3* db = Open(tpl.file, &err);
    if (!db) {
      fail("open template: " + err);
      return stats;
    }
    std::string e = Exec(db, "PRAGMA journal_mode=" + op.journal + ";\n" + op.setup);
    sqlite3_close(db);
    if (!e.empty()) {
      fail("template setup: " + e);
      return stats;
    }
  }

  struct Attempt {
    sqlite3* obs = nullptr;  // a second connection, for the checks (the operation's keeps a cold cache)
    Outcome out;
    int64_t points = 0, hits = 0;
    std::string dump_before, dump_after;
    bool txn_open = false;
  };
  // One attempt; n == 0: no fault (but the fault points are counted).
  auto attempt = [&](int64_t n, Attempt* a) -> sqlite3* {
    CopyDb(tpl.file, work);
    std::string err;
    sqlite3* db = Open(work, &err);
    if (!db) {
      fail("open: " + err);
      return nullptr;
    }
    sqlite3_create_function(db, "listen_c", 2, SQLITE_UTF8, nullptr, ListenC, nullptr, nullptr);
    if (getenv("CDC_FAULTS_TRACE")) sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, Trace, nullptr);
    if (!op.pre.empty()) {
      std::string e = Exec(db, op.pre);
      if (!e.empty()) fail("pre: " + e);
    }
    a->obs = Open(work, &err);
    if (!a->obs) {
      fail("open: " + err);
      sqlite3_close(db);
      return nullptr;
    }
    a->dump_before = Dump(a->obs);
    if (op.txn) Exec(db, "BEGIN");
    int64_t at = n > 0 ? n : INT64_MAX;
    if (fault.alloc) {
      faults::ArmAllocThisThread(at, fault.persistent, fault.only_new);
    } else {
      faults::ArmIo(fault.io_methods, at, fault.io_code, fault.persistent);
    }
    a->out = RunOne(db, op.sql);
    faults::Disarm();
    if (op.txn) {
      a->txn_open = !sqlite3_get_autocommit(db);  // SQLite may have rolled back after the error
      if (a->txn_open) {
        std::string e = Exec(db, "COMMIT");
        if (!e.empty()) fail(op.name + ": COMMIT after the operation: " + e);
      }
    }
    a->points = fault.alloc ? faults::AllocCount() : faults::IoCount();
    a->hits = fault.alloc ? faults::AllocHits() : faults::IoHits();
    return db;
  };
  auto close = [&](sqlite3* db, sqlite3* obs, const char* when) {
    sqlite3_close(obs);
    // The listener of a successful cdc_listen (the retry's, too).
    if (ListenerCount(db) > 0) Exec(db, "SELECT cdc_unlisten('c1')");
    int rc = sqlite3_close(db);
    if (rc != SQLITE_OK) {
      fail(std::string("sqlite3_close ") + when + ": " + sqlite3_errmsg(db) + " (a statement left open)");
      sqlite3_close_v2(db);
    }
  };

  // The fault-free run: the reference result and database.
  int64_t mem0 = sqlite3_memory_used();
  Attempt ref;
  sqlite3* db = attempt(0, &ref);
  if (!db) return stats;
  if (ref.out.rc != SQLITE_OK) {
    fail("fault-free run failed: " + ref.out.err);
    close(db, ref.obs, "reference");
    return stats;
  }
  std::string ref_dump = Dump(ref.obs);
  close(db, ref.obs, "reference");
  stats.points = ref.points;

  std::vector<int64_t> ns;
  if (ref.points <= max_attempts) {
    for (int64_t n = 1; n <= ref.points + 1; n++) ns.push_back(n);
  } else if (Long()) {
    // A campaign: random fault points (seeded), the first few and the last.
    std::mt19937_64 rng(Seed() ^ std::hash<std::string>()(op.name + "/" + fault.name));
    std::set<int64_t> pick;
    for (int64_t n = 1; n <= 10; n++) pick.insert(n);
    while (static_cast<int64_t>(pick.size()) < max_attempts) pick.insert(1 + static_cast<int64_t>(rng() % ref.points));
    pick.insert(ref.points + 1);
    ns.assign(pick.begin(), pick.end());
  } else {
    // The suite: evenly spread, the same every run.
    for (int64_t k = 0; k < max_attempts; k++) ns.push_back(1 + k * ref.points / max_attempts);
    ns.push_back(ref.points);
    ns.push_back(ref.points + 1);
    ns.erase(std::unique(ns.begin(), ns.end()), ns.end());
  }

  if (const char* only = getenv("CDC_FAULTS_N")) ns = {atoll(only)};  // debugging one fault point
  for (int64_t n : ns) {
    if (!stats.problems.empty()) break;
    int64_t mem_before = sqlite3_memory_used();
    Attempt a;
    db = attempt(n, &a);
    if (!db) break;
    std::string at = op.name + " [" + fault.name + "] N=" + std::to_string(n) + ": ";
    const bool ok = a.out.rc == SQLITE_OK;
    if (a.hits > 0) {
      stats.attempts++;
      if (!ok) stats.failed++;
    }
    if (!ok && !CleanError(fault, a.out)) {
      fail(at + "error that does not name the fault: rc=" + std::to_string(a.out.rc) + " \"" + a.out.err + "\"");
    }
    if (a.hits == 0 && !ok) fail(at + "failed with no fault injected: " + a.out.err);
    std::string dump = Dump(a.obs);
    if (ok) {
      if (a.out.result != ref.out.result) {
        fail(at + "succeeded with a different result:\n  got  " + a.out.result.substr(0, 600) + "\n  want " +
             ref.out.result.substr(0, 600));
      }
      if (dump != ref_dump) fail(at + "succeeded but left a different database");
    } else if (dump != a.dump_before) {
      fail(at + "failed (" + a.out.err + ") but changed the database");
    }
    if (!sqlite3_get_autocommit(db)) fail(at + "left a transaction open (rc=" + std::to_string(a.out.rc) + " " + a.out.err + ")");
    if (sqlite3_stmt* st = sqlite3_next_stmt(db, nullptr)) {
      fail(at + "left a statement open: " + sqlite3_sql(st));
    }
    std::string integ = Integrity(a.obs);
    if (integ != "ok") fail(at + "integrity_check: " + integ);
    if (!op.replay.empty()) {
      std::string r = ReplayCheck(a.obs, op.replay);
      if (!r.empty()) fail(at + "replay: " + r);
    }
    int want_listeners = ok ? op.listeners_ok : op.listeners_fail;
    int listeners = ListenerCount(db);
    if (listeners != want_listeners) {
      fail(at + std::to_string(listeners) + " listeners afterwards, expected " + std::to_string(want_listeners));
    }
    if (!ok) {
      // The connection keeps working: the same call without faults.
      if (!sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK");
      if (op.txn) Exec(db, "BEGIN");
      Outcome again = RunOne(db, op.sql);
      if (op.txn) Exec(db, "COMMIT");
      if (again.rc != SQLITE_OK) {
        fail(at + "the fault-free retry failed: " + again.err);
      } else {
        if (again.result != ref.out.result) fail(at + "the fault-free retry returned " + again.result.substr(0, 300));
        if (Dump(a.obs) != ref_dump) fail(at + "the fault-free retry left a different database");
      }
    }
    close(db, a.obs, "after the attempt");
    int64_t mem_after = sqlite3_memory_used();
    if (mem_after != mem_before) {
      fail(at + "SQLite memory in use went from " + std::to_string(mem_before) + " to " +
           std::to_string(mem_after) + " bytes across the attempt (a leak)");
    }
    if (a.hits == 0) break;  // the operation needs fewer fault points than n
  }
  (void)mem0;
  return stats;
}

}  // namespace faulttest
