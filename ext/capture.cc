// capture.cc — trigger-based capture.
//
// Each captured table gets AFTER INSERT / UPDATE / DELETE triggers, written in
// plain SQL (no extension function), so writers that never loaded the
// extension are captured too. A trigger appends one event to __cdc_log:
//
//   INSERT INTO __cdc_log(ts, shape, op, v0, v1, ...)
//        VALUES(<now in ms>, <shape>, <op>, NEW."a", NEW."b", ...);
//
// Values are stored as they are (no JSON in the trigger): this keeps every
// type exact, can never fail the user's write, and is the cheapest encoding
// measured (see bench/). Sequences longer than the log width go first into
// continuation rows (op 0).
//
// REPLACE conflicts. `INSERT OR REPLACE` / `UPDATE OR REPLACE` (or a column's
// ON CONFLICT REPLACE) delete the rows that conflict on a UNIQUE constraint,
// and SQLite fires no DELETE trigger for them unless recursive_triggers is
// on. For tables with UNIQUE constraints besides the primary key, a BEFORE
// trigger copies the rows that the new values would conflict with into
// __cdc_stage_<id>; the AFTER trigger logs a DELETE for each staged row that
// no longer exists, then the INSERT/UPDATE itself. With recursive_triggers on,
// the DELETE trigger fires for the replaced row and removes it from the stage,
// so it is logged once. A conflict on the primary key itself needs no DELETE
// event: the INSERT/UPDATE event carries the same key and replaces the row.
// Tables without extra UNIQUE constraints get no stage and pay nothing.
// Partial UNIQUE indexes and UNIQUE generated columns are staged by equality
// on their columns (a superset of the conflicts: only staged rows that
// really disappear are logged), with a BEFORE UPDATE on every column. UNIQUE
// indexes on expressions are not staged: a REPLACE deletion through one is
// captured only with recursive_triggers on.
#include "capture.h"

#include "drift.h"
#include "json.h"

