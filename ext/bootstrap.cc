// bootstrap.cc — cdc_bootstrap(table [, n]): snapshot existing rows into the log.
//
// A BOOTSTRAP marker event ("drop what you hold for this table, a snapshot
// follows") then one INSERT event per existing row, written into the log in
// the database's own transaction order. A consumer that applies events in id
// order therefore ends with exactly the table's contents, even when writes
// interleave with a chunked bootstrap: rows the snapshot has passed are kept
// current by their own change events; rows it has not reached yet are
// re-inserted with their value at the time their chunk is written.
//
// Chunked mode pages by key with a row-value comparison, (a, b) > (?, ?),
// which never skips rows of composite keys. The key and progress live in
// __cdc_bootstrap(tbl, marker, k0, k1, ...), so a chunked bootstrap resumes
// across connections and processes.
#include <algorithm>
#include <string>
#include <vector>

#include "capture.h"
#include "delivery.h"
#include "drift.h"

namespace cdc {

namespace {

struct Captured {
  int64_t shape = 0;
  TableInfo t;
};

Status LoadCaptured(sqlite3* db, const char* fn, const std::string& table, Captured* out) {
  const std::string not_captured =
      std::string(fn) + ": table " + Literal(table) + " is not captured (run SELECT cdc_setup(" +
      Literal(table) + ") first)";
  CDC_RETURN_IF_ERROR(InspectTable(db, fn, table, &out->t));
  bool exist = false;
  CDC_RETURN_IF_ERROR(InternalTablesExist(db, &exist));
  if (!exist) return Status::Error(not_captured);
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, "SELECT t.shape, s.columns, "
          "(SELECT count(*) FROM main.sqlite_schema AS m WHERE m.type = 'trigger' "
          "  AND m.tbl_name = t.name COLLATE NOCASE AND m.name IN "
          "  ('__cdc_' || t.id || '_insert', '__cdc_' || t.id || '_update', '__cdc_' || t.id || '_delete')) "
          "FROM main.__cdc_tables AS t JOIN main.__cdc_shapes AS s "
          "ON s.id = t.shape WHERE t.name = ?1"));
  st.Bind(1, out->t.name);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return Status::Error(not_captured);
  if (rc != SQLITE_ROW) return Status::FromDb(db, fn);
  out->shape = st.Int(0);
  if (st.Text(1) != ColumnsJson(out->t)) {
    return Status::Error(std::string(fn) + ": the columns of " + Literal(out->t.name) +
                         " changed since cdc_setup; run SELECT cdc_setup(" + Literal(out->t.name) +
                         ") again first");
  }
  // The table was dropped and created again (or a trigger dropped): a
  // snapshot now would be followed by changes nobody captures.
  if (st.Int(2) != 3) {
    return Status::Error(std::string(fn) + ": the capture triggers of " + Literal(out->t.name) +
                         " are missing; run SELECT cdc_setup(" + Literal(out->t.name) + ") again first");
  }
  return Status();
}

// Key expressions of the table in index order.
std::vector<std::string> KeyExprs(const TableInfo& t) {
  std::vector<std::string> k;
  if (t.without_rowid) {
    for (int i : t.pk) k.push_back(Ident(t.columns[static_cast<size_t>(i)]));
  } else {
    k.push_back(t.rowid);
  }
  return k;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + v[i];
  return s;
}

