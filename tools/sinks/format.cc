// format.cc — the native and Debezium formats, templates, the stdout sink,
// and MakeSink (which sink a URL names).
//
// Debezium format (--format debezium): per event a key and a value.
//   value: {"before":…,"after":…,"source":{"version":"<cdc_version()>",
//           "connector":"sqlite","name":"<source id>","ts_ms":<change ts>,
//           "snapshot":"true"|"false","db":"<file name>","table":"<table>",
//           "change_id":<event id>},"op":"c"|"u"|"d"|"r"|"t","ts_ms":<now>}
//   key:   {"<pk column>":<value>,…} from the row image (after, or before for
//          deletes); null for a table without a declared primary key.
// The BOOTSTRAP marker ("drop what you hold for this table, a snapshot
// follows") becomes op "t" (Debezium's truncate event, before and after
// null); the INSERT events that directly follow it on the same table (no
// other event in between) are the snapshot rows and become op "r" with
// source.snapshot "true". Any other INSERT is "c".
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <algorithm>
#include <cstdlib>

#include "sink.h"

namespace sinks {

void AppendJsonString(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

std::string Batch::IdempotencyKey() const {
  if (messages.empty()) return source_id;
  return source_id + ":" + std::to_string(messages.front().id) + "-" + std::to_string(messages.back().id);
}

std::string Expand(const std::string& tmpl, const std::string& table, const std::string& source,
                   bool subject_token) {
  std::string t = table;
  if (subject_token) {
    for (char& c : t) {
      unsigned char u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f || c == '.' || c == '*' || c == '>') c = '_';
    }
    if (t.empty()) t = "_";
  }
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 7, "{table}") == 0) {
      out += t;
      i += 7;
    } else if (tmpl.compare(i, 8, "{source}") == 0) {
      out += source;
      i += 8;
    } else {
      out.push_back(tmpl[i++]);
    }
  }
  return out;
}

namespace {

int64_t NowMs() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

// Skips one JSON value starting at p[i] (the text is strict JSON from the
// extension); returns the index after it.
size_t SkipValue(const char* p, size_t n, size_t i) {
  int depth = 0;
  bool in_str = false;
  for (; i < n; i++) {
    char c = p[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') {
        in_str = false;
        if (depth == 0) return i + 1;
      }
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') {
      if (depth == 0) return i;  // end of the enclosing object
      if (--depth == 0) return i + 1;
    } else if (depth == 0 && (c == ',')) {
      return i;
    }
  }
  return n;
}

// The raw text of the members of a JSON object, by (unescaped-enough) name:
// column names are compared in their JSON-escaped form.
std::map<std::string, std::string> Members(const char* text) {
  std::map<std::string, std::string> out;
  if (!text) return out;
  size_t n = strlen(text), i = 0;
  while (i < n && text[i] != '{') i++;
  i++;
  while (i < n) {
    while (i < n && (text[i] == ' ' || text[i] == ',')) i++;
    if (i >= n || text[i] != '"') break;
    size_t ks = i;
    i = SkipValue(text, n, i);  // the name, a string
    std::string name(text + ks, i - ks);
    while (i < n && (text[i] == ' ' || text[i] == ':')) i++;
    size_t vs = i;
    i = SkipValue(text, n, i);
    out[name] = std::string(text + vs, i - vs);
  }
  return out;
}

}  // namespace

Formatter::~Formatter() { sqlite3_close(db_); }