namespace cdc {

namespace {

std::string TriggerPrefix(int64_t tid) { return "__cdc_" + std::to_string(tid) + "_"; }
std::string StageName(int64_t tid) { return "__cdc_stage_" + std::to_string(tid); }

std::vector<std::string> Row(const TableInfo& t, const std::string& prefix) {
  std::vector<std::string> out;
  out.reserve(t.columns.size());
  for (auto& c : t.columns) out.push_back(prefix + Ident(c));
  return out;
}

// One log row carrying vals[start, end), as an INSERT statement. `last`: the
// event's own row (ts = now, op = `op`); otherwise a continuation row (ts =
// the number of values it carries, op 0). With `from` empty the values are
// expressions (VALUES form); otherwise they are selected with `from`
// ("FROM ... WHERE ...").
std::string LogRow(const std::vector<std::string>& vals, size_t start, size_t end, bool last, int64_t shape,
                   int op, const std::string& from) {
  std::string sql = "INSERT INTO __cdc_log(ts,shape,op";
  for (size_t i = start; i < end; i++) sql += ",v" + std::to_string(i - start);
  sql += from.empty() ? ") VALUES(" : ") SELECT ";
  sql += (last ? std::string(kNowMs) : std::to_string(end - start)) + ",";
  sql += std::to_string(shape) + "," + std::to_string(last ? op : kOpCont);
  for (size_t i = start; i < end; i++) sql += "," + vals[i];
  return sql + (from.empty() ? ");\n" : " " + from + ";\n");
}

// Rows for vals[start, end) in chunks of `width`, continuation rows first;
// the final chunk is the event's row when `last`.
std::string LogChunks(const std::vector<std::string>& vals, size_t start, size_t end, size_t width, bool last,
                      int64_t shape, int op, const std::string& from) {
  std::string sql;
  const size_t final_start = end == start ? start : start + ((end - start - 1) / width) * width;
  for (size_t s = start; s <= final_start; s += width) {
    sql += LogRow(vals, s, std::min(end, s + width), last && s == final_start, shape, op, from);
    if (end == start) break;
  }
  return sql;
}

// Statements appending one event whose value sequence is `vals` (an UPDATE's:
// its before image, then its after image).
//
// No log row holds values of both images of an UPDATE. SQLite refuses a
// record larger than SQLITE_LIMIT_LENGTH ("string or blob too big"): the
// user's row fits it, so a log row holding one image of that row does too (up
// to the few bytes of ts, shape, op and padding, see docs/reliability.md "When capture can
// fail a write"), but a row holding both can be twice as large. Choosing the
// layout by size at run time costs more than the second row: a guard
// statement (sum of the text and blob lengths, INSERT ... SELECT ... WHERE)
// and the registers of three INSERTs in every trigger frame took a 6-column
// UPDATE from 19.1k to 34.3k instructions per row (callgrind,
// cdc_trigger_cost ours update_tx 6 2), the second row alone to about 22k.
std::string LogAppend(const std::vector<std::string>& vals, int width, int64_t shape, int op,
                      const std::string& from) {
  const size_t n = vals.size(), w = static_cast<size_t>(width);
  if (op != kOpUpdate) return LogChunks(vals, 0, n, w, true, shape, op, from);
  return LogChunks(vals, 0, n / 2, w, false, shape, op, from) + LogChunks(vals, n / 2, n, w, true, shape, op, from);
}

bool HasStage(const TableInfo& t) {
  return !t.uniques.empty() && (t.without_rowid ? !t.pk.empty() : !t.rowid.empty());
}

// "stage row `s` is the same table row as `row`" (row: "OLD." or the table).
// A rowid table's staged row keeps the table row's rowid as its own.
std::string KeyMatch(const TableInfo& t, const std::string& stage, const std::string& row) {
  if (!t.without_rowid) return stage + ".rowid = " + row + t.rowid;
  std::string l, r;
  for (size_t i = 0; i < t.pk.size(); i++) {
    if (i) { l += ","; r += ","; }
    l += stage + ".c" + std::to_string(t.pk[i]);
    r += row + Ident(t.columns[static_cast<size_t>(t.pk[i])]);
  }
  return "(" + l + ") = (" + r + ")";
}

// SQLite's limit on the columns of a table or a result set (SQLITE_MAX_COLUMN
// as Debian and most builds leave it).
constexpr size_t kMaxColumns = 2000;

// BEFORE trigger body: stage the rows NEW would conflict with.
std::string StageRows(const TableInfo& t, int64_t tid, bool is_update) {
  const std::string stage = StageName(tid);
  const std::string table = Ident(t.name);
  std::string cols, sel;
  for (size_t i = 0; i < t.columns.size(); i++) {
    cols += (i ? ",c" : "c") + std::to_string(i);
    sel += (i ? "," : "") + Ident(t.columns[i]);
  }
  std::string where = " WHERE (";
  for (size_t u = 0; u < t.uniques.size(); u++) {
    if (u) where += " OR ";
    where += "(";
    for (size_t j = 0; j < t.uniques[u].size(); j++) {
      const size_t c = static_cast<size_t>(t.uniques[u][j]);
      const std::string col = Ident(t.columns[c]);
      // A REPLACE stores a NOT NULL column's default where NULL is given.
      const std::string val = t.replace_default[c].empty()
                                  ? "NEW." + col
                                  : "coalesce(NEW." + col + ", (" + t.replace_default[c] + "))";
      if (j) where += " AND ";
      // Compare as the index does: with its collation, which may differ from
      // the column's.
      where += col + " COLLATE " + Ident(t.unique_colls[u][j]) + " = " + val;
    }
    where += ")";
  }
  where += ")";
  if (is_update) {
    if (!t.without_rowid) {
      where += " AND " + t.rowid + " <> OLD." + t.rowid;
    } else {
      std::string l, r;
      for (size_t i = 0; i < t.pk.size(); i++) {
        const std::string col = Ident(t.columns[static_cast<size_t>(t.pk[i])]);
        if (i) { l += ","; r += ","; }
        l += col;
        r += "OLD." + col;
      }
      where += " AND (" + l + ") <> (" + r + ")";
    }
  }
  std::string sql = "DELETE FROM " + stage + ";\n";
  if (t.without_rowid) {
    sql += "INSERT INTO " + stage + "(" + cols + ") SELECT " + sel + " FROM " + table + where + ";\n";
  } else if (t.columns.size() < kMaxColumns) {
    sql += "INSERT INTO " + stage + "(rowid," + cols + ") SELECT " + t.rowid + "," + sel + " FROM " +
           table + where + ";\n";
  } else {
    // rowid + every column would be one column too many for a result set:
    // stage the rowids, then fill the values in.
    sql += "INSERT INTO " + stage + "(rowid) SELECT " + t.rowid + " FROM " + table + where + ";\n";
    sql += "UPDATE " + stage + " SET (" + cols + ") = (SELECT " + sel + " FROM " + table +
           " AS r WHERE r." + t.rowid + " = " + stage + ".rowid);\n";
  }
  return sql;
}

// AFTER trigger prologue: log a DELETE for each staged row that is gone.
//
// The stage can hold rows from an earlier statement whose AFTER trigger never
// ran: an INSERT skipped by ON CONFLICT DO NOTHING / OR IGNORE, an UPDATE OR
// IGNORE that was ignored, all fire their BEFORE trigger. The AFTER UPDATE
// trigger of a statement that sets no UNIQUE column (so whose own BEFORE
// trigger did not refill the stage) then sees them. One of them may be the
// very row being updated, "gone" only because the update changed its key:
// it is excluded (a real REPLACE victim is never the updated row itself, see
// StageRows), otherwise a DELETE would be logged for a row that still exists.
std::string LogStagedDeletes(const TableInfo& t, int64_t tid, int width, int64_t shape, bool is_update) {
  std::string stage = StageName(tid);
  std::vector<std::string> vals;
  for (size_t i = 0; i < t.columns.size(); i++) vals.push_back("s.c" + std::to_string(i));
  // "staged row `a` is gone", the updated row itself excluded.
  auto gone = [&](const std::string& a) {
    return "NOT EXISTS (SELECT 1 FROM " + Ident(t.name) + " AS r WHERE " + KeyMatch(t, a, "r.") + ")" +
           (is_update ? " AND NOT " + KeyMatch(t, a, "OLD.") : std::string());
  };
  // The stage may hold rows that did not conflict (a partial index's WHERE
  // is not evaluated when staging): pick the first staged row that is gone.
  const std::string first = "(SELECT min(g.rowid) FROM " + stage + " AS g WHERE " + gone("g") + ")";
  const std::string from = "FROM " + stage + " AS s WHERE s.rowid = " + first;
  std::string sql;
  // A row conflicts with at most one row per UNIQUE constraint; one event at
  // a time keeps each DELETE's continuation rows together.
  for (size_t u = 0; u < t.uniques.size(); u++) {
    sql += LogAppend(vals, width, shape, kOpDelete, from);
    sql += "DELETE FROM " + stage + " WHERE rowid = " + first + ";\n";
  }
  return sql + "DELETE FROM " + stage + ";\n";
}

std::string Trigger(int64_t tid, const char* suffix, const std::string& when,
                    const TableInfo& t, const std::string& body) {
  return "CREATE TRIGGER main." + Ident(TriggerPrefix(tid) + suffix) + " " + when + " ON " +
         Ident(t.name) + " FOR EACH ROW BEGIN\n" + body + "END;\n";
}

}  // namespace

Status DropTriggers(sqlite3* db, int64_t tid, bool drop_stage) {
  const std::string prefix = TriggerPrefix(tid);
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, "SELECT name FROM main.sqlite_schema WHERE type = 'trigger' AND substr(name, 1, length(?1)) = ?1"));
  st.Bind(1, prefix);
  std::string sql;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) sql += "DROP TRIGGER main." + Ident(st.Text(0)) + ";";
  if (rc != SQLITE_DONE) return Status::FromDb(db, "drop triggers");
  st = Stmt();
  if (drop_stage) sql += "DROP TABLE IF EXISTS main." + Ident(StageName(tid)) + ";";
  return Exec(db, sql);
}

