// retention.cc — see retention.h.
#include "retention.h"

#include <algorithm>
#include <unordered_map>

#include "schema.h"

namespace cdc {

namespace {

struct Setting {
  const char* key;
  int64_t def;
};

// Defaults: a consumer that keeps up is never near them; a forgotten or
// stalled one stops holding the log after a week. No row limit by default:
// one large transaction (a bulk import) may put millions of rows before a
// consumer that keeps up.
// No byte limit by default either: it would need a size that fits every
// database, and max_lag_ms already bounds what a forgotten consumer holds.
enum { kMaxLogRows, kMaxLogBytes, kMaxLag, kIdle, kSettingCount };
constexpr Setting kSettings[kSettingCount] = {
    {"max_log_rows", 0},
    {"max_log_bytes", 0},
    {"max_lag_ms", 7 * 24 * 3600 * 1000LL},
    {"idle_timeout_ms", 7 * 24 * 3600 * 1000LL},
};

// The statements EnforceRetention runs (named: WarmRetention prepares them).
const char kFollowSql[] =
    "UPDATE main.__cdc_consumers SET pos = (SELECT coalesce(max(id), 0) FROM main.__cdc_log) "
    "WHERE name IN (SELECT substr(key, 6) FROM main.__cdc_meta WHERE key >= 'lost.' AND key < 'lost/')";
const char kMarkSql[] =
    "INSERT OR REPLACE INTO main.__cdc_meta(key, value) VALUES('lost.' || ?1, ?2 || ' (at ' || "
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') || ')')";
const char kMoveSql[] =
    "UPDATE main.__cdc_consumers SET pos = (SELECT coalesce(max(id), 0) FROM main.__cdc_log) WHERE name = ?1";
const char kLoadBytesSql[] = "SELECT key, value FROM main.__cdc_meta WHERE key >= 'log_bytes.' AND key < 'log_bytes/'";
const char kSaveBytesSql[] =
    "INSERT OR REPLACE INTO main.__cdc_meta(key, value) VALUES"
    "('log_bytes.floor', ?1), ('log_bytes.upto', ?2), ('log_bytes.total', ?3)";
const char kMeasureSql[] = "SELECT * FROM main.__cdc_log WHERE id > ?1 AND id <= ?2";
const char kOldestSql[] = "SELECT coalesce(min(id), 0) FROM main.__cdc_log";
const char kNewestSql[] = "SELECT coalesce(max(id), 0) FROM main.__cdc_log";
const char kUsedSql[] =
    "SELECT (p.page_count - f.freelist_count) * s.page_size "
    "FROM pragma_page_count AS p, pragma_freelist_count AS f, pragma_page_size AS s";

// EnforceRetention's first look, in two short statements (a long one
// costs as much to prepare as its parts): the keys of __cdc_meta from
// 'lost.' to 'retention.*' (lost marks, read marks, the settings), then per
// consumer what ConsumersSql measures, computed here the same way. Most
// checks end there; with a consumer lost, a byte limit, or one past a
// limit, the full check runs.
const char kLookMetaSql[] = "SELECT key, value FROM main.__cdc_meta WHERE key >= 'lost.' AND key < 'retention/'";
std::string LookConsumersSql() {
  return std::string("SELECT c.name, c.pos, coalesce(c.acked_ms, c.created_ms), "
                     "(SELECT ts FROM main.__cdc_log WHERE id > c.pos AND op <> 0 ORDER BY id LIMIT 1), "
                     "(SELECT coalesce(max(id), 0) FROM main.__cdc_log), ") +
         kNowMs + " FROM main.__cdc_consumers AS c";
}

// Per live consumer with pending changes: ids it holds, age of its oldest
// pending change, time since it last read or acked (or was added), newest id.
std::string ConsumersSql() {
  return std::string("SELECT c.name, n.newest - c.pos, ") + kNowMs +
         " - (SELECT ts FROM main.__cdc_log WHERE id > c.pos AND op <> 0 ORDER BY id LIMIT 1), " + kNowMs +
         " - max(coalesce(c.acked_ms, c.created_ms), "
         "coalesce((SELECT value FROM main.__cdc_meta WHERE key = 'read.' || c.name), 0)), n.newest "
         "FROM main.__cdc_consumers AS c, (SELECT max(id) AS newest FROM main.__cdc_log) AS n "
         "WHERE n.newest > c.pos AND NOT EXISTS (SELECT 1 FROM main.__cdc_meta WHERE key = 'lost.' || c.name)";
}

const Setting* Find(const std::string& key) {
  for (const auto& s : kSettings) {
    if (key == s.key) return &s;
  }
  return nullptr;
}

bool MetaExists(sqlite3* db) {
  int64_t n = 0;
  return QueryInt(db, "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = '__cdc_meta'", &n)
             .ok() &&
         n > 0;
}

Status GetSetting(sqlite3* db, const Setting& s, int64_t* out) {
  *out = s.def;
  if (!MetaExists(db)) return Status();
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT value FROM main.__cdc_meta WHERE key = ?1"));
  st.Bind(1, std::string("retention.") + s.key);
  int rc = st.Step();
  if (rc == SQLITE_ROW && !st.IsNull(0)) *out = st.Int(0);
  else if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Status::FromDb(db, "cdc_config");
  return Status();
}

int VarintLen(uint64_t v) {
  int n = 1;
  while (v > 0x7f && n < 9) {
    v >>= 7;
    n++;
  }
  return n;
}

// Body bytes of an integer in SQLite's record format.
int IntBytes(int64_t v) {
  if (v == 0 || v == 1) return 0;
  const uint64_t u = v < 0 ? ~static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (u <= 0x7f) return 1;
  if (u <= 0x7fff) return 2;
  if (u <= 0x7fffff) return 3;
  if (u <= 0x7fffffff) return 4;
  if (u <= 0x7fffffffffffULL) return 6;
  return 8;
}

// The stored size of the log rows with ids in (lo, hi]: each row's record
// (header and body, in SQLite's record format), its cell's two varints and
// its 2-byte cell pointer. The pages holding them are somewhat larger (page
// headers, free space in pages, overflow-page links): dbstat's "payload".
Status MeasureLog(sqlite3* db, int64_t lo, int64_t hi, int64_t* bytes) {
  *bytes = 0;
  if (hi <= lo) return Status();
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, kMeasureSql));
  st.Bind(1, lo);
  st.Bind(2, hi);
  sqlite3_stmt* s = st.get();
  const int n = sqlite3_column_count(s);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    int64_t types = 1, body = 0;  // column 0, the INTEGER PRIMARY KEY, is the cell's key: a NULL in the record
    for (int i = 1; i < n; i++) {
      switch (sqlite3_column_type(s, i)) {
        case SQLITE_INTEGER:
          body += IntBytes(sqlite3_column_int64(s, i));
          types += 1;
          break;
        case SQLITE_FLOAT:
          body += 8;
          types += 1;
          break;
        case SQLITE_NULL:
          types += 1;
          break;
        default: {
          const int64_t len = sqlite3_column_bytes(s, i);
          body += len;
          types += VarintLen(static_cast<uint64_t>(2 * len + 13));
        }
      }
    }
    const int64_t payload = types + VarintLen(static_cast<uint64_t>(types + 1)) + body;
    *bytes += payload + VarintLen(static_cast<uint64_t>(payload)) +
              VarintLen(static_cast<uint64_t>(sqlite3_column_int64(s, 0))) + 2;
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
  return Status();
}

