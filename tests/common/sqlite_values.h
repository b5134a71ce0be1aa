// sqlite_values.h — moving cdcjson::SqlValue in and out of SQLite statements,
// and dumping a table as typed rows, for the reliability tools.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "json_reader.h"

namespace cdcjson {

// TEXT as events carry it: JSON cannot hold bytes that are not UTF-8, so the
// extension writes U+FFFD for each such byte (docs/design-decisions.md). Table
// values are compared with replayed events in that form.
inline std::string AsEventText(const std::string& s) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; k++) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (ok && len > 1) {
      ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
             (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF);
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      i++;
    }
  }
  return out;
}

inline SqlValue ColumnValue(sqlite3_stmt* st, int i) {
  SqlValue v;
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: v.type = SqlValue::kInt; v.i = sqlite3_column_int64(st, i); break;
    case SQLITE_FLOAT: v.type = SqlValue::kReal; v.d = sqlite3_column_double(st, i); break;
    case SQLITE_TEXT: {
      v.type = SqlValue::kText;
      const char* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
      v.bytes = AsEventText(std::string(p, static_cast<size_t>(sqlite3_column_bytes(st, i))));
      break;
    }
    case SQLITE_BLOB: {
      v.type = SqlValue::kBlob;
      const char* p = static_cast<const char*>(sqlite3_column_blob(st, i));
      int n = sqlite3_column_bytes(st, i);
      if (n > 0) v.bytes.assign(p, static_cast<size_t>(n));
      break;
    }
    default: break;
  }
  return v;
}

inline int BindValue(sqlite3_stmt* st, int i, const SqlValue& v) {
  switch (v.type) {
    case SqlValue::kInt: return sqlite3_bind_int64(st, i, v.i);
    case SqlValue::kReal: return sqlite3_bind_double(st, i, v.d);
    case SqlValue::kText:
      return sqlite3_bind_text(st, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
    case SqlValue::kBlob:
      // An empty blob must stay a blob, not become NULL.
      if (v.bytes.empty()) return sqlite3_bind_zeroblob(st, i, 0);
      return sqlite3_bind_blob(st, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
    default: return sqlite3_bind_null(st, i);
  }
}

using Row = std::vector<SqlValue>;

// Every row of `sql` as typed values; false (with *err) on an SQL error.
inline bool QueryRows(sqlite3* db, const std::string& sql, std::vector<Row>* out, std::string* err) {
  sqlite3_stmt* st = nullptr;
  out->clear();
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    *err = sqlite3_errmsg(db);
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    Row r;
    for (int i = 0; i < sqlite3_column_count(st); i++) r.push_back(ColumnValue(st, i));
    out->push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) *err = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE;
}

inline std::string RowDebug(const Row& r) {
  std::string s = "(";
  for (size_t i = 0; i < r.size(); i++) s += (i ? ", " : "") + r[i].Debug();
  return s + ")";
}

}  // namespace cdcjson