namespace {

// A captured table renamed with ALTER TABLE keeps its triggers (SQLite
// moves them along) under its old __cdc_tables entry. Setting the new name
// up must replace them, not add a second set (every change logged twice):
// drop every capture trigger on `table` that belongs to another table id,
// and that id's entry.
Status DropStaleCapture(sqlite3* db, const std::string& table, int64_t tid, bool drop_stage) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, "SELECT DISTINCT CAST(substr(name, 7) AS INTEGER) FROM main.sqlite_schema "
          "WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE AND substr(name, 1, 6) = '__cdc_'"));
  st.Bind(1, table);
  std::vector<int64_t> stale;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    if (st.Int(0) != tid) stale.push_back(st.Int(0));
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_setup");
  st = Stmt();
  for (int64_t old : stale) {
    CDC_RETURN_IF_ERROR(DropTriggers(db, old, drop_stage));
    CDC_RETURN_IF_ERROR(Exec(db, "DELETE FROM main.__cdc_tables WHERE id = " + std::to_string(old)));
  }
  return Status();
}

}  // namespace

int64_t CaptureSig(const std::string& sql) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : sql) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}

int WantedLogWidth(size_t ncols) {
  // One image per row (LogAppend): a row of the table's width. Every trigger
  // pays for the whole log row, not only the values it writes: SQLite gives
  // the trigger program a register per log column (its frame is allocated
  // and zeroed per row, from the lookaside only while it is small) and
  // encodes every padding NULL. Callgrind (bench/trigger_cost.cc), 20
  // columns, width 40 -> 20: INSERT and DELETE 15% fewer instructions per row.
  return static_cast<int>(std::min<size_t>(ncols, kMaxLogWidth));
}

