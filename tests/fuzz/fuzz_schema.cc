// fuzz_schema.cc — libFuzzer target: capture of random schemas and rows.
//
// Each input builds a random CREATE TABLE (1-150 columns; names with quotes,
// spaces, dots, keywords, Unicode, rowid aliases; declared types; NOT NULL,
// UNIQUE, COLLATE, DEFAULT; composite PRIMARY KEYs, WITHOUT ROWID, STRICT;
// VIRTUAL and STORED generated columns; sometimes a second, narrower table
// captured first), then:
//   - cdc_setup must succeed for every table SQLite accepted (or fail with a
//     clean "cdc_setup: ..." error for the internal-table names it refuses):
//     the generated trigger SQL always compiles;
//   - random INSERT / INSERT OR REPLACE / OR IGNORE / upserts / UPDATE /
//     UPDATE OR REPLACE / DELETE statements with values of every type run
//     (constraint errors are fine) and after each one, the events polled are
//     replayed onto a model of the table: image keys must be exactly the
//     column names SELECT * returns, in order; a DELETE/UPDATE's before image
//     must be a row the table had; and the model must then equal the table,
//     value for value (types and bytes);
//   - sometimes ALTER TABLE ADD COLUMN + cdc_setup (old events still
//     decode), cdc_bootstrap (full or chunked) replayed the same way;
//   - sometimes DDL by a connection that does not refresh capture, with
//     legacy_alter_table on or off: ADD COLUMN, RENAME COLUMN, an ORM-style
//     rebuild (copy into a new table, drop, rename) or DROP + CREATE; the
//     next read must heal it with exactly one resync (a BOOTSTRAP marker with
//     a reason), after which the model again equals the table;
//   - cdc_status() is strict JSON; cdc_teardown() restores the schema.
// Any violation aborts (libFuzzer saves the input).
//
// The extension's sources are compiled into this binary and registered
// with sqlite3_auto_extension, which hands sqlite3_cdc_init the real API
// routines (the same pointer sqlite3_load_extension would pass).
#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "json_reader.h"
#include "sqlite_values.h"

extern "C" int sqlite3_cdc_init(sqlite3* db, char** err, const sqlite3_api_routines* api);

