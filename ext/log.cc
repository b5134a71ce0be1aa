// log.cc — see log.h.
#include "log.h"

#include <algorithm>
#include <cstring>

#include "json.h"

namespace cdc {

void EventJson(std::string* out, const Event& e) {
  // Few appends: each piece of constant text goes with the number or
  // image beside it.
  char buf[3 * kJsonNumberMax];
  char* p = buf;
  std::memcpy(p, "{\"id\":", 6);
  p = JsonIntTo(p + 6, e.id);
  std::memcpy(p, ",\"ts\":", 6);
  p = JsonIntTo(p + 6, e.ts);
  std::memcpy(p, ",\"table\":", 9);
  out->append(buf, static_cast<size_t>(p + 9 - buf));
  if (!e.table_json.empty()) out->append(e.table_json);
  else JsonString(out, e.table);
  const char* op = OpName(e.op);
  const size_t op_len = std::strlen(op);
  p = buf;
  std::memcpy(p, ",\"op\":\"", 7);
  std::memcpy(p + 7, op, op_len);  // at most "BOOTSTRAP"
  p += 7 + op_len;
  *p++ = '"';
  if (!e.reason.empty()) {
    out->append(buf, static_cast<size_t>(p - buf));
    out->append(",\"reason\":", 10);
    JsonString(out, e.reason);
    p = buf;
  }
  std::memcpy(p, ",\"before\":", 10);
  p += 10;
  if (!e.has_before) {
    std::memcpy(p, "null", 4);
    p += 4;
  } else {
    out->append(buf, static_cast<size_t>(p - buf));
    out->append(e.before);
    p = buf;
  }
  std::memcpy(p, ",\"after\":", 9);
  p += 9;
  if (!e.has_after) {
    std::memcpy(p, "null}", 5);
    out->append(buf, static_cast<size_t>(p + 5 - buf));
  } else {
    out->append(buf, static_cast<size_t>(p - buf));
    out->append(e.after);
    out->push_back('}');
  }
}

Status LogCursor::LoadShape(int64_t id, const Shape** out) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db_, "SELECT s.tbl, j.value FROM main.__cdc_shapes AS s, json_each(s.columns) AS j "
           "WHERE s.id = ?1 ORDER BY j.key"));
  st.Bind(1, id);
  Shape shape;
  int rc;
  bool found = false;
  while ((rc = st.Step()) == SQLITE_ROW) {
    found = true;
    shape.table = st.Text(0);
    std::string key(shape.keys.empty() ? "{" : ",");
    JsonString(&key, st.Text(1));
    key.push_back(':');
    shape.keys.push_back(std::move(key));
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db_, "read shapes");
  if (!found) return Status::Error("sqlite-cdc: log row refers to unknown shape " + std::to_string(id));
  JsonString(&shape.table_json, shape.table);
  *out = &(shapes_[id] = std::move(shape));
  return Status();
}

namespace {

void Image(std::string* out, const std::vector<std::string>& keys,
           const std::vector<sqlite3_value*>& seq, size_t from) {
  out->clear();
  if (keys.empty()) {
    out->append("{}", 2);
    return;
  }
  for (size_t i = 0; i < keys.size(); i++) {
    const std::string& key = keys[i];  // '{' or ',', then "name":
    size_t at = from + i;
    sqlite3_value* v = at < seq.size() ? seq[at] : nullptr;
    const int type = v ? sqlite3_value_type(v) : SQLITE_NULL;
    // A number or null goes with its key in one append.
    char buf[256];
    if (type != SQLITE_TEXT && type != SQLITE_BLOB && key.size() <= sizeof buf - kJsonNumberMax) {
      std::memcpy(buf, key.data(), key.size());
      char* p = buf + key.size();
      if (type == SQLITE_INTEGER) {
        p = JsonIntTo(p, sqlite3_value_int64(v));
      } else if (type == SQLITE_FLOAT) {
        p = JsonDoubleTo(p, sqlite3_value_double(v));
      } else {
        std::memcpy(p, "null", 4);
        p += 4;
      }
      out->append(buf, static_cast<size_t>(p - buf));
      continue;
    }
    out->append(key);
    if (v) JsonValue(out, v);
    else out->append("null", 4);
  }
  out->push_back('}');
}

}  // namespace

void LogCursor::ClearCont() {
  for (auto* p : cont_) sqlite3_value_free(p);
  cont_.clear();
}

void LogCursor::EndScan() {
  ClearCont();
  st_ = Stmt();
}

void LogCursor::ForgetShapes() {
  shapes_.clear();
  shape_ = nullptr;
  shape_id_ = 0;
}

void LogCursor::Close() {
  EndScan();
  ForgetShapes();
}

Status LogCursor::Open(sqlite3* db, const ReadRange& range) {
  Close();
  return Start(db, range);
}

