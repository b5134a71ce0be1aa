// bench_util.h — small helpers for the benchmarks: temp dirs, connections with
// the extension loaded and the benchmark pragmas, prepared statements, and the
// "peer-style" reference triggers.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace cdcbench {

[[noreturn]] void Die(const std::string& what);

// Path of the built extension: $CDC_EXTENSION, else the compiled default.
std::string ExtensionPath();

// A temporary directory (under $TMPDIR or /tmp), removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A connection to a file database with WAL, synchronous=NORMAL and the
// extension loaded.
class Db {
 public:
  explicit Db(const std::string& path, bool load = true);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  sqlite3* get() const { return db_; }
  void Exec(const std::string& sql);
  int64_t Int(const std::string& sql);

 private:
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  sqlite3_stmt* get() const { return st_; }
  // Steps to completion (SQLITE_DONE) and resets; dies on error.
  void Run();

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

// Column list of the benchmark tables: id INTEGER PRIMARY KEY then ncols-1
// columns c1.. cycling INTEGER, REAL, TEXT (no BLOBs: the peer design fails on
// them).
std::string CreateTableSql(const std::string& name, int ncols);
std::vector<std::string> ColumnNames(int ncols);
// Binds row `k`'s values to parameters 1..ncols-1 (columns c1..).
void BindRow(sqlite3_stmt* st, int ncols, int64_t k, int first_param = 1);

// Installs triggers that reproduce kevinconway/sqlite-cdc's design on `table`:
// an AUTOINCREMENT log with a text timestamp (strftime('%Y-%m-%d %H:%M:%f')),
// table and operation names as text, and before/after images as json_object
// with column names, in chunks of 63 columns merged with json_patch.
void InstallPeerStyle(Db& db, const std::string& table, int ncols);

// The least any trigger-based capture can do: an AFTER trigger per operation
// that writes a constant row (no values, no clock) into a 4-column log. Its
// ratio to no capture bounds from above what a row-writing trigger can reach.
void InstallConstantRowTriggers(Db& db, const std::string& table);

// The least a lossless trigger can do: one log row holding exactly the row's
// values and an op code, nothing else (no clock, no table or shape id, no
// function call). An INSERT writes NEW.* into v0.., a DELETE OLD.*, an UPDATE
// OLD.* then NEW.* in the same row; the log has 2 * ncols value columns.
// With `clock`, each row also gets the millisecond timestamp our triggers
// write (kNowMs in ext/schema.cc): the least a lossless trigger that keeps
// DESIGN §3's per-event ts can do. Any SQL function in a trigger makes
// SQLite open a statement journal for each UPDATE and DELETE inside a
// transaction (README, Performance): this variant shows that cost alone.
void InstallValuesOnlyTriggers(Db& db, const std::string& table, int ncols, bool clock = false);

inline double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Environment knobs: integer env var or default.
// Id of the last event in a cdc_poll array (0 for "[]"), and in *count (if
// given) how many events it holds. Events start {"id":N,"ts": (an image can
// also start with an "id" column, but not followed by "ts").
int64_t LastEventId(const char* json, int64_t* count = nullptr);

int EnvInt(const char* name, int dflt);
bool QuickMode();  // CDC_BENCH_QUICK set and not "0"

}  // namespace cdcbench
