#include "bench_util.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace cdcbench {

void Die(const std::string& what) {
  std::fprintf(stderr, "cdc_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string ExtensionPath() {
  const char* e = std::getenv("CDC_EXTENSION");
  return e && *e ? e : CDC_EXTENSION;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cdc_bench.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) Die("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Db::Db(const std::string& path, bool load) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    Die("open " + path + ": " + sqlite3_errmsg(db_));
  }
  if (load) {
    sqlite3_enable_load_extension(db_, 1);
    char* err = nullptr;
    if (sqlite3_load_extension(db_, ExtensionPath().c_str(), nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      Die("load extension " + ExtensionPath() + ": " + msg);
    }
  }
  Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
}

Db::~Db() { sqlite3_close_v2(db_); }

void Db::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    Die("exec failed: " + msg + "\n  in: " + sql.substr(0, 300));
  }
}

int64_t Db::Int(const std::string& sql) {
  Stmt st(db_, sql);
  if (sqlite3_step(st.get()) != SQLITE_ROW) Die("no row: " + sql);
  return sqlite3_column_int64(st.get(), 0);
}

Stmt::Stmt(sqlite3* db, const std::string& sql) : db_(db) {
  if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st_, nullptr) != SQLITE_OK) {
    Die("prepare: " + std::string(sqlite3_errmsg(db)) + "\n  in: " + sql.substr(0, 300));
  }
}

Stmt::~Stmt() { sqlite3_finalize(st_); }