// The running count behind max_log_bytes, in __cdc_meta: the log rows with
// ids in (floor, upto] (those still in the log that were measured) take
// `total` bytes. Each row is measured once, when a check finds it new
// (EnforceRetention), and again when Prune deletes it (AccountPrune).
struct ByteCount {
  bool have = false;
  int64_t floor = 0, upto = 0, total = 0;
};

Status LoadByteCount(sqlite3* db, ByteCount* b) {
  *b = ByteCount();
  Stmt st;
  Status prep = st.Prepare(db, kLoadBytesSql);
  if (!prep.ok()) return (prep.code() & 0xff) == SQLITE_ERROR ? Status() : prep;  // no __cdc_meta: no count
  int rc, found = 0;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const std::string key = st.Text(0);
    if (key == "log_bytes.floor") b->floor = st.Int(1), found |= 1;
    else if (key == "log_bytes.upto") b->upto = st.Int(1), found |= 2;
    else if (key == "log_bytes.total") b->total = st.Int(1), found |= 4;
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
  b->have = found == 7;
  return Status();
}

Status SaveByteCount(sqlite3* db, const ByteCount& b) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, kSaveBytesSql));
  st.Bind(1, b.floor);
  st.Bind(2, b.upto);
  st.Bind(3, b.total);
  if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
  return Status();
}