namespace {

using cdcjson::Json;
using cdcjson::Row;
using cdcjson::SqlValue;

[[noreturn]] void Fail(const std::string& what, const std::string& detail = "") {
  fprintf(stderr, "fuzz_schema: %s\n%s\n", what.c_str(), detail.c_str());
  abort();
}

std::string Q(const std::string& id) {
  std::string s = "\"";
  for (char c : id) {
    if (c == '"') s += '"';
    s += c;
  }
  return s + "\"";
}

const char* kNames[] = {"id",     "a",       "b",     "select", "index", "order", "group", "x y",   "a\"b",   "it's",
                        "[br]",   "`bt`",    "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xf0\x9f\x99\x82",
                        "a.b",    "rowid",   "oid",   "_rowid_", "ROWID", "",      " ",     "c-1",   "1abc",
                        "NULL",   "primary", "key",   "v0",      "ts",    "op",    "shape", "k",     "c0",
                        "new",    "old",     "OLD.x", "s",       "r",     "where", "$blob", "\\",    "tbl"};

std::string Name(FuzzedDataProvider& f) {
  if (f.ConsumeBool()) return kNames[f.ConsumeIntegralInRange<size_t>(0, sizeof kNames / sizeof *kNames - 1)];
  // Random valid UTF-8 (SQLite needs well-formed identifiers to compare).
  std::string s;
  int n = f.ConsumeIntegralInRange(0, 8);
  for (int i = 0; i < n; i++) {
    uint32_t cp = f.ConsumeIntegralInRange<uint32_t>(1, 0x2FFFF);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'q';
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return s;
}

std::string Utf8Text(FuzzedDataProvider& f, int maxlen) {
  static const char* pieces[] = {"a", " ", "'", "\"", "\\", "\n", "\x01", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                 "{", "null", "9e999", "\xef\xbf\xbd"};
  std::string s;
  int n = f.ConsumeIntegralInRange(0, maxlen);
  for (int i = 0; i < n; i++) {
    size_t k = f.ConsumeIntegralInRange<size_t>(0, sizeof pieces / sizeof *pieces);
    if (k == sizeof pieces / sizeof *pieces) s.push_back('\0');
    else s += pieces[k];
  }
  return s;
}

SqlValue Value(FuzzedDataProvider& f) {
  SqlValue v;
  switch (f.ConsumeIntegralInRange(0, 9)) {
    case 0: break;
    case 1: v.type = SqlValue::kInt; v.i = f.ConsumeIntegral<int64_t>(); break;
    case 2: v.type = SqlValue::kInt; v.i = f.ConsumeIntegralInRange<int64_t>(-3, 3); break;
    case 3: v.type = SqlValue::kReal; v.d = f.ConsumeFloatingPoint<double>(); break;
    case 4: {
      v.type = SqlValue::kReal;
      const double special[] = {0.1 + 0.2, -0.0, HUGE_VAL, -HUGE_VAL, NAN, 5e-324, 1.0, 1e300, 9007199254740993.0};
      v.d = special[f.ConsumeIntegralInRange<size_t>(0, 8)];
      break;
    }
    case 5: case 6: v.type = SqlValue::kText; v.bytes = Utf8Text(f, 10); break;
    case 7: v.type = SqlValue::kText; v.bytes = std::to_string(f.ConsumeIntegralInRange(-99, 99)); break;  // numeric text
    default: {
      v.type = SqlValue::kBlob;
      v.bytes = f.ConsumeBytesAsString(f.ConsumeIntegralInRange<size_t>(0, 12));
    }
  }
  return v;
}

struct Column {
  std::string name;
  bool generated = false;
};

struct Table {
  std::string name;
  std::vector<Column> cols;
  bool strict = false;
  bool without_rowid = false;
};

// Builds a random CREATE TABLE; returns false when the fuzz data ran out.
std::string CreateSql(FuzzedDataProvider& f, Table* t, int maxcols) {
  t->strict = f.ConsumeIntegralInRange(0, 5) == 0;
  int n = f.ConsumeIntegralInRange(1, maxcols);
  std::string sql = "CREATE TABLE " + Q(t->name) + "(";
  static const char* types[] = {"", "INTEGER", "INT", "TEXT", "REAL", "BLOB", "NUMERIC", "VARCHAR(5)", "ANY"};
  static const char* strict_types[] = {"INTEGER", "INT", "TEXT", "REAL", "BLOB", "ANY"};
  bool inline_pk = false;
  for (int i = 0; i < n; i++) {
    Column c;
    c.name = Name(f);
    if (f.ConsumeIntegralInRange(0, 3) == 0) c.name += std::to_string(i);  // fewer duplicate-name rejections
    std::string decl = Q(c.name) + " ";
    decl += t->strict ? strict_types[f.ConsumeIntegralInRange<size_t>(0, 5)] : types[f.ConsumeIntegralInRange<size_t>(0, 8)];
    int extra = f.ConsumeIntegralInRange(0, 12);
    if (extra == 0 && !inline_pk) {
      decl += " PRIMARY KEY";
      inline_pk = true;
    } else if (extra == 1) {
      decl += " UNIQUE";
    } else if (extra == 2) {
      decl += " NOT NULL";
    } else if (extra == 3) {
      decl += " COLLATE NOCASE";
    } else if (extra == 4) {
      // NOT NULL with a DEFAULT: INSERT OR REPLACE of NULL stores the default
      // (was a lost DELETE, fixed: Replace.NullIntoNotNullDefaultUnique).
      decl += f.ConsumeBool() ? " NOT NULL DEFAULT 'd'" : " COLLATE BINARY";
    } else if (extra == 5 && i > 0) {
      const std::string& src = t->cols[f.ConsumeIntegralInRange<size_t>(0, t->cols.size() - 1)].name;
      static const char* exprs[] = {"(%s || 'x')", "(%s + 1)", "typeof(%s)", "length(%s)", "(%s)", "42"};
      std::string e = exprs[f.ConsumeIntegralInRange(0, 5)];
      size_t at = e.find("%s");
      if (at != std::string::npos) e.replace(at, 2, Q(src));
      decl += " GENERATED ALWAYS AS " + (e[0] == '(' ? e : "(" + e + ")") + (f.ConsumeBool() ? " STORED" : " VIRTUAL");
      c.generated = true;
    }
    sql += (i ? ", " : "") + decl;
    t->cols.push_back(c);
  }
  int pk = inline_pk ? 0 : f.ConsumeIntegralInRange(0, 2);
  if (pk > 0) {
    int k = f.ConsumeIntegralInRange(1, std::min(3, n));
    sql += ", PRIMARY KEY(";
    for (int i = 0; i < k; i++) sql += (i ? ", " : "") + Q(t->cols[f.ConsumeIntegralInRange<size_t>(0, t->cols.size() - 1)].name);
    sql += ")";
  }
  if (f.ConsumeBool()) {
    int k = f.ConsumeIntegralInRange(1, std::min(2, n));
    sql += ", UNIQUE(";
    for (int i = 0; i < k; i++) sql += (i ? ", " : "") + Q(t->cols[f.ConsumeIntegralInRange<size_t>(0, t->cols.size() - 1)].name);
    sql += ")";
  }
  sql += ")";
  std::vector<std::string> opts;
  if ((pk > 0 || inline_pk) && f.ConsumeBool()) {
    opts.push_back("WITHOUT ROWID");
    t->without_rowid = true;
  }
  if (t->strict) opts.push_back("STRICT");
  for (size_t i = 0; i < opts.size(); i++) sql += (i ? ", " : " ") + opts[i];
  return sql;
}

class Harness {
 public:
  explicit Harness(sqlite3* db) : db_(db) {}

  int Exec(const std::string& sql, const std::vector<SqlValue>& vals = {}, std::vector<Row>* rows = nullptr,
           std::vector<std::string>* names = nullptr) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    prepared_ = rc == SQLITE_OK;
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < vals.size(); i++) cdcjson::BindValue(st, static_cast<int>(i + 1), vals[i]);
    if (names) {
      names->clear();
      for (int i = 0; i < sqlite3_column_count(st); i++) names->push_back(sqlite3_column_name(st, i));
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (!rows) continue;
      Row r;
      for (int i = 0; i < sqlite3_column_count(st); i++) r.push_back(cdcjson::ColumnValue(st, i));
      rows->push_back(std::move(r));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  bool prepared() const { return prepared_; }
  void Must(const std::string& sql, const std::vector<SqlValue>& vals = {}, std::vector<Row>* rows = nullptr) {
    if (Exec(sql, vals, rows) != SQLITE_OK) Fail("statement failed: " + sql, sqlite3_errmsg(db_));
  }
  std::string Text(const std::string& sql, const std::vector<SqlValue>& vals = {}) {
    std::vector<Row> rows;
    Must(sql, vals, &rows);
    if (rows.empty() || rows[0].empty()) Fail("no result: " + sql);
    return rows[0][0].bytes;
  }

  // The table as SELECT * returns it, and its column names.
  std::vector<Row> Snapshot(const std::string& table, std::vector<std::string>* names) {
    std::vector<Row> rows;
    if (Exec("SELECT * FROM " + Q(table), {}, &rows, names) != SQLITE_OK) Fail("snapshot", sqlite3_errmsg(db_));
    return rows;
  }

  // Polls every new event and replays it onto model[table].
  int resyncs_ = 0;  // BOOTSTRAP markers with a reason Replay met
  void Replay(const std::string& table, std::vector<Row>* model, const std::vector<std::string>& names) {
    for (;;) {
      std::string batch = Text("SELECT cdc_poll('c', 1000)");
      Json arr;
      cdcjson::Reader rd;
      if (!rd.Parse(batch, &arr) || arr.kind != Json::kArray) Fail("cdc_poll is not strict JSON: " + rd.error(), batch);
      if (arr.items.empty()) return;
      if (getenv("FUZZ_SCHEMA_TRACE")) fprintf(stderr, "TRACE events %s\n", batch.c_str());
      int64_t last = 0;
      for (const Json& e : arr.items) {
        int64_t id = e.Get("id")->i;
        if (id <= last_id_) Fail("ids not increasing", batch);
        last_id_ = last = id;
        if (e.Get("table")->s != table) continue;  // the other table's events: not modelled
        const std::string& op = e.Get("op")->s;
        if (op == "BOOTSTRAP") {
          model->clear();
          resyncs_ += e.Get("reason") != nullptr;
          continue;
        }
        if (op == "UPDATE" || op == "DELETE") {
          Row before = Image(e.Get("before"), names, batch);
          auto it = std::find(model->begin(), model->end(), before);
          if (it == model->end()) Fail(op + " of a row the table did not have: " + cdcjson::RowDebug(before), batch);
          model->erase(it);
        }
        if (op == "UPDATE" || op == "INSERT") {
          // INSERT / UPDATE events replace the row with the same primary key
          // (a REPLACE on the key itself logs no DELETE, by design): drop
          // model rows whose key SQLite considers equal.
          Row after = Image(e.Get("after"), names, batch);
          for (size_t i = 0; i < model->size();) {
            if (SameKey((*model)[i], after)) model->erase(model->begin() + static_cast<long>(i));
            else i++;
          }
          model->push_back(std::move(after));
        }
      }
      Must("SELECT cdc_ack('c', ?1)", {Int(last)});
    }
  }

  // The primary key's columns and collations (none: no key to replace by).
  void LoadKey(const std::string& table) {
    key_.clear();
    std::vector<Row> rows;
    std::vector<SqlValue> arg(1);
    arg[0].type = SqlValue::kText;
    arg[0].bytes = table;
    Must("SELECT x.cid, x.coll FROM pragma_index_list(?1) AS l, pragma_index_xinfo(l.name) AS x "
         "WHERE l.origin = 'pk' AND x.key ORDER BY x.seqno", arg, &rows);
    for (auto& r : rows) key_.emplace_back(static_cast<size_t>(r[0].i), r[1].bytes);
    if (!key_.empty()) return;
    // A rowid alias (INTEGER PRIMARY KEY) has no index.
    Must("SELECT cid FROM pragma_table_xinfo(?1) WHERE pk = 1 AND upper(type) = 'INTEGER' "
         "AND (SELECT count(*) FROM pragma_table_xinfo(?1) WHERE pk > 0) = 1", arg, &rows);
    for (auto& r : rows) key_.emplace_back(static_cast<size_t>(r[0].i), "BINARY");
  }
  const std::vector<std::pair<size_t, std::string>>& key() const { return key_; }
  bool SameKey(const Row& a, const Row& b) {
    if (key_.empty()) return false;
    for (auto& k : key_) {
      std::vector<Row> rows;
      Must("SELECT ?1 = ?2 COLLATE \"" + k.second + "\"", {a[k.first], b[k.first]}, &rows);
      if (rows[0][0].type != SqlValue::kInt || rows[0][0].i != 1) return false;
    }
    return true;
  }

  static SqlValue Int(int64_t i) {
    SqlValue v;
    v.type = SqlValue::kInt;
    v.i = i;
    return v;
  }

  Row Image(const Json* img, const std::vector<std::string>& names, const std::string& ctx) {
    if (!img || img->kind != Json::kObject) Fail("image is not an object", ctx);
    if (img->members.size() != names.size()) Fail("image keys != columns", ctx);
    Row r;
    for (size_t i = 0; i < names.size(); i++) {
      if (img->members[i].first != names[i]) Fail("image key '" + img->members[i].first + "' != column '" + names[i] + "'", ctx);
      SqlValue v;
      if (!cdcjson::ToSqlValue(img->members[i].second, &v)) Fail("undecodable value", ctx);
      r.push_back(v);
    }
    return r;
  }

 private:
  sqlite3* db_;
  int64_t last_id_ = 0;
  bool prepared_ = false;
  std::vector<std::pair<size_t, std::string>> key_;  // (column index, collation)
};

// KNOWN LIMIT (reported, needs a contract decision): TEXT that is not valid
// UTF-8 (e.g. a generated column concatenating a BLOB) cannot travel in a
// JSON string; the extension writes U+FFFD for each byte that does not start
// a valid sequence (ext/json.cc). The table side is compared after the same
// substitution, so everything else keeps being checked exactly.
std::string AsJsonText(const std::string& in) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : len == 4 ? c & 0x07 : c;
    bool ok = len > 0 && len <= n - i;
    for (size_t k = 1; ok && k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) {
      ok = false;
    }
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      i++;
    }
  }
  return out;
}