void Stmt::Run() {
  int rc;
  while ((rc = sqlite3_step(st_)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) Die("step: " + std::string(sqlite3_errmsg(db_)));
  sqlite3_reset(st_);
}

std::vector<std::string> ColumnNames(int ncols) {
  std::vector<std::string> out{"id"};
  for (int i = 1; i < ncols; i++) out.push_back("c" + std::to_string(i));
  return out;
}

static const char* TypeOf(int i) {
  switch (i % 3) {
    case 1: return "INTEGER";
    case 2: return "REAL";
    default: return "TEXT";
  }
}

std::string CreateTableSql(const std::string& name, int ncols) {
  std::string sql = "CREATE TABLE \"" + name + "\"(id INTEGER PRIMARY KEY";
  for (int i = 1; i < ncols; i++) sql += ", c" + std::to_string(i) + " " + TypeOf(i);
  return sql + ")";
}

// A pool of short texts, made once, so binding a row costs little beside
// SQLite's own work (snprintf per value was a third of the baseline's
// instructions).
static const std::vector<std::string>& TextPool() {
  static const std::vector<std::string> pool = [] {
    static const char* kWords[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"};
    std::vector<std::string> p;
    for (unsigned i = 0; i < 1024; i++) {
      p.push_back(std::string(kWords[i % 8]) + "-" + kWords[(i / 8) % 8] + "-" + std::to_string(i * 7919u % 99991u));
    }
    return p;
  }();
  return pool;
}

void BindRow(sqlite3_stmt* st, int ncols, int64_t k, int first_param) {
  const auto& pool = TextPool();
  for (int i = 1; i < ncols; i++) {
    int p = first_param + i - 1;
    uint64_t h = static_cast<uint64_t>(k) * 2654435761u + static_cast<uint64_t>(i) * 40503u;
    switch (i % 3) {
      case 1: sqlite3_bind_int64(st, p, static_cast<int64_t>(h % 1000000007u)); break;
      case 2: sqlite3_bind_double(st, p, static_cast<double>(h % 100000u) / 7.0); break;
      default: {
        const std::string& t = pool[(h >> 7) % pool.size()];
        sqlite3_bind_text(st, p, t.data(), static_cast<int>(t.size()), SQLITE_STATIC);
      }
    }
  }
}

// json_object('a', P."a", ...) in chunks of 63 columns merged with json_patch,
// as the peer's sqlJsonObject builds it.
static std::string PeerJsonObject(const std::string& prefix, const std::vector<std::string>& cols) {
  const size_t chunk = 63;
  std::vector<std::string> objects;
  for (size_t start = 0; start < cols.size(); start += chunk) {
    std::string o = "json_object(";
    for (size_t i = start; i < std::min(cols.size(), start + chunk); i++) {
      if (i > start) o += ", ";
      o += "'" + cols[i] + "', " + prefix + "\"" + cols[i] + "\"";
    }
    objects.push_back(o + ")");
  }
  if (objects.size() == 1) return objects[0];
  std::string out;
  for (size_t i = 0; i + 1 < objects.size(); i++) out += "json_patch(" + objects[i] + ", ";
  out += objects.back();
  out += std::string(objects.size() - 1, ')');
  return out;
}

void InstallPeerStyle(Db& db, const std::string& table, int ncols) {
  const auto cols = ColumnNames(ncols);
  const std::string now = "strftime('%Y-%m-%d %H:%M:%f', 'now')";
  const std::string q = "\"" + table + "\"";
  std::string sql =
      "CREATE TABLE IF NOT EXISTS peer_log(id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, "
      "tablename TEXT NOT NULL, operation TEXT NOT NULL, before TEXT, after TEXT);\n";
  auto trig = [&](const char* op, const std::string& before, const std::string& after) {
    return "CREATE TRIGGER " + table + "__cdc_" + op + " AFTER " + op + " ON " + q +
           " BEGIN INSERT INTO peer_log(timestamp, tablename, operation, before, after) VALUES(" + now + ", '" +
           table + "', '" + op + "', " + before + ", " + after + "); END;\n";
  };
  sql += trig("INSERT", "NULL", PeerJsonObject("NEW.", cols));
  sql += trig("UPDATE", PeerJsonObject("OLD.", cols), PeerJsonObject("NEW.", cols));
  sql += trig("DELETE", PeerJsonObject("OLD.", cols), "NULL");
  db.Exec(sql);
}

void InstallConstantRowTriggers(Db& db, const std::string& table) {
  const std::string q = "\"" + table + "\"";
  std::string sql = "CREATE TABLE IF NOT EXISTS floor_log(id INTEGER PRIMARY KEY, ts INTEGER, shape INTEGER, op INTEGER);\n";
  int code = 1;
  for (const char* op : {"INSERT", "UPDATE", "DELETE"}) {
    sql += "CREATE TRIGGER " + table + "__floor_" + op + " AFTER " + op + " ON " + q +
           " BEGIN INSERT INTO floor_log(ts, shape, op) VALUES(0, 1, " + std::to_string(code++) + "); END;\n";
  }
  db.Exec(sql);
}

void InstallValuesOnlyTriggers(Db& db, const std::string& table, int ncols, bool clock) {
  const auto cols = ColumnNames(ncols);
  const std::string q = "\"" + table + "\"";
  std::string sql = "CREATE TABLE IF NOT EXISTS values_log(id INTEGER PRIMARY KEY, op INTEGER";
  if (clock) sql += ", ts INTEGER";
  for (int i = 0; i < 2 * ncols; i++) sql += ", v" + std::to_string(i);
  sql += ");\n";
  auto trig = [&](const char* op, int code, const std::vector<std::string>& prefixes) {
    std::string names = "op", vals = std::to_string(code);
    if (clock) {
      names += ",ts";
      vals += ",CAST((julianday()-2440587.5)*86400000 AS INTEGER)";
    }
    int k = 0;
    for (auto& p : prefixes) {
      for (auto& c : cols) {
        names += ",v" + std::to_string(k++);
        vals += "," + p + "\"" + c + "\"";
      }
    }
    return "CREATE TRIGGER " + table + "__values_" + op + " AFTER " + op + " ON " + q +
           " BEGIN INSERT INTO values_log(" + names + ") VALUES(" + vals + "); END;\n";
  };
  sql += trig("INSERT", 1, {"NEW."});
  sql += trig("UPDATE", 2, {"OLD.", "NEW."});
  sql += trig("DELETE", 3, {"OLD."});
  db.Exec(sql);
}

int64_t LastEventId(const char* json, int64_t* count) {
  int64_t last = 0, n = 0;
  for (const char* q = json; (q = std::strstr(q, "{\"id\":")) != nullptr;) {
    q += 6;
    char* end = nullptr;
    long long id = std::strtoll(q, &end, 10);
    if (std::strncmp(end, ",\"ts\":", 6) == 0) {
      last = id;
      n++;
    }
  }
  if (count) *count = n;
  return last;
}

int EnvInt(const char* name, int dflt) {
  const char* e = std::getenv(name);
  return e && *e ? std::atoi(e) : dflt;
}

bool QuickMode() {
  const char* e = std::getenv("CDC_BENCH_QUICK");
  return e && *e && std::strcmp(e, "0") != 0;
}

}  // namespace cdcbench
