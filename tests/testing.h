// testing.h — helpers shared by the GoogleTest suite: temporary databases,
// connections with the real extension loaded, and small query helpers.
#pragma once

#include <sqlite3.h>

#include <functional>
#include <string>
#include <vector>

namespace cdctest {

// Path of the built extension (CDC_EXTENSION env var, else compiled default).
std::string ExtensionPath();

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A connection; closes on destruction.
class Db {
 public:
  // Opens `path` (flags default: read-write, create, URI). Loads the
  // extension when `load` is true.
  explicit Db(const std::string& path, bool load = true,
              int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  sqlite3* get() const { return db_; }

  // Runs SQL; fails the test on error.
  void Exec(const std::string& sql);
  // Runs SQL and returns the error message, or "" when it succeeded.
  std::string Error(const std::string& sql);
  // First column of the first row as text ("NULL" for NULL); fails on error.
  std::string One(const std::string& sql);
  // Every row, columns joined with '|', NULL as "NULL".
  std::vector<std::string> Rows(const std::string& sql);

 private:
  sqlite3* db_ = nullptr;
};

// Polls `pred` every millisecond for up to `seconds`; whether it came true.
bool Eventually(const std::function<bool()>& pred, int seconds = 20);

// Runs the real sqlite3 shell on `db` with `input` on stdin; returns stdout+stderr.
std::string Shell(const std::string& db, const std::string& input, bool load = true);

}  // namespace cdctest