std::string ColumnsJson(const TableInfo& t) {
  std::string out = "[";
  for (size_t i = 0; i < t.columns.size(); i++) {
    if (i) out += ",";
    JsonString(&out, t.columns[i]);
  }
  return out + "]";
}

std::string CaptureSql(const TableInfo& t, int64_t tid, int64_t shape, int width) {
  const bool stage = HasStage(t);
  std::vector<std::string> before = Row(t, "OLD."), after = Row(t, "NEW.");
  std::vector<std::string> both = before;
  both.insert(both.end(), after.begin(), after.end());
  std::string sql;
  if (stage) {
    sql += "CREATE TABLE IF NOT EXISTS main." + Ident(StageName(tid)) + "(";
    for (size_t i = 0; i < t.columns.size(); i++) sql += (i ? ",c" : "c") + std::to_string(i);
    sql += ");\n";
    sql += Trigger(tid, "before_insert", "BEFORE INSERT", t, StageRows(t, tid, false));
    std::string ucols;
    for (auto& u : t.uniques) {
      for (int c : u) ucols += (ucols.empty() ? "" : ",") + Ident(t.columns[static_cast<size_t>(c)]);
    }
    sql += Trigger(tid, "before_update", t.stage_every_update ? "BEFORE UPDATE" : "BEFORE UPDATE OF " + ucols, t,
                   StageRows(t, tid, true));
  }
  const std::string staged_ins = stage ? LogStagedDeletes(t, tid, width, shape, false) : "";
  const std::string staged_upd = stage ? LogStagedDeletes(t, tid, width, shape, true) : "";
  sql += Trigger(tid, "insert", "AFTER INSERT", t, staged_ins + LogAppend(after, width, shape, kOpInsert, ""));
  sql += Trigger(tid, "update", "AFTER UPDATE", t, staged_upd + LogAppend(both, width, shape, kOpUpdate, ""));
  std::string unstage;
  if (stage) unstage = "DELETE FROM " + StageName(tid) + " WHERE " + KeyMatch(t, StageName(tid), "OLD.") + ";\n";
  sql += Trigger(tid, "delete", "AFTER DELETE", t, unstage + LogAppend(before, width, shape, kOpDelete, ""));
  return sql;
}