Status LogCursor::Reopen(sqlite3* db, const ReadRange& range) {
  EndScan();
  if (db != db_) ForgetShapes();
  return Start(db, range);
}

Status LogCursor::Start(sqlite3* db, const ReadRange& range) {
  db_ = db;
  range_ = range;
  emitted_ = 0;
  if (range.limit <= 0 || range.upto <= range.after) return Status();
  // The scan is a snapshot of the log as it is now: a caller that writes to
  // captured tables while it steps (on the same connection) must not meet
  // its own new events, or "for each change, write a row" never ends. Both
  // bounds are computed once, before the first row (a rowid range): from
  // the newest event at or before `after` (its continuation rows come
  // before the next event) to the newest id now.
  std::string sql = "SELECT * FROM main.__cdc_log WHERE id > " CDC_EVENT_FLOOR_SQL("?1")
                    " AND id <= min(?2, (SELECT coalesce(max(id), 0) FROM main.__cdc_log))";
  if (range.by_table) sql += " AND shape IN (SELECT id FROM main.__cdc_shapes WHERE tbl = ?3)";
  sql += " ORDER BY id";
  CDC_RETURN_IF_ERROR(st_.Prepare(db, sql));
  st_.Bind(1, range.after);
  st_.Bind(2, range_.upto);
  if (range.by_table) st_.Bind(3, range.table);
  return Status();
}

Status LogCursor::Next(bool* have, Event* into) {
  *have = false;
  Event& ev = into ? *into : e_;
  if (!st_ || emitted_ >= range_.limit) return Status();
  int rc;
  while ((rc = st_.Step()) == SQLITE_ROW) {
    sqlite3_stmt* s = st_.get();
    int ncol = sqlite3_column_count(s);
    int op = sqlite3_column_int(s, 3);
    if (op == kOpCont) {
      int carried = sqlite3_column_int(s, 1);  // a continuation row's ts: its value count
      for (int c = 4; c < ncol && c - 4 < carried; c++) {
        cont_.push_back(nullptr);  // first: a push_back that throws must not leak the copy
        cont_.back() = sqlite3_value_dup(sqlite3_column_value(s, c));
        if (!cont_.back()) {
          cont_.pop_back();
          return Status::Error("sqlite-cdc: out of memory", SQLITE_NOMEM);
        }
      }
      continue;
    }
    int64_t id = sqlite3_column_int64(s, 0);
    if (id <= range_.after) {  // the floor row itself
      ClearCont();
      continue;
    }
    int64_t sid = sqlite3_column_int64(s, 2);
    if (!shape_ || sid != shape_id_) {
      auto it = shapes_.find(sid);
      if (it != shapes_.end()) shape_ = &it->second;
      else CDC_RETURN_IF_ERROR(LoadShape(sid, &shape_));
      shape_id_ = sid;
    }
    if (ev.table != shape_->table || ev.table_json != shape_->table_json) {
      ev.table = shape_->table;
      ev.table_json = shape_->table_json;
    }
    const Shape* shape = shape_;
    ev.id = id;
    ev.ts = sqlite3_column_int64(s, 1);
    ev.op = op;
    size_t n = shape->keys.size();
    // Only the values the event uses; the rest of the row is padding.
    const bool marker = op == kOpBootstrap || op == kOpDrop;
    size_t want = op == kOpUpdate ? 2 * n : (marker ? 0 : n);
    ev.reason.clear();
    if (marker && ncol > 4 && sqlite3_column_type(s, 4) == SQLITE_TEXT) {
      ev.reason.assign(reinterpret_cast<const char*>(sqlite3_column_text(s, 4)),
                       static_cast<size_t>(sqlite3_column_bytes(s, 4)));
    }
    seq_.assign(cont_.begin(), cont_.end());
    for (int c = 4; c < ncol && seq_.size() < want; c++) seq_.push_back(sqlite3_column_value(s, c));
    ev.has_before = op == kOpUpdate || op == kOpDelete;
    ev.has_after = op == kOpUpdate || op == kOpInsert;
    if (ev.has_before) Image(&ev.before, shape->keys, seq_, 0);
    if (ev.has_after) Image(&ev.after, shape->keys, seq_, op == kOpUpdate ? n : 0);
    ClearCont();
    emitted_++;
    *have = true;
    return Status();
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db_, "read log");
  st_ = Stmt();
  return Status();
}

Status ReadEvents(sqlite3* db, const ReadRange& range, const std::function<bool(const Event&)>& fn) {
  LogCursor cur;
  CDC_RETURN_IF_ERROR(cur.Open(db, range));
  for (;;) {
    bool have = false;
    CDC_RETURN_IF_ERROR(cur.Next(&have));
    if (!have || !fn(cur.event())) return Status();
  }
}

}  // namespace cdc
