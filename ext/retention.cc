// retention.cc — see retention.h.
#include "retention.h"

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
constexpr Setting kSettings[] = {
    {"max_log_rows", 0},
    {"max_lag_ms", 7 * 24 * 3600 * 1000LL},
    {"idle_timeout_ms", 7 * 24 * 3600 * 1000LL},
};

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

}  // namespace

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

Status ClearLost(sqlite3* db, const std::string& name) {
  if (!MetaExists(db)) return Status();
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "DELETE FROM main.__cdc_meta WHERE key = 'lost.' || ?1"));
  st.Bind(1, name);
  if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "consumer");
  return Status();
}

Status EnforceRetention(sqlite3* db) {
  // Three statements per ack: this runs in every ack that moves a position.
  // Lost consumers never hold the log back: their positions follow the
  // newest change (reads of them fail before they use it). A database
  // without __cdc_meta (an earlier version's) has no settings and no marks.
  {
    Stmt follow;
    if (!follow.Prepare(db, "UPDATE main.__cdc_consumers SET pos = (SELECT coalesce(max(id), 0) FROM main.__cdc_log) "
                            "WHERE name IN (SELECT substr(key, 6) FROM main.__cdc_meta "
                            "WHERE key >= 'lost.' AND key < 'lost/')")
             .ok()) {
      return Status();
    }
    if (follow.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
  }
  int64_t max_rows = kSettings[0].def, max_lag = kSettings[1].def, idle = kSettings[2].def;
  {
    Stmt get;
    CDC_RETURN_IF_ERROR(get.Prepare(
        db, "SELECT key, value FROM main.__cdc_meta WHERE key >= 'retention.' AND key < 'retention/'"));
    int rc;
    while ((rc = get.Step()) == SQLITE_ROW) {
      const std::string key = get.Text(0).substr(10);
      if (get.IsNull(1)) continue;
      if (key == kSettings[0].key) max_rows = get.Int(1);
      else if (key == kSettings[1].key) max_lag = get.Int(1);
      else if (key == kSettings[2].key) idle = get.Int(1);
    }
    if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
  }
  if (max_rows <= 0 && max_lag <= 0 && idle <= 0) return Status();
  // Per live consumer with pending changes: ids it holds, age of its oldest
  // pending change, time since its last ack (or creation). Ids count rows
  // (continuation rows included): the log's ids have no gaps but pruned ones.
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, std::string("SELECT c.name, n.newest - c.pos, ") + kNowMs +
              " - (SELECT ts FROM main.__cdc_log WHERE id > c.pos AND op <> 0 ORDER BY id LIMIT 1), " + kNowMs +
              " - coalesce(c.acked_ms, c.created_ms) "
              "FROM main.__cdc_consumers AS c, (SELECT max(id) AS newest FROM main.__cdc_log) AS n "
              "WHERE n.newest > c.pos AND NOT EXISTS (SELECT 1 FROM main.__cdc_meta WHERE key = 'lost.' || c.name)"));
  std::vector<std::pair<std::string, std::string>> lost;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const int64_t rows = st.Int(1);
    const bool has_lag = !st.IsNull(2), has_idle = !st.IsNull(3);
    std::string why;
    if (max_rows > 0 && rows > max_rows) {
      why = "it held " + std::to_string(rows) + " log rows, more than max_log_rows (" + std::to_string(max_rows) + ")";
    } else if (max_lag > 0 && has_lag && st.Int(2) > max_lag) {
      why = "its oldest unacked change was " + std::to_string(st.Int(2)) + " ms old, more than max_lag_ms (" +
            std::to_string(max_lag) + ")";
    } else if (idle > 0 && has_idle && st.Int(3) > idle) {
      why = "it had not acked for " + std::to_string(st.Int(3)) + " ms with changes pending, more than "
            "idle_timeout_ms (" + std::to_string(idle) + ")";
    }
    if (!why.empty()) lost.emplace_back(st.Text(0), why);
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "retention");
  st = Stmt();
  for (auto& [name, why] : lost) {
    Stmt mark;
    CDC_RETURN_IF_ERROR(mark.Prepare(
        db, std::string("INSERT OR REPLACE INTO main.__cdc_meta(key, value) VALUES('lost.' || ?1, ?2 || ' (at ' || "
                        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') || ')')")));
    mark.Bind(1, name);
    mark.Bind(2, why);
    if (mark.Step() != SQLITE_DONE) return Status::FromDb(db, "retention");
    // It no longer holds the log back.
    Stmt mv;
    CDC_RETURN_IF_ERROR(mv.Prepare(
        db, "UPDATE main.__cdc_consumers SET pos = (SELECT coalesce(max(id), 0) FROM main.__cdc_log) WHERE name = ?1"));
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
                       " (keys: 'max_log_rows', 'max_lag_ms', 'idle_timeout_ms')");
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
      if (st.ok()) st = EnforceRetention(db);
      if (st.ok()) st = sp.Release();
    }
  }
  if (st.ok()) st = GetSetting(db, *s, &value);
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, value);
}

}  // namespace cdc
