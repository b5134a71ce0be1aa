// capture.h — cdc_setup / cdc_teardown and the triggers they install.
#pragma once

#include <string>
#include <vector>

#include "schema.h"

namespace cdc {

// The SQL (CREATE TRIGGER and CREATE TABLE statements) that captures `t`
// as table id `tid` writing shape `shape` into a log `width` values wide.
// Exposed for the fuzz target and tests.
std::string CaptureSql(const TableInfo& t, int64_t tid, int64_t shape, int width);
// The log width a table of `ncols` columns asks for.
int WantedLogWidth(size_t ncols);
// JSON array of the table's column names, as stored in __cdc_shapes.
std::string ColumnsJson(const TableInfo& t);
// A hash of CaptureSql's text, stored per table: drift.cc recomputes it to
// notice a constraint change that alters the triggers capture needs.
int64_t CaptureSig(const std::string& sql);
// Drops the triggers (and, with drop_stage, the REPLACE stage) of table id
// `tid`. A stage left behind is reused by the next setup of the id, or
// dropped by cdc_teardown().
Status DropTriggers(sqlite3* db, int64_t tid, bool drop_stage);

// Installs (or refreshes) capture of `table`. Must run inside a savepoint.
// `in_reader`: called by a reader healing a schema change (drift.cc), maybe
// while another statement of the connection reads: drops no table.
Status SetupTable(sqlite3* db, const char* fn, const std::string& table, bool in_reader = false);
// Removes capture of one table; its logged changes stay.
Status TeardownTable(sqlite3* db, const char* fn, const std::string& table);
// Removes every trigger and internal table.
Status TeardownAll(sqlite3* db);

void SqlSetup(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlTeardown(sqlite3_context* ctx, int argc, sqlite3_value** argv);

}  // namespace cdc