// The granularity of read records (NoteRead): a tenth of the idle timeout,
// at most a minute.
int64_t ReadRecordEvery(int64_t idle_ms) {
  return idle_ms > 0 ? std::min<int64_t>(60000, std::max<int64_t>(1, idle_ms / 10)) : 60000;
}

}  // namespace

void WarmRetention(sqlite3* db) {
  for (const std::string& sql : {std::string(kLookMetaSql), LookConsumersSql(), std::string(kFollowSql),
                                 ConsumersSql(), std::string(kMarkSql),
                                 std::string(kMoveSql), std::string(kLoadBytesSql), std::string(kSaveBytesSql),
                                 std::string(kOldestSql), std::string(kNewestSql), std::string(kUsedSql),
                                 std::string(kMeasureSql)}) {
    Stmt st;
    (void)st.Prepare(db, sql);  // kept by the connection's StmtCache; a failure shows when it runs
  }
}

Status RetentionSetting(sqlite3* db, const std::string& key, int64_t* out) {
  const Setting* s = Find(key);
  if (!s) return Status::Error("sqlite-cdc: unknown retention setting " + Literal(key));
  return GetSetting(db, *s, out);
}

std::string LostError(const char* fn, const std::string& name, const std::string& reason) {
  return std::string(fn) + ": consumer " + Literal(name) + " was invalidated: " + reason +
         "; the changes it had not acked were pruned. To start it again after the newest change: SELECT "
         "cdc_consumer_add(" + Literal(name) + "); then cdc_bootstrap(table) each table it needs";
}

Status LostReason(sqlite3* db, const std::string& name, std::string* reason) {
  reason->clear();
  if (!MetaExists(db)) return Status();
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT value FROM main.__cdc_meta WHERE key = 'lost.' || ?1"));
  st.Bind(1, name);
  int rc = st.Step();
  if (rc == SQLITE_ROW) *reason = st.Text(0);
  else if (rc != SQLITE_DONE) return Status::FromDb(db, "consumer");
  return Status();
}

Status ForgetMarks(sqlite3* db, const std::string& name) {
  if (!MetaExists(db)) return Status();
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "DELETE FROM main.__cdc_meta WHERE key IN ('lost.' || ?1, 'read.' || ?1)"));
  st.Bind(1, name);
  if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "consumer");
  return Status();
}

Status AccountPrune(sqlite3* db, int64_t upto) {
  ByteCount b;
  CDC_RETURN_IF_ERROR(LoadByteCount(db, &b));
  if (!b.have || upto <= b.floor) return Status();
  int64_t gone = 0;
  CDC_RETURN_IF_ERROR(MeasureLog(db, b.floor, std::min(upto, b.upto), &gone));
  b.total = std::max<int64_t>(0, b.total - gone);
  b.floor = upto;
  if (b.upto <= upto) {
    b.upto = upto;
    b.total = 0;
  }
  return SaveByteCount(db, b);
}

