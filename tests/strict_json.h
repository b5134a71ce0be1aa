// strict_json.h — a small, strict RFC 8259 JSON parser for the tests.
//
// Rejects everything RFC 8259 does not allow: NaN/Infinity tokens, leading
// zeros, "1." / ".5", trailing commas, control characters and invalid UTF-8
// inside strings, lone surrogates, bad escapes, duplicate object keys (the
// RFC only says SHOULD be unique; the extension must never produce them),
// and anything after the value. Integers without fraction/exponent are
// parsed exactly into int64 (out of range: an error); other numbers with
// strtod (9e999 parses to +inf, as the extension writes ±Inf).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace strictjson {

struct Value {
  enum Kind { kNull, kBool, kInt, kReal, kString, kArray, kObject } kind = kNull;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;      // kString
  std::string text;   // kInt/kReal: the number as written
  std::vector<Value> items;                            // kArray
  std::vector<std::pair<std::string, Value>> members;  // kObject, in order

  const Value& operator[](const std::string& key) const {
    for (auto& m : members) {
      if (m.first == key) return m.second;
    }
    throw std::runtime_error("no key " + key);
  }
  const Value& operator[](size_t i) const { return items.at(i); }
  const Value* Get(const std::string& key) const {  // nullptr if absent
    for (auto& m : members) {
      if (m.first == key) return &m.second;
    }
    return nullptr;
  }
  bool Has(const std::string& key) const {
    for (auto& m : members) {
      if (m.first == key) return true;
    }
    return false;
  }
  bool IsNull() const { return kind == kNull; }
};

class Parser {
 public:
  explicit Parser(const std::string& in)
      : begin_(in.data()), p_(in.data()), end_(in.data() + in.size()) {}

  Value ParseDocument() {
    Ws();
    Value v = ParseValue(0);
    Ws();
    if (p_ != end_) Fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) {
    throw std::runtime_error("strict JSON: " + what + " at offset " +
                             std::to_string(p_ - begin_));
  }
  void Ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) Adv();
  }
  void Adv(size_t n = 1) { p_ += n; }
  bool Lit(const char* w) {
    size_t n = strlen_(w);
    if (static_cast<size_t>(end_ - p_) >= n && std::string(p_, n) == w) {
      Adv(n);
      return true;
    }
    return false;
  }
  static size_t strlen_(const char* s) { size_t n = 0; while (s[n]) n++; return n; }

  Value ParseValue(int depth) {
    if (depth > 512) Fail("too deep");
    if (p_ == end_) Fail("unexpected end");
    Value v;
    char c = *p_;
    if (c == '{') {
      v.kind = Value::kObject;
      Adv();
      Ws();
      if (p_ < end_ && *p_ == '}') { Adv(); return v; }
      for (;;) {
        Ws();
        if (p_ == end_ || *p_ != '"') Fail("expected key");
        std::string key = ParseString();
        for (auto& m : v.members) {
          if (m.first == key) Fail("duplicate key " + key);
        }
        Ws();
        if (p_ == end_ || *p_ != ':') Fail("expected :");
        Adv();
        Ws();
        v.members.emplace_back(std::move(key), ParseValue(depth + 1));
        Ws();
        if (p_ < end_ && *p_ == ',') { Adv(); continue; }
        if (p_ < end_ && *p_ == '}') { Adv(); return v; }
        Fail("expected , or }");
      }
    }
    if (c == '[') {
      v.kind = Value::kArray;
      Adv();
      Ws();
      if (p_ < end_ && *p_ == ']') { Adv(); return v; }
      for (;;) {
        Ws();
        v.items.push_back(ParseValue(depth + 1));
        Ws();
        if (p_ < end_ && *p_ == ',') { Adv(); continue; }
        if (p_ < end_ && *p_ == ']') { Adv(); return v; }
        Fail("expected , or ]");
      }
    }
    if (c == '"') {
      v.kind = Value::kString;
      v.s = ParseString();
      return v;
    }
    if (Lit("true")) { v.kind = Value::kBool; v.b = true; return v; }
    if (Lit("false")) { v.kind = Value::kBool; return v; }
    if (Lit("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
    Fail(std::string("unexpected character '") + c + "'");
  }

  Value ParseNumber() {
    const char* start = p_;
    bool integral = true;
    if (*p_ == '-') Adv();
    if (p_ == end_) Fail("bad number");
    if (*p_ == '0') {
      Adv();
      if (p_ < end_ && *p_ >= '0' && *p_ <= '9') Fail("leading zero");
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') Adv();
    } else {
      Fail("bad number");
    }
    if (p_ < end_ && *p_ == '.') {
      integral = false;
      Adv();
      if (p_ == end_ || *p_ < '0' || *p_ > '9') Fail("digit expected after .");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') Adv();
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integral = false;
      Adv();
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) Adv();
      if (p_ == end_ || *p_ < '0' || *p_ > '9') Fail("digit expected in exponent");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') Adv();
    }
    Value v;
    v.text.assign(start, p_);
    if (integral) {
      v.kind = Value::kInt;
      errno = 0;
      char* e = nullptr;
      long long x = strtoll(v.text.c_str(), &e, 10);
      if (errno == ERANGE) Fail("integer out of int64 range: " + v.text);
      v.i = x;
      v.d = static_cast<double>(x);
    } else {
      v.kind = Value::kReal;
      v.d = strtod(v.text.c_str(), nullptr);  // ERANGE: ±inf or a subnormal, both fine
    }
    return v;
  }

  unsigned Hex4() {
    if (end_ - p_ < 4) Fail("short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
      char c = *p_;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else Fail("bad hex digit");
      Adv();
    }
    return v;
  }

  static void PutUtf8(std::string* out, uint32_t cp) {
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

  std::string ParseString() {
    Adv();  // opening quote
    std::string out;
    for (;;) {
      if (p_ == end_) Fail("unterminated string");
      auto c = static_cast<unsigned char>(*p_);
      if (c == '"') { Adv(); return out; }
      if (c < 0x20) Fail("control character in string");
      if (c == '\\') {
        Adv();
        if (p_ == end_) Fail("bad escape");
        char e = *p_;
        Adv();
        switch (e) {
          case '"': out.push_back('"'); break;
          case '\\': out.push_back('\\'); break;
          case '/': out.push_back('/'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'n': out.push_back('\n'); break;
          case 'r': out.push_back('\r'); break;
          case 't': out.push_back('\t'); break;
          case 'u': {
            uint32_t cp = Hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) Fail("lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (!Lit("\\u")) Fail("lone high surrogate");
              uint32_t lo = Hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) Fail("bad low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            PutUtf8(&out, cp);
            break;
          }
          default: Fail("bad escape");
        }
        continue;
      }
      if (c < 0x80) { out.push_back(static_cast<char>(c)); Adv(); continue; }
      // A UTF-8 sequence: validate strictly.
      size_t len;
      uint32_t cp;
      if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
      else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
      else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
      else Fail("invalid UTF-8 lead byte");
      if (static_cast<size_t>(end_ - p_) < len) Fail("truncated UTF-8");
      for (size_t i = 1; i < len; i++) {
        auto cc = static_cast<unsigned char>(p_[i]);
        if ((cc & 0xC0) != 0x80) Fail("invalid UTF-8 continuation");
        cp = (cp << 6) | (cc & 0x3F);
      }
      if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
          (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
        Fail("invalid UTF-8 code point");
      }
      out.append(p_, len);
      Adv(len);
    }
  }

  const char* begin_;
  const char* p_;
  const char* end_;
};

inline Value Parse(const std::string& text) { return Parser(text).ParseDocument(); }

}  // namespace strictjson
