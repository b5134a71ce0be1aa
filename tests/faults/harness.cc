// harness.cc — see harness.h.
#include "harness.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace faulttest {

uint64_t Seed() {
  const char* s = getenv("CDC_FAULTS_SEED");
  return s && *s ? strtoull(s, nullptr, 10) : 20261130;
}

bool Long() {
  const char* s = getenv("CDC_FAULTS_LONG");
  return s && *s && *s != '0';
}

bool Light() {
  const char* s = getenv("CDC_FAULTS_LIGHT");
  return !Long() && s && *s && *s != '0';
}

double CampaignSeconds() {
  const char* s = getenv("CDC_FAULTS_SECONDS");
  return s && *s ? atof(s) : 0;
}

std::string ExtensionPath() {
  const char* e = getenv("CDC_EXTENSION");
  return e && *e ? e : CDC_EXTENSION;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/cdcfaults.XXXXXX";
  char* p = mkdtemp(tmpl);
  if (!p) abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

sqlite3* Open(const std::string& path, std::string* err, bool load) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
  if (rc != SQLITE_OK) {
    *err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return nullptr;
  }
  if (load) {
    sqlite3_enable_load_extension(db, 1);
    char* e = nullptr;
    if (sqlite3_load_extension(db, ExtensionPath().c_str(), nullptr, &e) != SQLITE_OK) {
      *err = std::string("load extension: ") + (e ? e : "?");
      sqlite3_free(e);
      sqlite3_close(db);
      return nullptr;
    }
  }
  return db;
}

std::string Exec(sqlite3* db, const std::string& sql) {
  char* e = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &e) != SQLITE_OK) {
    std::string m = e ? e : sqlite3_errmsg(db);
    sqlite3_free(e);
    return m.empty() ? "error" : m;
  }
  return "";
}

std::string One(sqlite3* db, const std::string& sql, std::string* err) {
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    if (err) *err = sqlite3_errmsg(db);
    return out;
  }
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char* p = sqlite3_column_text(st, 0);
    if (p) out.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  } else if (rc != SQLITE_DONE && err) {
    *err = sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  return out;
}

