// events.h — reading events back the way a consumer does, for the tests:
// through cdc_poll (or cdc_changes) and the strict JSON parser.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "strict_json.h"
#include "testing.h"

namespace cdctest {

struct Ev {
  int64_t id = 0;
  int64_t ts = 0;
  std::string table, op;
  std::string reason;               // markers caused by a schema change
  strictjson::Value before, after;  // kNull when absent
};

// First column of the first row, as raw bytes ("" and *is_null for NULL).
inline std::string Scalar(sqlite3* db, const std::string& sql, bool* is_null = nullptr) {
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "prepare: " << sql << ": " << sqlite3_errmsg(db);
    return out;
  }
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const void* p = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    if (is_null) *is_null = sqlite3_column_type(st, 0) == SQLITE_NULL;
    if (p) out.assign(static_cast<const char*>(p), static_cast<size_t>(n));
  } else if (rc != SQLITE_DONE) {
    ADD_FAILURE() << "step: " << sql << ": " << sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  return out;
}

inline std::vector<Ev> ParseEvents(const std::string& json) {
  std::vector<Ev> out;
  strictjson::Value arr;
  try {
    arr = strictjson::Parse(json);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what() << "\nin: " << json.substr(0, 2000);
    return out;
  }
  EXPECT_EQ(arr.kind, strictjson::Value::kArray);
  for (auto& v : arr.items) {
    Ev e;
    e.id = v["id"].i;
    e.ts = v["ts"].i;
    e.table = v["table"].s;
    e.op = v["op"].s;
    // A "reason" only on BOOTSTRAP and DROP markers that a schema change caused.
    bool marker = e.op == "BOOTSTRAP" || e.op == "DROP";
    bool has_reason = v.members.size() == 7u && marker && v["reason"].kind == strictjson::Value::kString;
    EXPECT_EQ(v.members.size(), has_reason ? 7u : 6u) << "event keys: id, ts, table, op, [reason,] before, after";
    if (has_reason) e.reason = v["reason"].s;
    e.before = v["before"];
    e.after = v["after"];
    out.push_back(std::move(e));
  }
  return out;
}

// Every unacked event of consumer `name` (added 'earliest' if missing),
// through cdc_poll, strictly parsed.
inline std::vector<Ev> PollAll(Db& db, const std::string& name = "audit") {
  db.Exec("SELECT cdc_consumer_add('" + name + "')");
  return ParseEvents(Scalar(db.get(), "SELECT cdc_poll('" + name + "', 1000000000)"));
}

// "INSERT,UPDATE,..." for a list of events.
inline std::string Ops(const std::vector<Ev>& evs) {
  std::string s;
  for (auto& e : evs) s += (s.empty() ? "" : ",") + e.op;
  return s;
}

// Compact canonical text of a parsed value: integers as written, reals with
// 17 significant digits, strings and keys JSON-quoted (only the quote and
// backslash escaped), objects in their order.
inline std::string Dump(const strictjson::Value& v) {
  using K = strictjson::Value;
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') o.push_back('\\');
      o.push_back(c);
    }
    return o + "\"";
  };
  switch (v.kind) {
    case K::kNull: return "null";
    case K::kBool: return v.b ? "true" : "false";
    case K::kInt: return std::to_string(v.i);
    case K::kReal: {
      char buf[40];
      snprintf(buf, sizeof buf, "%.17g", v.d);
      return std::string("R") + buf;
    }
    case K::kString: return q(v.s);
    case K::kArray: {
      std::string o = "[";
      for (size_t i = 0; i < v.items.size(); i++) o += (i ? "," : "") + Dump(v.items[i]);
      return o + "]";
    }
    case K::kObject: {
      std::string o = "{";
      for (size_t i = 0; i < v.members.size(); i++) {
        o += (i ? "," : "") + q(v.members[i].first) + ":" + Dump(v.members[i].second);
      }
      return o + "}";
    }
  }
  return "?";
}

// "OP before after" per event, e.g. "INSERT null {"id":1}".
inline std::vector<std::string> Describe(const std::vector<Ev>& evs) {
  std::vector<std::string> out;
  for (auto& e : evs) {
    out.push_back(e.table + " " + e.op + (e.reason.empty() ? "" : " (" + e.reason + ")") + " " + Dump(e.before) +
                  " " + Dump(e.after));
  }
  return out;
}

}  // namespace cdctest
