// schema.h — the extension's internal tables and what it knows of a user table.
//
// Internal tables (all named __cdc_*, created by the first cdc_setup):
//
//   __cdc_tables(id INTEGER PRIMARY KEY, name TEXT UNIQUE, shape INTEGER)
//       captured tables; shape is the shape their triggers currently write.
//   __cdc_shapes(id INTEGER PRIMARY KEY, tbl TEXT, columns TEXT)
//       every column list ever captured (columns: JSON array of names). Log
//       rows name their shape, so old events decode after a schema change.
//   __cdc_log(id INTEGER PRIMARY KEY, ts INTEGER, shape INTEGER, op INTEGER,
//             v0, v1, ... )
//       the change log. Values are stored as plain, untyped columns (so every
//       value keeps its exact type and bytes); JSON is made by the reader.
//       An event's value sequence is its before image then its after image
//       (INSERT: after only; DELETE: before only). A sequence longer than the
//       log's width continues over rows with op = 0 (kOpCont) that precede the
//       event's row, in the same transaction; a continuation row's ts is the
//       number of values it carries. The event's id is its own row id.
//   __cdc_consumers(name TEXT PRIMARY KEY, pos INTEGER, ...) consumers.
//   __cdc_stage_<table id>   rows a REPLACE may delete (see capture.cc).
//   __cdc_meta(key TEXT PRIMARY KEY, value)  settings and facts of the
//       database: 'source_id' (random, made at the first setup; names the
//       database in sinks' dedupe ids).
//
// Change ids never repeat: __cdc_log has no AUTOINCREMENT (it costs 10-20% of
// insert throughput); instead pruning never deletes the newest log row, so
// max(id)+1 only ever grows.
#pragma once

#include <string>
#include <vector>

#include "util.h"

namespace cdc {

// Event kinds as stored in __cdc_log.op.
// kOpBootstrap and kOpDrop are markers (no images); their v0 holds a reason
// text when a schema change caused them (drift.cc), NULL for a requested
// cdc_bootstrap.
enum Op : int { kOpCont = 0, kOpInsert = 1, kOpUpdate = 2, kOpDelete = 3, kOpBootstrap = 4, kOpDrop = 5 };
const char* OpName(int op);

// Values one log row can hold, at most. Tables whose value sequence is longer
// spill into continuation rows. Widening the log is one ALTER TABLE ADD
// COLUMN per column, each reparsing the schema (quadratic: 1000 columns took
// 6 s), and every narrower table's rows pay a byte of padding per column; 256
// keeps a 100-column table's INSERT in one row (and its UPDATE in two).
constexpr int kMaxLogWidth = 256;

struct TableInfo {
  std::string name;                  // as stored in sqlite_schema
  bool without_rowid = false;
  std::vector<std::string> columns;  // what SELECT * returns, in order
  std::vector<bool> generated;       // per column: a generated column
  // Per column: its DEFAULT expression when it is NOT NULL (a REPLACE stores
  // that default where NULL is inserted), else empty.
  std::vector<std::string> replace_default;
  std::vector<int> pk;               // WITHOUT ROWID: primary key columns
  std::string rowid;                 // rowid tables: an unshadowed rowid name
  // UNIQUE constraints other than the primary key whose conflicts a REPLACE
  // resolves by deleting rows: column lists (not expressions).
  std::vector<std::vector<int>> uniques;
  std::vector<std::vector<std::string>> unique_colls;  // per uniques entry: collations
  // A UNIQUE index is partial or on a generated column: any UPDATE, not only
  // one that sets its columns, may make a row conflict.
  bool stage_every_update = false;
};

// Finds `name` in the main database and checks it can be captured: an
// ordinary table, not a view, virtual table, sqlite_* or __cdc_* table.
// Errors name `fn`.
Status InspectTable(sqlite3* db, const char* fn, const std::string& name, TableInfo* out);

bool IsInternalName(const std::string& name);
bool InternalTablesExist(sqlite3* db);  // false on an error too
// The same, reporting an error (out of memory, I/O) instead of "no".
Status InternalTablesExist(sqlite3* db, bool* exist);
Status EnsureInternalTables(sqlite3* db);
// Whether the main database has a table named exactly `name`.
Status TableExists(sqlite3* db, const std::string& name, bool* exists);
// Value of `key` in __cdc_meta as text ("" when absent or no such table).
Status MetaText(sqlite3* db, const std::string& key, std::string* out);
// Adds `column` (with declaration `decl`) to internal table `table` when a
// database made by an earlier version lacks it.
Status EnsureColumn(sqlite3* db, const std::string& table, const std::string& column, const std::string& decl);
// Number of value columns (v0..) __cdc_log has now.
Status LogWidth(sqlite3* db, int* width);
// Widens __cdc_log to at least `width` value columns.
Status WidenLog(sqlite3* db, int width);
// Current time in Unix milliseconds, as SQL (usable in triggers on 3.40).
extern const char kNowMs[];

}  // namespace cdc