std::vector<Row> AsEvents(std::vector<Row> rows) {
  for (Row& r : rows)
    for (SqlValue& v : r)
      if (v.type == SqlValue::kText) v.bytes = AsJsonText(v.bytes);
  return rows;
}

bool SameRows(std::vector<Row> a, std::vector<Row> b) {
  if (a.size() != b.size()) return false;
  // Multiset equality without an order on values: match one by one.
  for (const Row& r : a) {
    auto it = std::find(b.begin(), b.end(), r);
    if (it == b.end()) return false;
    b.erase(it);
  }
  return true;
}

void RunOne(FuzzedDataProvider& f) {
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) Fail("open");
  Harness h(db);
  {
    // A narrower table captured first makes the log narrower than the
    // fuzzed table when it is created with many columns afterwards.
    if (f.ConsumeBool()) {
      h.Must("CREATE TABLE side(a, b)");
      h.Must("SELECT cdc_setup('side')");
    }
    Table t;
    t.name = Name(f);
    std::string create = CreateSql(f, &t, f.ConsumeIntegralInRange(0, 7) == 0 ? 150 : 8);
    if (h.Exec(create) != SQLITE_OK) {  // SQLite refused the schema: nothing to capture
      sqlite3_close(db);
      return;
    }
    std::vector<SqlValue> arg(1);
    arg[0].type = SqlValue::kText;
    arg[0].bytes = t.name;
    int rc = h.Exec("SELECT cdc_setup(?1)", arg);
    // Refused with a clean error: internal names, and the empty name (SQLite
    // accepts CREATE TABLE "", cdc_* functions reject empty arguments).
    bool internal = strncasecmp(t.name.c_str(), "__cdc_", 6) == 0 || t.name.empty();
    if (rc != SQLITE_OK) {
      std::string msg = sqlite3_errmsg(db);
      if (!internal || msg.rfind("cdc_setup: ", 0) != 0) Fail("cdc_setup failed on a valid table: " + msg, create);
      sqlite3_close(db);
      return;
    }
    if (internal) Fail("cdc_setup accepted an internal name", create);
    if (h.Exec("SELECT cdc_consumer_add('c')") != SQLITE_OK) Fail("consumer_add", sqlite3_errmsg(db));

    std::vector<std::string> names;
    std::vector<Row> model = h.Snapshot(t.name, &names);
    h.LoadKey(t.name);
    int nops = f.ConsumeIntegralInRange(1, 25);
    for (int op = 0; op < nops && f.remaining_bytes() > 0; op++) {
      std::vector<Column> settable;
      for (auto& c : t.cols)
        if (!c.generated) settable.push_back(c);
      std::vector<Row> before = h.Snapshot(t.name, &names);
      std::vector<SqlValue> vals;
      std::string sql;
      int kind = f.ConsumeIntegralInRange(0, 9);
      // Values often come from existing rows, so that UNIQUE and key
      // conflicts (REPLACE, IGNORE, DO NOTHING, key changes) are common.
      auto pick = [&](size_t col) {
        if (!before.empty() && col < names.size() && f.ConsumeIntegralInRange(0, 2) == 0) {
          return before[f.ConsumeIntegralInRange<size_t>(0, before.size() - 1)][col];
        }
        return Value(f);
      };
      std::vector<size_t> settable_idx;
      for (size_t i = 0; i < t.cols.size(); i++)
        if (!t.cols[i].generated) settable_idx.push_back(i);
      if (kind <= 3 && !settable.empty()) {
        static const char* verbs[] = {"INSERT INTO", "INSERT OR REPLACE INTO", "INSERT OR IGNORE INTO", "REPLACE INTO"};
        sql = std::string(verbs[kind]) + " " + Q(t.name) + "(";
        std::string ph;
        for (size_t i = 0; i < settable.size(); i++) {
          sql += (i ? "," : "") + Q(settable[i].name);
          ph += (i ? ",?" : "?") + std::to_string(i + 1);
          vals.push_back(pick(settable_idx[i]));
        }
        sql += ") VALUES(" + ph + ")";
        if (kind == 0 && f.ConsumeBool()) sql += f.ConsumeBool() ? " ON CONFLICT DO NOTHING" : " ON CONFLICT DO UPDATE SET " + Q(settable[0].name) + " = excluded." + Q(settable[0].name);
      } else if (kind <= 6 && !settable.empty()) {
        size_t si = f.ConsumeIntegralInRange<size_t>(0, settable.size() - 1);
        if (!h.key().empty() && f.ConsumeBool()) {  // often change a key column
          size_t kc = h.key()[f.ConsumeIntegralInRange<size_t>(0, h.key().size() - 1)].first;
          for (size_t i = 0; i < settable_idx.size(); i++)
            if (settable_idx[i] == kc) si = i;
        }
        const Column& c = settable[si];
        static const char* verbs[] = {"UPDATE ", "UPDATE OR IGNORE ", "UPDATE OR REPLACE "};
        sql = std::string(verbs[kind - 4]) + Q(t.name) + " SET " + Q(c.name) + " = ?1";
        vals.push_back(pick(settable_idx[si]));
        if (!before.empty()) {
          size_t r = f.ConsumeIntegralInRange<size_t>(0, before.size() - 1);
          size_t col = f.ConsumeIntegralInRange<size_t>(0, names.size() - 1);
          sql += " WHERE " + Q(names[col]) + " IS ?2";
          vals.push_back(before[r][col]);
        }
      } else if (kind <= 8 && !before.empty()) {
        size_t r = f.ConsumeIntegralInRange<size_t>(0, before.size() - 1);
        size_t col = f.ConsumeIntegralInRange<size_t>(0, names.size() - 1);
        sql = "DELETE FROM " + Q(t.name) + " WHERE " + Q(names[col]) + " IS ?1";
        vals.push_back(before[r][col]);
      } else if (f.ConsumeIntegralInRange(0, 2) == 0) {
        // DDL that nobody follows with cdc_setup (another application, an
        // ORM): the next read heals it with one resync.
        h.Replay(t.name, &model, names);
        h.Must(f.ConsumeBool() ? "PRAGMA legacy_alter_table=ON" : "PRAGMA legacy_alter_table=OFF");
        std::vector<Row> sqlrow;
        h.Must("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1", arg, &sqlrow);
        std::string ddl_sql = sqlrow.empty() ? "" : sqlrow[0][0].bytes;
        std::string body = ddl_sql.substr(std::min(ddl_sql.size(), ddl_sql.find('(')));
        std::string settable_cols;
        for (auto& c : t.cols)
          if (!c.generated) settable_cols += (settable_cols.empty() ? "" : ",") + Q(c.name);
        std::string ddl;
        bool changed = false;
        int what = f.ConsumeIntegralInRange(0, 3);
        if (what == 0) {
          std::string col = Name(f) + "_x";
          ddl = "ALTER TABLE " + Q(t.name) + " ADD COLUMN " + Q(col);
          if ((changed = h.Exec(ddl) == SQLITE_OK)) t.cols.push_back(Column{col, false});
        } else if (what == 1 && !t.cols.empty()) {
          size_t i = f.ConsumeIntegralInRange<size_t>(0, t.cols.size() - 1);
          std::string to = t.cols[i].name + "_r";
          ddl = "ALTER TABLE " + Q(t.name) + " RENAME COLUMN " + Q(t.cols[i].name) + " TO " + Q(to);
          if ((changed = h.Exec(ddl) == SQLITE_OK)) t.cols[i].name = to;
        } else if (!body.empty() && !settable_cols.empty()) {
          // The rebuild (what == 2) or DROP + CREATE (what == 3), in one
          // transaction, as migration tools run them.
          const std::string tmp = Q(t.name + "_new");
          ddl = "BEGIN; CREATE TABLE " + tmp + body + ";";
          if (what == 2) {
            ddl += "INSERT INTO " + tmp + "(" + settable_cols + ") SELECT " + settable_cols + " FROM " + Q(t.name) + ";";
          }
          ddl += "DROP TABLE " + Q(t.name) + "; ALTER TABLE " + tmp + " RENAME TO " + Q(t.name) + "; COMMIT;";
          // (Exec runs one statement: the script goes through sqlite3_exec.)
          changed = sqlite3_exec(db, ddl.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
          if (!sqlite3_get_autocommit(db)) h.Must("ROLLBACK");
        }
        h.Must("PRAGMA legacy_alter_table=OFF");
        if (getenv("FUZZ_SCHEMA_TRACE")) fprintf(stderr, "TRACE ddl %d %s\n", changed ? 1 : 0, ddl.c_str());
        h.Snapshot(t.name, &names);
        h.LoadKey(t.name);
        int resyncs = h.resyncs_;
        h.Replay(t.name, &model, names);
        if (h.resyncs_ - resyncs != (changed ? 1 : 0)) {
          Fail(std::to_string(h.resyncs_ - resyncs) + " resyncs for one change", create + "\n" + ddl);
        }
        std::vector<Row> state;
        h.Must("SELECT json_extract(value, '$.state') FROM json_each(cdc_status(), '$.tables') "
               "WHERE json_extract(value, '$.name') = ?1", arg, &state);
        if (state.empty() || state[0][0].bytes != "intact") Fail("capture not healed after " + ddl, create);
        std::vector<Row> now = AsEvents(h.Snapshot(t.name, &names));
        if (!SameRows(model, now)) Fail("replica differs from the table after healing", create + "\n" + ddl);
        continue;
      } else if (f.ConsumeBool()) {
        // A schema change, then a refresh: old events keep their shape.
        h.Replay(t.name, &model, names);
        std::string col = Name(f) + "_added";
        if (h.Exec("ALTER TABLE " + Q(t.name) + " ADD COLUMN " + Q(col)) == SQLITE_OK) {
          h.Must("SELECT cdc_setup(?1)", arg);
          t.cols.push_back(Column{col, false});
          for (Row& r : model) r.push_back(SqlValue());
        }
        h.Snapshot(t.name, &names);
        continue;
      } else {
        // Tables with generated columns included (a lost REAL affinity was
        // fixed: Bootstrap.VirtualGeneratedColumnKeepsItsAffinity).
        sql = f.ConsumeBool() ? "SELECT cdc_bootstrap(?1)" : "SELECT cdc_bootstrap(?1, 3)";
        vals = arg;
        // A chunked bootstrap may leave a shadowed-rowid table unpaged: fine.
      }
      if (getenv("FUZZ_SCHEMA_TRACE")) {
        std::string v;
        for (auto& x : vals) v += x.Debug() + " ";
        fprintf(stderr, "TRACE %s -- %s\n", sql.c_str(), v.c_str());
      }
      int src = h.Exec(sql, vals);
      if (src != SQLITE_OK && h.prepared()) {
        // Capture never fails a write: at run time only the constraints the
        // user declared may fail a statement (and a chunked bootstrap may
        // refuse a table whose rowid is shadowed).
        std::string msg = sqlite3_errmsg(db);
        bool ok = (src & 0xff) == SQLITE_CONSTRAINT || (src & 0xff) == SQLITE_MISMATCH ||
                  (sql.rfind("SELECT cdc_bootstrap", 0) == 0 && msg.find("cannot page") != std::string::npos);
        if (!ok) Fail("statement failed at run time (code " + std::to_string(src) + "): " + msg, create + "\n" + sql);
      }
      if (sql == "SELECT cdc_bootstrap(?1, 3)" && src == SQLITE_OK) {
        for (int k = 0; k < 100000; k++) {
          std::vector<Row> n;
          h.Must(sql, arg, &n);
          if (n[0][0].i == 0) break;
        }
      }
      std::vector<Row> after = AsEvents(h.Snapshot(t.name, &names));
      h.Replay(t.name, &model, names);
      if (!SameRows(model, after)) {
        std::string d = sql + "\nmodel:\n";
        for (auto& r : model) d += cdcjson::RowDebug(r).substr(0, 300) + "\n";
        d += "table:\n";
        for (auto& r : after) d += cdcjson::RowDebug(r).substr(0, 300) + "\n";
        Fail("replayed events differ from the table", create + "\n" + d);
      }
    }
    Json status;
    cdcjson::Reader rd;
    std::string st = h.Text("SELECT cdc_status()");
    if (!rd.Parse(st, &status)) Fail("cdc_status is not strict JSON: " + rd.error(), st);
    if (st.find("\"drift\":true") != std::string::npos) Fail("drift right after cdc_setup", st);
  }
  // Teardown leaves only the user's tables.
  h.Must("SELECT cdc_teardown()");
  std::vector<Row> left;
  h.Must("SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_\\_cdc\\_%' ESCAPE '\\'", {}, &left);
  if (left[0][0].i != 0) Fail("cdc_teardown() left internal objects");
  if (sqlite3_close(db) != SQLITE_OK) Fail("close: statements left open");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(sqlite3_cdc_init));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider f(data, size);
  RunOne(f);
  return 0;
}