Status NoteRead(sqlite3* db, const std::string& name, bool no_busy_handler) {
  // Only with no transaction open on main: inside the caller's read
  // transaction a write would hold the write lock until that ends (or fail
  // with SQLITE_BUSY_SNAPSHOT); inside its write transaction it would be
  // undone with it. A later read records it.
  if (sqlite3_txn_state(db, "main") != SQLITE_TXN_NONE || sqlite3_db_readonly(db, "main") == 1) return Status();
  int64_t now = 0, seen = 0, idle = kSettings[kIdle].def;
  {
    Stmt q;
    if (!q.Prepare(db, std::string("SELECT ") + kNowMs +
                           ", max(coalesce(c.acked_ms, 0), coalesce(c.created_ms, 0), "
                           "coalesce((SELECT value FROM main.__cdc_meta WHERE key = 'read.' || ?1), 0)), "
                           "(SELECT value FROM main.__cdc_meta WHERE key = 'retention.idle_timeout_ms') "
                           "FROM main.__cdc_consumers AS c WHERE c.name = ?1")
             .ok()) {
      return Status();  // a database of an earlier version (no __cdc_meta): nothing recorded
    }
    q.Bind(1, name);
    if (q.Step() != SQLITE_ROW) return Status();
    now = q.Int(0);
    seen = q.Int(1);
    if (!q.IsNull(2)) idle = q.Int(2);
  }  // the read transaction ends here
  return NoteReadKnown(db, name, now, seen, idle, no_busy_handler);
}

Status NoteReadKnown(sqlite3* db, const std::string& name, int64_t now, int64_t seen, int64_t idle_setting,
                     bool no_busy_handler) {
  if (sqlite3_txn_state(db, "main") != SQLITE_TXN_NONE || sqlite3_db_readonly(db, "main") == 1) return Status();
  const int64_t idle = idle_setting >= 0 ? idle_setting : kSettings[kIdle].def;
  if (now - seen < ReadRecordEvery(idle)) return Status();
  // A short write transaction of its own that never waits for the lock: a
  // connection's busy timeout is set aside for it (a custom busy handler
  // cannot be: SQLite has no way to read it back).
  int64_t timeout = 0;
  if (!no_busy_handler && QueryInt(db, "PRAGMA busy_timeout", &timeout).ok() && timeout > 0) {
    sqlite3_busy_timeout(db, 0);
  }
  struct Restore {  // given back however this returns (an allocation failure throws)
    sqlite3* db;
    int64_t ms;
    ~Restore() {
      if (ms > 0) sqlite3_busy_timeout(db, static_cast<int>(ms));
    }
  } restore{db, timeout};
  Stmt rollback, mark;
  if (rollback.Prepare(db, "ROLLBACK").ok() &&
      mark.Prepare(db, "INSERT OR REPLACE INTO main.__cdc_meta(key, value) "
                       "SELECT 'read.' || ?1, ?2 WHERE EXISTS (SELECT 1 FROM main.__cdc_consumers WHERE name = ?1)")
          .ok() &&
      sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK) {
    mark.Bind(1, name);
    mark.Bind(2, now);
    // Rollback-journal mode: readers keep the commit out; given up.
    if (mark.Step() != SQLITE_DONE || sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      mark.Reset();
      if (!sqlite3_get_autocommit(db)) rollback.Step();
    }
  }
  return Status();
}