Status SetupTable(sqlite3* db, const char* fn, const std::string& table, bool in_reader) {
  // The caller's Savepoint holds the write lock (BEGIN IMMEDIATE in
  // autocommit), so the schema read below cannot go stale before the
  // triggers are written.
  CDC_RETURN_IF_ERROR(EnsureInternalTables(db));
  TableInfo t;
  CDC_RETURN_IF_ERROR(InspectTable(db, fn, table, &t));

  // The shape: reuse the newest one with the same column list.
  const std::string cols = ColumnsJson(t);
  int64_t shape = 0;
  {
    Stmt st;
    CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT max(id) FROM main.__cdc_shapes WHERE tbl = ?1 AND columns = ?2"));
    st.Bind(1, t.name);
    st.Bind(2, cols);
    if (st.Step() != SQLITE_ROW) return Status::FromDb(db, fn);
    shape = st.Int(0);
  }
  if (shape == 0) {
    Stmt st;
    CDC_RETURN_IF_ERROR(st.Prepare(db, "INSERT INTO main.__cdc_shapes(tbl, columns) VALUES(?1, ?2)"));
    st.Bind(1, t.name);
    st.Bind(2, cols);
    if (st.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
    shape = sqlite3_last_insert_rowid(db);
  }
  int64_t tid = 0;
  {
    Stmt st;
    CDC_RETURN_IF_ERROR(st.Prepare(
        db, "INSERT INTO main.__cdc_tables(name, shape) VALUES(?1, ?2) "
            "ON CONFLICT(name) DO UPDATE SET shape = excluded.shape RETURNING id"));
    st.Bind(1, t.name);
    st.Bind(2, shape);
    if (st.Step() != SQLITE_ROW) return Status::FromDb(db, fn);
    tid = st.Int(0);
    if (st.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
  }
  int width = 0;
  CDC_RETURN_IF_ERROR(WidenLog(db, WantedLogWidth(t.columns.size())));
  CDC_RETURN_IF_ERROR(LogWidth(db, &width));
  // The table's REPLACE stage is kept and reused (widened below): DROP TABLE
  // fails with "database table is locked" while another statement of the
  // connection reads, as the cdc_changes scan that heals a schema change does.
  CDC_RETURN_IF_ERROR(DropTriggers(db, tid, false));
  CDC_RETURN_IF_ERROR(DropStaleCapture(db, t.name, tid, !in_reader));
  if (HasStage(t)) {
    const std::string stage = StageName(tid);
    bool exists = false;
    CDC_RETURN_IF_ERROR(TableExists(db, stage, &exists));
    for (size_t i = 0; exists && i < t.columns.size(); i++) {
      CDC_RETURN_IF_ERROR(EnsureColumn(db, stage, "c" + std::to_string(i), ""));
    }
  }
  const std::string sql = CaptureSql(t, tid, shape, width);
  Status st = Exec(db, sql);
  if (!st.ok()) return Status::Error(std::string(fn) + ": cannot install triggers: " + st.message());
  // What drift.cc compares the live schema with.
  CDC_RETURN_IF_ERROR(EnsureColumn(db, "__cdc_tables", "sig", "INTEGER"));
  CDC_RETURN_IF_ERROR(EnsureColumn(db, "__cdc_tables", "width", "INTEGER"));
  CDC_RETURN_IF_ERROR(EnsureColumn(db, "__cdc_tables", "policy", "TEXT"));
  Stmt up;
  CDC_RETURN_IF_ERROR(up.Prepare(db, "UPDATE main.__cdc_tables SET sig = ?1, width = ?2 WHERE id = ?3"));
  up.Bind(1, CaptureSig(sql));
  up.Bind(2, width);
  up.Bind(3, tid);
  if (up.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
  return Status();
}

Status TeardownTable(sqlite3* db, const char* fn, const std::string& table) {
  bool exist = false;
  CDC_RETURN_IF_ERROR(InternalTablesExist(db, &exist));
  if (!exist) {
    return Status::Error(std::string(fn) + ": table " + Literal(table) + " is not captured");
  }
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT id, name FROM main.__cdc_tables WHERE name = ?1 COLLATE NOCASE"));
  st.Bind(1, table);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return Status::Error(std::string(fn) + ": table " + Literal(table) + " is not captured");
  if (rc != SQLITE_ROW) return Status::FromDb(db, fn);
  int64_t tid = st.Int(0);
  const std::string name = st.Text(1);
  st = Stmt();
  // Capture of a table that no longer exists ends with a DROP event, so a
  // consumer drops its copy (drift.cc does the same when it heals).
  TableInfo gone;
  Status ins = InspectTable(db, fn, name, &gone);
  if (!ins.ok() && (ins.code() & 0xff) != SQLITE_ERROR) return ins;  // out of memory, I/O: not gone
  if (!ins.ok()) {
    int64_t shape = 0;
    CDC_RETURN_IF_ERROR(QueryInt(db, "SELECT shape FROM main.__cdc_tables WHERE id = " + std::to_string(tid), &shape));
    CDC_RETURN_IF_ERROR(WriteMarker(db, kOpDrop, shape, "dropped"));
  }
  CDC_RETURN_IF_ERROR(DropTriggers(db, tid, true));
  // Forget an unfinished chunked bootstrap: after a new cdc_setup, the next
  // cdc_bootstrap(table, n) must start over with its marker, not resume.
  CDC_RETURN_IF_ERROR(ForgetBootstrapState(db, name));
  return Exec(db, "DELETE FROM main.__cdc_tables WHERE id = " + std::to_string(tid));
}

Status TeardownAll(sqlite3* db) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, "SELECT type, name FROM main.sqlite_schema WHERE type IN ('trigger', 'table') "
          "AND substr(name, 1, 6) = '__cdc_' ORDER BY type = 'table'"));
  std::string sql;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    sql += (st.Text(0) == "trigger" ? "DROP TRIGGER main." : "DROP TABLE main.") + Ident(st.Text(1)) + ";";
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_teardown");
  st = Stmt();
  return Exec(db, sql);
}

