// harness.h — what every fault test checks: connections with the real
// extension, a full dump of a database, and replaying the log onto a model of
// the captured tables.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "inject.h"
#include "json_reader.h"
#include "sqlite_values.h"

namespace faulttest {

// Fixed in every test run unless CDC_FAULTS_SEED says otherwise.
uint64_t Seed();
// Long campaign (make faults): every fault point instead of a sample, and
// CDC_FAULTS_SECONDS of randomized runs per campaign test.
bool Long();
// CDC_FAULTS_LIGHT=1 (make tsan): each loop of the suite tries the fewest
// fault points it can (the first, one inside, the last), and the I/O error
// loops fail each method once, not for good too. The main and ASan runs try
// the full suite sample; ThreadSanitizer looks for races, and these loops run
// the extension on one thread (the listener ops still start theirs).
bool Light();
double CampaignSeconds();

std::string ExtensionPath();

// A temporary directory, removed with its files.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Opens `path` (URI allowed) with the extension loaded; nullptr and *err on
// failure.
sqlite3* Open(const std::string& path, std::string* err, bool load = true);

// Runs SQL with no failures injected; "" or the error message.
std::string Exec(sqlite3* db, const std::string& sql);
// First column of the first row as text ("" for none/NULL); errors in *err.
std::string One(sqlite3* db, const std::string& sql, std::string* err = nullptr);

// Every table (internal ones included) with every row, and the schema
// without root pages: equal dumps mean equal databases.
std::string Dump(sqlite3* db);

// Replays every retained event (cdc_changes) onto empty models of `tables`
// (each has an integer column "id" that identifies its rows; a BOOTSTRAP
// marker empties the table's model) and compares each model with the table.
// "" when equal, else what differs.
std::string ReplayCheck(sqlite3* db, const std::vector<std::string>& tables);

// "ok", or what PRAGMA integrity_check says.
std::string Integrity(sqlite3* db);

void CopyDb(const std::string& from, const std::string& to);

}  // namespace faulttest