bool Formatter::Open(const std::string& db_path, bool debezium, const std::string& source_name,
                     const std::string& version, std::string* err) {
  debezium_ = debezium;
  source_name_ = source_name;
  version_ = version;
  size_t slash = db_path.rfind('/');
  db_name_ = slash == std::string::npos ? db_path : db_path.substr(slash + 1);
  if (!debezium_) return true;
  if (sqlite3_open_v2(db_path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    *err = "cannot open " + db_path + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
    return false;
  }
  sqlite3_busy_timeout(db_, 10000);
  return true;
}

const std::vector<std::string>& Formatter::KeyColumns(const std::string& table) {
  auto it = keys_.find(table);
  if (it != keys_.end()) return it->second;
  std::vector<std::pair<int64_t, std::string>> pk;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT pk, name FROM pragma_table_info(?1) WHERE pk > 0", -1, &st, nullptr) ==
      SQLITE_OK) {
    sqlite3_bind_text(st, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      pk.emplace_back(sqlite3_column_int64(st, 0), reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
    }
  }
  sqlite3_finalize(st);
  std::sort(pk.begin(), pk.end());
  std::vector<std::string> cols;
  for (auto& p : pk) {
    std::string quoted;
    AppendJsonString(&quoted, p.second);
    cols.push_back(quoted);
  }
  return keys_[table] = cols;
}

void Formatter::Debezium(const cdc_change& c, Message* m) {
  const bool marker = strcmp(c.op, "BOOTSTRAP") == 0;
  const bool insert = strcmp(c.op, "INSERT") == 0;
  if (marker) {
    keys_.erase(c.table);  // the table may have been rebuilt: read its key again
    snapshot_table_ = c.table;
    in_snapshot_ = true;
  } else if (!(insert && in_snapshot_ && snapshot_table_ == c.table)) {
    in_snapshot_ = false;
  }
  const bool snapshot_row = insert && in_snapshot_;
  const char* op = marker ? "t" : snapshot_row ? "r" : insert ? "c" : strcmp(c.op, "UPDATE") == 0 ? "u" : "d";

  std::string& v = m->value;
  v.append("{\"before\":");
  v.append(c.before ? c.before : "null");
  v.append(",\"after\":");
  v.append(c.after ? c.after : "null");
  v.append(",\"source\":{\"version\":");
  AppendJsonString(&v, version_);
  v.append(",\"connector\":\"sqlite\",\"name\":");
  AppendJsonString(&v, source_name_);
  v.append(",\"ts_ms\":").append(std::to_string(c.ts));
  v.append(",\"snapshot\":\"").append(snapshot_row || marker ? "true" : "false");
  v.append("\",\"db\":");
  AppendJsonString(&v, db_name_);
  v.append(",\"table\":");
  AppendJsonString(&v, c.table);
  v.append(",\"change_id\":").append(std::to_string(c.id));
  v.append("},\"op\":\"").append(op).append("\",\"ts_ms\":").append(std::to_string(NowMs())).append("}");

  static const std::vector<std::string> kNoKey;
  const std::vector<std::string>& cols = marker ? kNoKey : KeyColumns(c.table);
  if (cols.empty()) {
    m->key = "null";
    return;
  }
  std::map<std::string, std::string> image = Members(c.after ? c.after : c.before);
  std::string& k = m->key;
  k.push_back('{');
  for (size_t i = 0; i < cols.size(); i++) {
    if (i) k.push_back(',');
    k.append(cols[i]).push_back(':');
    auto it = image.find(cols[i]);
    k.append(it == image.end() ? "null" : it->second);
  }
  k.push_back('}');
}

void Formatter::Format(const cdc_change* c, int n, Batch* out) {
  out->messages.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    Message& m = out->messages[static_cast<size_t>(i)];
    m.id = c[i].id;
    m.table = c[i].table;
    m.value.clear();
    m.key.clear();
    if (debezium_) {
      Debezium(c[i], &m);
      continue;
    }
    // The same text as cdc_poll's (ext/log.cc EventJson).
    std::string& v = m.value;
    v.append("{\"id\":").append(std::to_string(c[i].id));
    v.append(",\"ts\":").append(std::to_string(c[i].ts));
    v.append(",\"table\":");
    AppendJsonString(&v, c[i].table);
    v.append(",\"op\":\"").append(c[i].op).append("\",\"before\":");
    v.append(c[i].before ? c[i].before : "null");
    v.append(",\"after\":");
    v.append(c[i].after ? c[i].after : "null");
    v.push_back('}');
  }
}

// --- stdout ------------------------------------------------------------------

namespace {

// NDJSON on stdout: the native event per line, or {"key":…,"value":…} in the
// Debezium format.
class StdoutSink : public Sink {
 public:
  explicit StdoutSink(const Config& c) : debezium_(c.debezium) {}
  Result Send(const Batch& b) override {
    std::string buf;
    for (const Message& m : b.messages) {
      if (debezium_) {
        buf.append("{\"key\":").append(m.key).append(",\"value\":").append(m.value).append("}\n");
      } else {
        buf.append(m.value).push_back('\n');
      }
    }
    if (fwrite(buf.data(), 1, buf.size(), stdout) != buf.size() || fflush(stdout) != 0) {
      if (errno == EPIPE) return Result::Fatal("EPIPE");  // cdc_stream.cc: a clean stop
      return Result::Fatal(std::string("writing stdout: ") + strerror(errno));
    }
    return Result();
  }
  std::string Describe() const override { return "stdout"; }

 private:
  bool debezium_;
};

}  // namespace

std::unique_ptr<Sink> MakeStdoutSink(const Config& cfg, std::string*) {
  return std::unique_ptr<Sink>(new StdoutSink(cfg));
}

std::unique_ptr<Sink> MakeSink(const Config& cfg, std::string* err) {
  const std::string& u = cfg.url;
  auto starts = [&](const char* p) { return u.compare(0, strlen(p), p) == 0; };
  if (u == "-") return MakeStdoutSink(cfg, err);
  if (starts("http://") || starts("https://")) return MakeHttpSink(cfg, err);
  if (starts("nats://")) return MakeNatsSink(cfg, err);
  if (starts("redis://")) return MakeRedisSink(cfg, err);
  *err = "--sink " + u + ": not a sink (use -, http://…, https://…, nats://…, redis://…)";
  return nullptr;
}

std::string BuiltSinks() {
  std::string s = "stdout";
#ifdef CDC_HAVE_CURL
  s += ", http(s)";
#endif
#ifdef CDC_HAVE_NATS
  s += ", nats";
#endif
#ifdef CDC_HAVE_HIREDIS
  s += ", redis";
#endif
  return s;
}

}  // namespace sinks
