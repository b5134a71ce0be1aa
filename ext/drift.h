// drift.h — schema changes on captured tables: detection and healing
// (DESIGN §8). See drift.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "schema.h"

namespace cdc {

// What became of a captured table since its triggers were written.
enum class Drift {
  kIntact,              // triggers present, columns and constraints as captured
  kColumnsChanged,      // ADD / RENAME / DROP COLUMN since cdc_setup
  kConstraintsChanged,  // UNIQUE indexes changed: the REPLACE staging is out of date
  kTriggersMissing,     // the table was rebuilt, or dropped and created again
  kRenamed,             // ALTER TABLE RENAME: its triggers now sit on another table
  kDropped,             // gone for good
};
const char* DriftName(Drift d);

struct CapturedTable {
  int64_t id = 0;
  int64_t shape = 0;
  std::string name;     // as captured (__cdc_tables.name)
  std::string columns;  // the captured shape's column list (JSON)
  bool policy_error = false;  // on_schema_change = 'error' (default 'resync')
  Drift drift = Drift::kIntact;
  std::string renamed_to;  // kRenamed: the table's name now
  std::string detail;      // kIntact: ""; else what changed, in words
  bool resyncing = false;  // a resync's snapshot is still being written
};

// Classifies every captured table (only the one named `only` when not null).
Status ClassifyTables(sqlite3* db, const std::string* only, std::vector<CapturedTable>* out);

// Every reader of the log for a consumer calls this first. Cheap when the
// schema did not change since this connection last looked (PRAGMA
// schema_version); otherwise classifies the captured tables and heals the
// drifted ones (re-installs capture and starts a resync), or fails per the
// table's policy. Also advances a resync in progress by one chunk.
// `seen` is the caller's memory of what it checked (null: this connection's,
// kept until it closes).
struct SchemaSeen {
  int64_t schema_version = -1;
  bool resync_pending = false;
};
Status CheckCapture(sqlite3* db, const char* fn, SchemaSeen* seen = nullptr);

// Drops the connection's SchemaSeen (the connection is closing).
void ForgetConnection(sqlite3* db);

// cdc_setup's part, before it rewrites a table's triggers inside its
// savepoint: decides whether the refresh needs a resync (the schema change it
// repairs was committed, so other writers may have been logged with the old
// triggers, or not at all) and logs DROP events for captured tables that were
// renamed to `table`. *reason is empty when no resync is needed.
Status PrepareSetup(sqlite3* db, const char* fn, const std::string& table, std::string* reason);
// Writes the resync of `table`: a BOOTSTRAP marker carrying `reason`, then
// its rows, chunked (the first chunk now; readers write the rest).
Status StartResync(sqlite3* db, const char* fn, const std::string& table, const std::string& reason);

// bootstrap.cc
Status Bootstrap(sqlite3* db, const char* fn, const std::string& table, int64_t chunk,
                 const std::string& reason, int64_t* written);
Status WriteMarker(sqlite3* db, int op, int64_t shape, const std::string& reason);
// Forgets a chunked bootstrap or resync of `table` in progress, if any.
Status ForgetBootstrapState(sqlite3* db, const std::string& table);
// Creates or widens __cdc_bootstrap(tbl, reason, k0..k<nkey-1>).
Status EnsureStateTable(sqlite3* db, size_t nkey);

}  // namespace cdc