Status EnforceRetention(sqlite3* db) {
  // This runs in every ack that moves a position: two short statements
  // (kLookMetaSql, LookConsumersSql) when no consumer is lost, no byte
  // limit is set and none is past a limit; else the full check below,
  // which reads the consumers again (the settings read here serve it).
  // A database without __cdc_meta (an earlier version's) has no settings
  // and no marks.
  int64_t limit[kSettingCount];  // the settings, read once here for the full check too
  for (int i = 0; i < kSettingCount; i++) limit[i] = kSettings[i].def;
  {
    Stmt meta;
    if (!meta.Prepare(db, kLookMetaSql).ok()) return Status();
    bool lost = false;
    std::unordered_map<std::string, int64_t> read;  // read.<name>
    int rc;
    while ((rc = meta.Step()) == SQLITE_ROW) {
      const std::string key = meta.Text(0);
      if (key.compare(0, 5, "lost.") == 0) {
        lost = true;
      } else if (key.compare(0, 5, "read.") == 0) {
        read[key.substr(5)] = meta.IsNull(1) ? 0 : meta.Int(1);
      } else if (key.compare(0, 10, "retention.") == 0 && !meta.IsNull(1)) {
        for (int i = 0; i < kSettingCount; i++) {
          if (key.compare(10, std::string::npos, kSettings[i].key) == 0) limit[i] = meta.Int(1);
        }
      }
    }
    if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
    meta = Stmt();
    if (!lost && limit[kMaxLogRows] <= 0 && limit[kMaxLogBytes] <= 0 && limit[kMaxLag] <= 0 && limit[kIdle] <= 0) {
      return Status();
    }
    bool past = lost || limit[kMaxLogBytes] > 0;
    if (!past) {
      Stmt st;
      CDC_RETURN_IF_ERROR(st.Prepare(db, LookConsumersSql()));
      while (!past && (rc = st.Step()) == SQLITE_ROW) {
        const int64_t pos = st.Int(1), newest = st.Int(4), now = st.Int(5);
        if (newest <= pos) continue;  // nothing pending: no limit applies
        if (limit[kMaxLogRows] > 0 && newest - pos > limit[kMaxLogRows]) past = true;
        if (limit[kMaxLag] > 0 && !st.IsNull(3) && now - st.Int(3) > limit[kMaxLag]) past = true;
        if (limit[kIdle] > 0 && !st.IsNull(2)) {  // SQL's max() of a NULL is NULL: no idle time
          auto it = read.find(st.Text(0));
          const int64_t seen = std::max(st.Int(2), it == read.end() ? 0 : it->second);
          if (now - seen > limit[kIdle]) past = true;
        }
      }
      if (!past && rc != SQLITE_DONE) return Status::FromDb(db, "retention");
    }
    if (!past) return Status();
  }
  // Lost consumers never hold the log back: their positions follow the
  // newest change (reads of them fail before they use it).
  {
    Stmt follow;
    if (!follow.Prepare(db, kFollowSql).ok()) {
      return Status();
    }
    if (follow.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
  }
  const int64_t max_rows = limit[kMaxLogRows], max_bytes = limit[kMaxLogBytes], max_lag = limit[kMaxLag],
                idle = limit[kIdle];
  if (max_rows <= 0 && max_bytes <= 0 && max_lag <= 0 && idle <= 0) return Status();
  // Bytes: the log's stored size, a running count (ByteCount) that measures
  // each new row once, here, and each pruned row once, in Prune. Not even
  // that while the whole database (pages in use) is within the limit: then
  // no consumer can hold more. A consumer holds the log's bytes in
  // proportion to the rows it holds (exact for the one furthest behind: the
  // log is pruned up to it).
  ByteCount bytes;
  bool check_bytes = false;
  if (max_bytes > 0) {
    CDC_RETURN_IF_ERROR(LoadByteCount(db, &bytes));
    int64_t oldest = 0, newest = 0, used = 0;
    CDC_RETURN_IF_ERROR(QueryInt(db, kOldestSql, &oldest));
    CDC_RETURN_IF_ERROR(QueryInt(db, kNewestSql, &newest));
    CDC_RETURN_IF_ERROR(QueryInt(db, kUsedSql, &used));
    // Counted from scratch when there is no count yet, or it no longer
    // matches the log: pruned by something that did not count (an earlier
    // version), or ids started again (cdc_teardown() and a new setup).
    const ByteCount before = bytes;
    if (!bytes.have || bytes.floor != (oldest ? oldest - 1 : newest) || bytes.upto > newest) {
      bytes.have = true;
      bytes.floor = bytes.upto = oldest ? oldest - 1 : newest;
      bytes.total = 0;
    }
    if (used > max_bytes && bytes.upto < newest) {
      int64_t added = 0;
      CDC_RETURN_IF_ERROR(MeasureLog(db, bytes.upto, newest, &added));
      bytes.total += added;
      bytes.upto = newest;
    }
    if (!before.have || before.floor != bytes.floor || before.upto != bytes.upto || before.total != bytes.total) {
      CDC_RETURN_IF_ERROR(SaveByteCount(db, bytes));
    }
    check_bytes = bytes.upto == newest && newest > bytes.floor && bytes.total > max_bytes;
  }
  // Per live consumer with pending changes: ids it holds, age of its oldest
  // pending change, time since it last read or acked (or was added). Ids
  // count rows (continuation rows included): the log's ids have no gaps but
  // pruned ones.
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, ConsumersSql()));
  std::vector<std::pair<std::string, std::string>> lost;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const int64_t rows = st.Int(1);
    const bool has_lag = !st.IsNull(2), has_idle = !st.IsNull(3);
    std::string why;
    int64_t held = 0;
    if (check_bytes) {
      const int64_t span = st.Int(4) - bytes.floor;
      held = static_cast<int64_t>(static_cast<long double>(bytes.total) * std::min(rows, span) / span);
    }
    if (max_rows > 0 && rows > max_rows) {
      why = "it held " + std::to_string(rows) + " log rows, more than max_log_rows (" + std::to_string(max_rows) + ")";
    } else if (check_bytes && held > max_bytes) {
      why = "it held about " + std::to_string(held) + " bytes of log rows, more than max_log_bytes (" +
            std::to_string(max_bytes) + ")";
    } else if (max_lag > 0 && has_lag && st.Int(2) > max_lag) {
      why = "its oldest unacked change was " + std::to_string(st.Int(2)) + " ms old, more than max_lag_ms (" +
            std::to_string(max_lag) + ")";
    } else if (idle > 0 && has_idle && st.Int(3) > idle) {
      why = "it had not read or acked for " + std::to_string(st.Int(3)) + " ms with changes pending, more than "
            "idle_timeout_ms (" + std::to_string(idle) + ")";
    }
    if (!why.empty()) lost.emplace_back(st.Text(0), why);
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
  st = Stmt();
  for (auto& [name, why] : lost) {
    Stmt mark;
    CDC_RETURN_IF_ERROR(mark.Prepare(db, kMarkSql));
    mark.Bind(1, name);
    mark.Bind(2, why);
    if (mark.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
    // It no longer holds the log back.
    Stmt mv;
    CDC_RETURN_IF_ERROR(mv.Prepare(db, kMoveSql));
    mv.Bind(1, name);
    if (mv.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
  }
  return Status();
}

void SqlConfig(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_config";
  std::string key;
  Status st = ArgText(fn, argv, 0, "key", &key);
  const Setting* s = st.ok() ? Find(key) : nullptr;
  if (st.ok() && !s) {
    st = Status::Error(std::string(fn) + ": unknown key " + Literal(key) +
                       " (keys: 'max_log_rows', 'max_log_bytes', 'max_lag_ms', 'idle_timeout_ms')");
  }
  int64_t value = 0;
  if (st.ok() && argc == 2) {
    const bool reset = sqlite3_value_type(argv[1]) == SQLITE_NULL;
    if (!reset) {
      if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || sqlite3_value_int64(argv[1]) < 0) {
        st = Status::Error(std::string(fn) + ": " + key + " must be an integer >= 0 (0: no limit) or NULL (the default)");
      }
    }
    if (st.ok()) st = RequireWritable(db, fn);
    if (st.ok()) {
      Savepoint sp(db, "cdc_config");
      st = sp.Begin();
      if (st.ok()) st = EnsureInternalTables(db);
      Stmt w;
      if (st.ok()) {
        st = w.Prepare(db, reset ? "DELETE FROM main.__cdc_meta WHERE key = ?1"
                                 : "INSERT OR REPLACE INTO main.__cdc_meta(key, value) VALUES(?1, ?2)");
      }
      if (st.ok()) {
        w.Bind(1, "retention." + key);
        if (!reset) w.Bind(2, sqlite3_value_int64(argv[1]));
        if (w.Step() != SQLITE_DONE) st = Status::FromDb(db, fn);
        w = Stmt();
      }
      // Without a byte limit, nothing keeps the byte count (Prune stops
      // measuring what it deletes); a new limit counts from scratch.
      if (st.ok() && s == &kSettings[kMaxLogBytes]) {
        st = Exec(db, "DELETE FROM main.__cdc_meta WHERE key >= 'log_bytes.' AND key < 'log_bytes/'");
      }
      if (st.ok()) st = EnforceRetention(db);
      if (st.ok()) st = sp.Release();
    }
  }
  if (st.ok()) st = GetSetting(db, *s, &value);
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, value);
}

}  // namespace cdc