namespace {

// cdc_setup's options: {"on_schema_change": "resync" | "error"}. *policy is
// left empty when the option is not given (a refresh keeps the table's).
Status ParseSetupOptions(sqlite3* db, sqlite3_value* v, std::string* policy) {
  const char* kUsage = " (e.g. '{\"on_schema_change\": \"error\"}')";
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    return Status::Error(std::string("cdc_setup: options must be JSON object text") + kUsage);
  }
  std::string text(reinterpret_cast<const char*>(sqlite3_value_text(v)),
                   static_cast<size_t>(sqlite3_value_bytes(v)));
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) = 'object' ELSE 0 END"));
  st.Bind(1, text);
  if (st.Step() != SQLITE_ROW) return Status::FromDb(db, "cdc_setup");
  if (st.Int(0) != 1) return Status::Error(std::string("cdc_setup: options must be a JSON object") + kUsage);
  st = Stmt();
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT key, type, atom FROM json_each(?1)"));
  st.Bind(1, text);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const std::string key = st.Text(0);
    if (key != "on_schema_change") {
      return Status::Error("cdc_setup: unknown option " + Literal(key) + "; the only option is on_schema_change");
    }
    const std::string value = st.Text(1) == "text" ? st.Text(2) : std::string();
    if (value != "resync" && value != "error") {
      return Status::Error("cdc_setup: on_schema_change must be 'resync' or 'error'");
    }
    *policy = value;
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_setup");
  return Status();
}

}  // namespace

void SqlSetup(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_setup";
  std::string table, policy;
  Status st = ArgText(fn, argv, 0, "table", &table);
  if (st.ok() && argc > 1) st = ParseSetupOptions(db, argv[1], &policy);
  if (st.ok()) st = RequireWritable(db, fn);
  if (st.ok()) {
    Savepoint sp(db, "cdc_setup");
    st = sp.Begin();
    if (st.ok()) st = EnsureInternalTables(db);
    // A refresh after a schema change that other writers may have been
    // logged across (or not logged at all) resyncs the table (drift.cc).
    std::string resync;
    if (st.ok()) st = PrepareSetup(db, fn, table, &resync);
    if (st.ok()) st = SetupTable(db, fn, table);
    if (st.ok() && !policy.empty()) {
      Stmt up;
      st = up.Prepare(db, "UPDATE main.__cdc_tables SET policy = ?1 WHERE name = ?2 COLLATE NOCASE");
      if (st.ok()) {
        up.Bind(1, policy);
        up.Bind(2, table);
        if (up.Step() != SQLITE_DONE) st = Status::FromDb(db, fn);
      }
    }
    if (st.ok() && !resync.empty()) {
      TableInfo t;
      st = InspectTable(db, fn, table, &t);
      if (st.ok()) st = StartResync(db, fn, t.name, resync);
    }
    if (st.ok()) st = sp.Release();
  }
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int(ctx, 1);
}

void SqlTeardown(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  std::string table;
  Status st;
  if (argc == 1) st = ArgText("cdc_teardown", argv, 0, "table", &table);
  if (st.ok()) st = RequireWritable(db, "cdc_teardown");
  if (st.ok()) {
    Savepoint sp(db, "cdc_teardown");
    st = sp.Begin();
    if (st.ok()) st = argc == 1 ? TeardownTable(db, "cdc_teardown", table) : TeardownAll(db);
    if (st.ok()) st = sp.Release();
  }
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int(ctx, 1);
}

}  // namespace cdc