// Writes one INSERT event per row of "SELECT <cols> <tail>", with `binds`
// bound to ?1, ?2, ... of `tail`. Rows that fit in one log row are copied by
// a single INSERT ... SELECT (about twice as fast as stepping them through
// C++), unless `copy_ok` is false; wider rows are split into continuation
// rows one by one. (SQLite 3.40's INSERT ... SELECT drops the declared
// affinity of VIRTUAL generated columns: a REAL one copies 0 as 0, where
// SELECT gives 0.0. Tables with generated columns take the stepping path.)
Status WriteRows(sqlite3* db, const std::vector<std::string>& cols, const std::string& tail,
                 const std::vector<sqlite3_value*>& binds, int64_t shape, int width, bool copy_ok,
                 int64_t* written) {
  auto bind_all = [&](sqlite3_stmt* s) {
    for (size_t i = 0; i < binds.size(); i++) sqlite3_bind_value(s, static_cast<int>(i + 1), binds[i]);
  };
  int ncols = static_cast<int>(cols.size());
  *written = 0;
  if (ncols <= width && copy_ok) {
    std::string sql = "INSERT INTO main.__cdc_log(ts,shape,op";
    for (int i = 0; i < ncols; i++) sql += ",v" + std::to_string(i);
    sql += ") SELECT " + std::string(kNowMs) + "," + std::to_string(shape) + "," +
           std::to_string(kOpInsert) + "," + Join(cols) + " " + tail;
    Stmt ins;
    CDC_RETURN_IF_ERROR(ins.Prepare(db, sql));
    bind_all(ins.get());
    if (ins.Step() != SQLITE_DONE) return Status::FromDb(db, "cdc_bootstrap");
    *written = sqlite3_changes64(db);
    return Status();
  }
  Stmt sel;
  CDC_RETURN_IF_ERROR(sel.Prepare(db, "SELECT " + Join(cols) + " " + tail));
  bind_all(sel.get());
  sqlite3_stmt* s = sel.get();
  // One prepared INSERT per chunk of the row.
  std::vector<Stmt> ins;
  int chunks = (ncols + width - 1) / width;
  for (int c = 0; c < chunks; c++) {
    int n = std::min(width, ncols - c * width);
    bool final_chunk = c == chunks - 1;
    std::string sql = "INSERT INTO main.__cdc_log(ts,shape,op";
    for (int i = 0; i < n; i++) sql += ",v" + std::to_string(i);
    sql += ") VALUES(" + (final_chunk ? std::string("?1") : std::to_string(n)) + "," +
           std::to_string(shape) + "," + std::to_string(final_chunk ? kOpInsert : kOpCont);
    for (int i = 0; i < n; i++) sql += ",?" + std::to_string(i + 2);
    sql += ")";
    ins.emplace_back();
    CDC_RETURN_IF_ERROR(ins.back().Prepare(db, sql));
  }
  int64_t now = 0;
  CDC_RETURN_IF_ERROR(QueryInt(db, std::string("SELECT ") + kNowMs, &now));
  int rc;
  while ((rc = sel.Step()) == SQLITE_ROW) {
    for (int c = 0; c < chunks; c++) {
      Stmt& st = ins[static_cast<size_t>(c)];
      if (c == chunks - 1) st.Bind(1, now);
      int n = std::min(width, ncols - c * width);
      for (int i = 0; i < n; i++) sqlite3_bind_value(st.get(), i + 2, sqlite3_column_value(s, c * width + i));
      if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "cdc_bootstrap");
      sqlite3_reset(st.get());
    }
    ++*written;
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_bootstrap");
  return Status();
}

}  // namespace

Status ForgetBootstrapState(sqlite3* db, const std::string& table) {
  bool state = false;
  CDC_RETURN_IF_ERROR(TableExists(db, "__cdc_bootstrap", &state));
  if (!state) return Status();
  return Exec(db, "DELETE FROM main.__cdc_bootstrap WHERE tbl = " + Literal(table));
}

Status EnsureStateTable(sqlite3* db, size_t nkey) {
  CDC_RETURN_IF_ERROR(Exec(db, "CREATE TABLE IF NOT EXISTS main.__cdc_bootstrap(tbl TEXT PRIMARY KEY, reason TEXT, k0)"));
  CDC_RETURN_IF_ERROR(EnsureColumn(db, "__cdc_bootstrap", "reason", "TEXT"));  // made by an older version
  int64_t have = 0;
  CDC_RETURN_IF_ERROR(QueryInt(db, "SELECT count(*) - 2 FROM pragma_table_info('__cdc_bootstrap', 'main')", &have));
  std::string sql;
  for (size_t i = static_cast<size_t>(have); i < nkey; i++) {
    sql += "ALTER TABLE main.__cdc_bootstrap ADD COLUMN k" + std::to_string(i) + ";";
  }
  return sql.empty() ? Status() : Exec(db, sql);
}

namespace {

}  // namespace

Status WriteMarker(sqlite3* db, int op, int64_t shape, const std::string& reason) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "INSERT INTO main.__cdc_log(ts,shape,op,v0) VALUES(" + std::string(kNowMs) +
                                         ",?1,?2,?3)"));
  st.Bind(1, shape);
  st.Bind(2, op);
  if (reason.empty()) st.BindNull(3);
  else st.Bind(3, reason);
  if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "write marker");
  return Status();
}