std::string Dump(sqlite3* db) {
  std::ostringstream o;
  std::vector<cdcjson::Row> names, rows;
  std::string err;
  if (!cdcjson::QueryRows(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name", &names, &err)) {
    return "dump: " + err;
  }
  for (const auto& n : names) {
    const std::string& t = n[0].bytes;
    o << "table " << t << "\n";
    std::string q = "\"";
    for (char c : t) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    q += "\"";
    // The source id is random per database: compared by its length only.
    const std::string sel = t == "__cdc_meta" ? "SELECT key, CASE key WHEN 'source_id' THEN length(value) ELSE value END FROM "
                                              : "SELECT * FROM ";
    if (!cdcjson::QueryRows(db, sel + q, &rows, &err)) return "dump " + t + ": " + err;
    for (const auto& r : rows) o << "  " << cdcjson::RowDebug(r) << "\n";
  }
  if (!cdcjson::QueryRows(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name", &rows, &err)) {
    return "dump schema: " + err;
  }
  for (const auto& r : rows) o << "schema " << cdcjson::RowDebug(r) << "\n";
  return o.str();
}

namespace {

std::string Quote(const std::string& t) {
  std::string q = "\"";
  for (char c : t) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// An image's values in member order, and its "id".
bool ImageRow(const cdcjson::Json& img, cdcjson::Row* row, int64_t* id, std::string* why) {
  if (img.kind != cdcjson::Json::kObject) {
    *why = "image is not an object";
    return false;
  }
  bool have_id = false;
  for (const auto& m : img.members) {
    cdcjson::SqlValue v;
    if (!cdcjson::ToSqlValue(m.second, &v)) {
      *why = "bad value for " + m.first;
      return false;
    }
    if (m.first == "id" && v.type == cdcjson::SqlValue::kInt) {
      *id = v.i;
      have_id = true;
    }
    row->push_back(v);
  }
  if (!have_id) *why = "image without an integer id";
  return have_id;
}

}  // namespace

std::string ReplayCheck(sqlite3* db, const std::vector<std::string>& tables) {
  if (One(db, "SELECT count(*) FROM sqlite_schema WHERE name = '__cdc_log'") != "1") return "";
  std::map<std::string, std::map<int64_t, cdcjson::Row>> model;
  for (const auto& t : tables) model[t];
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT id, tbl, op, before, after FROM cdc_changes ORDER BY id", -1, &st, nullptr) !=
      SQLITE_OK) {
    return std::string("replay: ") + sqlite3_errmsg(db);
  }
  std::string problem;
  int rc;
  cdcjson::Reader reader;
  while (problem.empty() && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    std::string tbl = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    std::string op = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
    auto it = model.find(tbl);
    if (it == model.end()) continue;
    auto& rows = it->second;
    cdcjson::Json before, after;
    auto parse = [&](int col, cdcjson::Json* out) {
      const unsigned char* p = sqlite3_column_text(st, col);
      if (!p) return true;
      if (!reader.Parse(reinterpret_cast<const char*>(p), out)) {
        problem = "event " + std::to_string(id) + ": " + reader.error();
        return false;
      }
      return true;
    };
    if (!parse(3, &before) || !parse(4, &after)) break;
    std::string why;
    if (op == "BOOTSTRAP") {
      rows.clear();
      continue;
    }
    cdcjson::Row b, a;
    int64_t bid = 0, aid = 0;
    if (op == "UPDATE" || op == "DELETE") {
      if (!ImageRow(before, &b, &bid, &why)) {
        problem = "event " + std::to_string(id) + ": " + why;
        break;
      }
      auto r = rows.find(bid);
      if (r == rows.end()) {
        problem = "event " + std::to_string(id) + ": " + op + " of " + tbl + " id " + std::to_string(bid) +
                  " that the log never inserted";
        break;
      }
      if (r->second != b) {
        problem = "event " + std::to_string(id) + ": before image " + cdcjson::RowDebug(b) + " but the log had " +
                  cdcjson::RowDebug(r->second);
        break;
      }
      rows.erase(r);
    }
    if (op == "UPDATE" || op == "INSERT") {
      if (!ImageRow(after, &a, &aid, &why)) {
        problem = "event " + std::to_string(id) + ": " + why;
        break;
      }
      if (rows.count(aid)) {
        problem = "event " + std::to_string(id) + ": INSERT of " + tbl + " id " + std::to_string(aid) +
                  " that the log already has";
        break;
      }
      rows[aid] = a;
    }
  }
  if (problem.empty() && rc != SQLITE_DONE) problem = std::string("replay: cdc_changes: ") + sqlite3_errmsg(db);
  sqlite3_finalize(st);
  if (!problem.empty()) return problem;
  for (const auto& kv : model) {
    std::vector<cdcjson::Row> actual;
    std::string err;
    if (!cdcjson::QueryRows(db, "SELECT * FROM " + Quote(kv.first) + " ORDER BY id", &actual, &err)) {
      return "replay: " + err;
    }
    std::vector<cdcjson::Row> want;
    for (const auto& r : kv.second) want.push_back(r.second);
    if (actual.size() != want.size()) {
      return kv.first + ": the log replays to " + std::to_string(want.size()) + " rows, the table has " +
             std::to_string(actual.size());
    }
    for (size_t i = 0; i < want.size(); i++) {
      if (actual[i] != want[i]) {
        return kv.first + ": the log replays to " + cdcjson::RowDebug(want[i]) + ", the table has " +
               cdcjson::RowDebug(actual[i]);
      }
    }
  }
  return "";
}

std::string Integrity(sqlite3* db) {
  std::string err;
  std::string r = One(db, "PRAGMA integrity_check", &err);
  return err.empty() ? r : "integrity_check: " + err;
}

void CopyDb(const std::string& from, const std::string& to) {
  for (const char* sfx : {"", "-journal", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::remove(to + sfx, ec);
  }
  std::filesystem::copy_file(from, to);
}

}  // namespace faulttest
