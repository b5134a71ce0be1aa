// json_reader.h — the JSON reader of the reliability tools (soak driver, fuzz
// targets), on the tests' one strict parser (../strict_json.h).
//
// Events decode exactly as DESIGN §3 writes them: integers without a
// fraction or exponent stay int64 (all 64 bits), other numbers are doubles
// parsed with strtod (so a shortest round-trip form reads back bit-exact;
// 9e999 / -9e999 become ±Inf), strings keep every byte (\u0000 included), and
// object members keep their order, so image keys can be compared with the
// table's column list. {"$blob": "HEX"} is left as an object; SqlValue below
// turns an image member into a typed SQL value.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../strict_json.h"

namespace cdcjson {

// The one strict parser of the tests (strict_json.h); its Value has the
// members this header's users read (kind, b, i, d, s, items, members, Get).
using Json = strictjson::Value;

class Reader {
 public:
  // Parses the whole text; false (with error()) on any deviation from RFC 8259.
  bool Parse(const std::string& text, Json* out) {
    err_.clear();
    try {
      *out = strictjson::Parse(text);
      return true;
    } catch (const std::exception& e) {
      err_ = e.what();
      return false;
    }
  }
  const std::string& error() const { return err_; }

 private:
  std::string err_;
};

// A typed SQL value, as an image member decodes to it.
struct SqlValue {
  enum Type { kNull = 5, kInt = 1, kReal = 2, kText = 3, kBlob = 4 } type = kNull;  // SQLITE_* codes
  int64_t i = 0;
  double d = 0;
  std::string bytes;  // text or blob

  // Exact equality: same type; doubles compare with == (so 0.0 == -0.0, as
  // SQLite's storage does not keep the sign of an integral zero).
  bool operator==(const SqlValue& o) const {
    if (type != o.type) return false;
    switch (type) {
      case kNull: return true;
      case kInt: return i == o.i;
      case kReal: return d == o.d;
      default: return bytes == o.bytes;
    }
  }
  bool operator!=(const SqlValue& o) const { return !(*this == o); }
  std::string Debug() const {
    switch (type) {
      case kNull: return "NULL";
      case kInt: return std::to_string(i);
      case kReal: {
        char b[40];
        snprintf(b, sizeof b, "%.17g", d);
        return std::string(b) + "(real)";
      }
      case kText: return "'" + bytes + "'";
      default: {
        std::string h = "x'";
        const char* k = "0123456789ABCDEF";
        for (unsigned char c : bytes) { h += k[c >> 4]; h += k[c & 15]; }
        return h + "'";
      }
    }
  }
};

// Decodes an image member; false when it is not a form DESIGN §3 allows.
inline bool ToSqlValue(const Json& j, SqlValue* out) {
  switch (j.kind) {
    case Json::kNull: out->type = SqlValue::kNull; return true;
    case Json::kInt: out->type = SqlValue::kInt; out->i = j.i; return true;
    case Json::kReal: out->type = SqlValue::kReal; out->d = j.d; return true;
    case Json::kString: out->type = SqlValue::kText; out->bytes = j.s; return true;
    case Json::kObject: {
      if (j.members.size() != 1 || j.members[0].first != "$blob" ||
          j.members[0].second.kind != Json::kString) {
        return false;
      }
      const std::string& h = j.members[0].second.s;
      if (h.size() % 2) return false;
      out->type = SqlValue::kBlob;
      out->bytes.clear();
      for (size_t k = 0; k < h.size(); k += 2) {
        auto hx = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;  // the extension writes upper-case hex only
        };
        int a = hx(h[k]), b = hx(h[k + 1]);
        if (a < 0 || b < 0) return false;
        out->bytes.push_back(static_cast<char>(a * 16 + b));
      }
      return true;
    }
    default: return false;
  }
}

}  // namespace cdcjson