Status Bootstrap(sqlite3* db, const char* fn, const std::string& table, int64_t chunk, const std::string& reason,
                 int64_t* written) {
  Savepoint sp(db, "cdc_bootstrap");
  CDC_RETURN_IF_ERROR(sp.Begin());
  Captured cap;
  CDC_RETURN_IF_ERROR(LoadCaptured(db, fn, table, &cap));
  const TableInfo& t = cap.t;
  int width = 0;
  CDC_RETURN_IF_ERROR(LogWidth(db, &width));
  std::vector<std::string> cols;
  for (auto& c : t.columns) cols.push_back(Ident(c));
  const bool copy_ok = std::find(t.generated.begin(), t.generated.end(), true) == t.generated.end();

  if (chunk <= 0) {  // everything at once
    // A full bootstrap supersedes a chunked one in progress.
    CDC_RETURN_IF_ERROR(ForgetBootstrapState(db, t.name));
    CDC_RETURN_IF_ERROR(WriteMarker(db, kOpBootstrap, cap.shape, reason));
    CDC_RETURN_IF_ERROR(WriteRows(db, cols, "FROM main." + Ident(t.name), {}, cap.shape, width, copy_ok, written));
    return sp.Release();
  }

  std::vector<std::string> key = KeyExprs(t);
  if (key.empty() || key[0].empty()) {
    return Status::Error(std::string(fn) + ": cannot page " + Literal(t.name) +
                         " by key: its rowid is shadowed by columns named rowid, _rowid_ and oid; "
                         "bootstrap it in one call");
  }
  CDC_RETURN_IF_ERROR(EnsureStateTable(db, key.size()));
  CDC_RETURN_IF_ERROR(sp.Arm());  // after the DDL of the state table
  std::vector<std::string> kcols;
  for (size_t i = 0; i < key.size(); i++) kcols.push_back("k" + std::to_string(i));
  Stmt state;
  CDC_RETURN_IF_ERROR(state.Prepare(db, "SELECT " + Join(kcols) + " FROM main.__cdc_bootstrap WHERE tbl = ?1"));
  state.Bind(1, t.name);
  int rc = state.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Status::FromDb(db, fn);
  bool started = rc == SQLITE_ROW;
  // The chunk: rows after the last key written (NULL k0: none written yet).
  std::string tail = "FROM main." + Ident(t.name);
  std::vector<sqlite3_value*> binds;
  if (started && !state.IsNull(0)) {
    std::string ph;
    for (size_t i = 0; i < key.size(); i++) {
      ph += (i ? "," : "") + std::string("?") + std::to_string(i + 1);
      binds.push_back(sqlite3_column_value(state.get(), static_cast<int>(i)));
    }
    tail += " WHERE (" + Join(key) + ") > (" + ph + ")";
  }
  tail += " ORDER BY " + Join(key);
  if (!started) {
    CDC_RETURN_IF_ERROR(WriteMarker(db, kOpBootstrap, cap.shape, reason));
    Stmt ins;
    CDC_RETURN_IF_ERROR(ins.Prepare(db, "INSERT INTO main.__cdc_bootstrap(tbl, reason) VALUES(?1, ?2)"));
    ins.Bind(1, t.name);
    if (reason.empty()) ins.BindNull(2);
    else ins.Bind(2, reason);
    if (ins.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
  }
  CDC_RETURN_IF_ERROR(WriteRows(db, cols, tail + " LIMIT " + std::to_string(chunk), binds, cap.shape, width, copy_ok, written));
  if (*written == 0) {
    state = Stmt();
    CDC_RETURN_IF_ERROR(Exec(db, "DELETE FROM main.__cdc_bootstrap WHERE tbl = " + Literal(t.name)));
    return sp.Release();
  }
  // Remember the chunk's last key.
  Stmt lastkey;
  CDC_RETURN_IF_ERROR(lastkey.Prepare(db, "SELECT " + Join(key) + " " + tail + " LIMIT 1 OFFSET " +
                                              std::to_string(*written - 1)));
  for (size_t i = 0; i < binds.size(); i++) sqlite3_bind_value(lastkey.get(), static_cast<int>(i + 1), binds[i]);
  if (lastkey.Step() != SQLITE_ROW) return Status::FromDb(db, fn);
  std::string set;
  for (size_t i = 0; i < key.size(); i++) set += (i ? "," : "") + kcols[i] + "=?" + std::to_string(i + 1);
  Stmt up;
  CDC_RETURN_IF_ERROR(up.Prepare(db, "UPDATE main.__cdc_bootstrap SET " + set + " WHERE tbl = ?" +
                                         std::to_string(key.size() + 1)));
  for (size_t i = 0; i < key.size(); i++) {
    sqlite3_bind_value(up.get(), static_cast<int>(i + 1), sqlite3_column_value(lastkey.get(), static_cast<int>(i)));
  }
  up.Bind(static_cast<int>(key.size() + 1), t.name);
  lastkey = Stmt();
  state = Stmt();
  if (up.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
  up = Stmt();
  return sp.Release();
}

void SqlBootstrap(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_bootstrap";
  std::string table;
  int64_t chunk = 0, written = 0;
  Status st = ArgText(fn, argv, 0, "table", &table);
  if (st.ok() && argc > 1) {
    st = ArgInt(fn, argv, 1, "chunk size", &chunk);
    if (st.ok() && chunk < 1) st = Status::Error("cdc_bootstrap: chunk size must be at least 1");
  }
  if (st.ok()) st = RequireWritable(db, fn);
  if (st.ok()) st = Bootstrap(db, fn, table, chunk, "", &written);
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, written);
}

}  // namespace cdc
