// testing.cc — see testing.h.
#include "testing.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace cdctest {

std::string ExtensionPath() {
  const char* e = getenv("CDC_EXTENSION");
  return e && *e ? e : CDC_EXTENSION;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/cdctest.XXXXXX";
  char* p = mkdtemp(tmpl);
  if (!p) abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) fprintf(stderr, "could not remove %s: %s\n", path_.c_str(), ec.message().c_str());
}

Db::Db(const std::string& path, bool load, int flags) {
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "open " << path << ": " << sqlite3_errmsg(db_);
    return;
  }
  sqlite3_busy_timeout(db_, 10000);
  if (load) {
    sqlite3_enable_load_extension(db_, 1);
    char* err = nullptr;
    if (sqlite3_load_extension(db_, ExtensionPath().c_str(), nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << "load extension: " << (err ? err : "?");
      sqlite3_free(err);
    }
  }
}

Db::~Db() {
  if (sqlite3_close(db_) != SQLITE_OK) {
    ADD_FAILURE() << "sqlite3_close failed: " << sqlite3_errmsg(db_);
    sqlite3_close_v2(db_);
  }
}

void Db::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    ADD_FAILURE() << "SQL failed: " << sql << "\n  error: " << (err ? err : "?");
  }
  sqlite3_free(err);
}

std::string Db::Error(const std::string& sql) {
  char* err = nullptr;
  std::string out;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    out = err ? err : "(no message)";
    if (out.empty()) out = "(empty message)";
  }
  sqlite3_free(err);
  return out;
}

std::vector<std::string> Db::Rows(const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "prepare: " << sql << "\n  error: " << sqlite3_errmsg(db_);
    return rows;
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    std::string row;
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      if (i) row += "|";
      const unsigned char* t = sqlite3_column_text(st, i);
      row += t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(st, i)) : "NULL";
    }
    rows.push_back(row);
  }
  if (rc != SQLITE_DONE) ADD_FAILURE() << "step: " << sql << "\n  error: " << sqlite3_errmsg(db_);
  sqlite3_finalize(st);
  return rows;
}

std::string Db::One(const std::string& sql) {
  auto rows = Rows(sql);
  if (rows.empty()) {
    ADD_FAILURE() << "no row: " << sql;
    return "";
  }
  return rows[0].substr(0, rows[0].find('|'));
}

bool Eventually(const std::function<bool()>& pred, int seconds) {
  for (int i = 0; i < seconds * 1000; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

std::string Shell(const std::string& db, const std::string& input, bool load) {
  TempDir tmp;
  std::string in = tmp.File("in.sql");
  {
    std::ofstream f(in);
    if (load) f << ".load " << ExtensionPath() << "\n";
    f << input;
  }
  // Under the sanitizers cdc.so is instrumented and the shell is not: the
  // Makefile passes the sanitizer runtime to preload into it.
  const char* preload = getenv("CDC_CHILD_PRELOAD");
  std::string cmd = (load && preload && *preload ? "LD_PRELOAD='" + std::string(preload) + "' " : std::string()) +
                    std::string(CDC_SQLITE3_SHELL) + " -batch '" + db + "' < '" + in + "' 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

}  // namespace cdctest
