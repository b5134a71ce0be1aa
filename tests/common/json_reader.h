// json_reader.h — a small strict JSON reader for the reliability tools
// (soak driver, fuzz targets). Header-only, no dependencies.
//
// It decodes events exactly as DESIGN §3 writes them: integers without a
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

namespace cdcjson {

struct Json {
  enum Kind { kNull, kBool, kInt, kReal, kString, kArray, kObject } kind = kNull;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<Json> items;                              // kArray
  std::vector<std::pair<std::string, Json>> members;    // kObject, in order

  const Json* Get(const std::string& key) const {
    for (auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
};

class Reader {
 public:
  // Parses the whole text; false (with error()) on any deviation from RFC 8259.
  bool Parse(const std::string& text, Json* out) {
    p_ = text.data();
    end_ = p_ + text.size();
    err_.clear();
    depth_ = 0;
    if (!Value(out)) return false;
    Ws();
    if (p_ != end_) return Fail("trailing characters");
    return true;
  }
  const std::string& error() const { return err_; }

 private:
  bool Fail(const char* what) {
    if (err_.empty()) err_ = what;
    return false;
  }
  void Ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) p_++;
  }
  bool Lit(const char* w) {
    for (const char* q = w; *q; q++, p_++)
      if (p_ >= end_ || *p_ != *q) return Fail("bad literal");
    return true;
  }
  bool Value(Json* v) {
    Ws();
    if (p_ >= end_) return Fail("unexpected end");
    if (++depth_ > 200) return Fail("too deep");
    bool ok;
    switch (*p_) {
      case 'n': v->kind = Json::kNull; ok = Lit("null"); break;
      case 't': v->kind = Json::kBool; v->b = true; ok = Lit("true"); break;
      case 'f': v->kind = Json::kBool; v->b = false; ok = Lit("false"); break;
      case '"': v->kind = Json::kString; ok = String(&v->s); break;
      case '[': ok = Array(v); break;
      case '{': ok = Object(v); break;
      default: ok = Number(v);
    }
    depth_--;
    return ok;
  }
  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool Hex4(uint32_t* cp) {
    if (end_ - p_ < 4) return Fail("short \\u escape");
    *cp = 0;
    for (int k = 0; k < 4; k++) {
      int h = Hex(*p_++);
      if (h < 0) return Fail("bad \\u escape");
      *cp = *cp * 16 + static_cast<uint32_t>(h);
    }
    return true;
  }
  static void Utf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool String(std::string* out) {
    out->clear();
    p_++;  // opening quote
    while (p_ < end_) {
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        p_++;
        return true;
      }
      if (c < 0x20) return Fail("control character in string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        p_++;
        continue;
      }
      if (++p_ >= end_) break;
      char e = *p_++;
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return Fail("lone surrogate");
            p_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return Fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone surrogate");
          }
          Utf8(out, cp);
          break;
        }
        default: return Fail("bad escape");
      }
    }
    return Fail("unterminated string");
  }
  bool Number(Json* v) {
    const char* s = p_;
    if (p_ < end_ && *p_ == '-') p_++;
    if (p_ >= end_ || *p_ < '0' || *p_ > '9') return Fail("bad value");
    if (*p_ == '0') {
      p_++;
    } else {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') p_++;
    }
    bool real = false;
    if (p_ < end_ && *p_ == '.') {
      real = true;
      p_++;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') return Fail("bad fraction");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') p_++;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      real = true;
      p_++;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) p_++;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') return Fail("bad exponent");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') p_++;
    }
    std::string text(s, p_);
    errno = 0;
    if (!real) {
      v->kind = Json::kInt;
      v->i = strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) return Fail("integer out of int64 range");
    } else {
      v->kind = Json::kReal;
      v->d = strtod(text.c_str(), nullptr);  // ERANGE on 9e999 is wanted: ±Inf
    }
    return true;
  }
  bool Array(Json* v) {
    v->kind = Json::kArray;
    p_++;
    Ws();
    if (p_ < end_ && *p_ == ']') {
      p_++;
      return true;
    }
    for (;;) {
      v->items.emplace_back();
      if (!Value(&v->items.back())) return false;
      Ws();
      if (p_ < end_ && *p_ == ',') { p_++; continue; }
      if (p_ < end_ && *p_ == ']') { p_++; return true; }
      return Fail("expected , or ]");
    }
  }
  bool Object(Json* v) {
    v->kind = Json::kObject;
    p_++;
    Ws();
    if (p_ < end_ && *p_ == '}') {
      p_++;
      return true;
    }
    for (;;) {
      Ws();
      if (p_ >= end_ || *p_ != '"') return Fail("expected key");
      v->members.emplace_back();
      if (!String(&v->members.back().first)) return false;
      Ws();
      if (p_ >= end_ || *p_ != ':') return Fail("expected :");
      p_++;
      if (!Value(&v->members.back().second)) return false;
      Ws();
      if (p_ < end_ && *p_ == ',') { p_++; continue; }
      if (p_ < end_ && *p_ == '}') { p_++; return true; }
      return Fail("expected , or }");
    }
  }

  const char* p_ = nullptr;
  const char* end_ = nullptr;
  int depth_ = 0;
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
