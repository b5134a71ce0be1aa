// json.cc — see json.h.
#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace cdc {

namespace {

// Length of the valid UTF-8 sequence starting at p (at most n bytes), or 0.
size_t Utf8Len(const unsigned char* p, size_t n) {
  unsigned char c = p[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    return 0;
  }
  return len;
}

const char kHex[] = "0123456789ABCDEF";

// "00" to "99": digits are written two at a time.
const char kPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Writes u's decimal digits so that they end at `end`, two at a time from
// the last; returns where they start.
char* DigitsBefore(char* end, uint64_t u) {
  char* q = end;
  while (u >= 100) {
    const size_t d = static_cast<size_t>(u % 100) * 2;
    u /= 100;
    q -= 2;
    q[0] = kPairs[d];
    q[1] = kPairs[d + 1];
  }
  if (u >= 10) {
    q -= 2;
    q[0] = kPairs[u * 2];
    q[1] = kPairs[u * 2 + 1];
  } else {
    *--q = static_cast<char>('0' + u);
  }
  return q;
}

}  // namespace

void JsonString(std::string* out, const char* s, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  out->push_back('"');
  size_t i = 0;
  while (i < n) {
    // Copy the longest run of bytes that need no escaping in one append,
    // looking at 8 bytes at a time while none of them is below 0x20, 0x80
    // or above, '"' or '\\' (the tests are exact about "none": a borrow can
    // only make them report a byte that is fine, which the loop after
    // them then takes one at a time).
    size_t run = i;
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
    while (run + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + run, 8);
      const uint64_t quote = w ^ (kOnes * '"'), slash = w ^ (kOnes * '\\');
      if ((w | ((w - kOnes * 0x20) & ~w) | ((quote - kOnes) & ~quote) | ((slash - kOnes) & ~slash)) & kHigh) break;
      run += 8;
    }
    while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') run++;
    if (run > i) {
      out->append(s + i, run - i);
      i = run;
      if (i == n) break;
    }
    unsigned char c = p[i];
    switch (c) {
      case '"': out->append("\\\"", 2); i++; continue;
      case '\\': out->append("\\\\", 2); i++; continue;
      case '\n': out->append("\\n", 2); i++; continue;
      case '\r': out->append("\\r", 2); i++; continue;
      case '\t': out->append("\\t", 2); i++; continue;
      default: break;
    }
    if (c < 0x20) {
      char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      out->append(esc, 6);
      i++;
      continue;
    }
    size_t len = Utf8Len(p + i, n - i);
    if (len == 0) {
      out->append("\xEF\xBF\xBD", 3);  // U+FFFD for a byte that is not UTF-8
      i++;
    } else {
      out->append(s + i, len);
      i += len;
    }
  }
  out->push_back('"');
}

char* JsonIntTo(char* p, int64_t v) {
  // Counts the digits (from the bit length), then writes two at a time from
  // the end.
  static const uint64_t kPow10u[] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
                                     10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
                                     100000000000ULL, 1000000000000ULL, 10000000000000ULL,
                                     100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
                                     100000000000000000ULL, 1000000000000000000ULL,
                                     10000000000000000000ULL};
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (v < 0) *p++ = '-';
  const int t = ((64 - __builtin_clzll(u | 1)) * 1233) >> 12;  // floor(log10 u) or one more
  char* const end = p + t + (u >= kPow10u[t] || u == 0 ? 1 : 0);
  DigitsBefore(end, u);
  return end;
}

void JsonInt(std::string* out, int64_t v) {
  char buf[kJsonNumberMax];
  out->append(buf, static_cast<size_t>(JsonIntTo(buf, v) - buf));
}

namespace {

// The fast path of JsonDouble: the text std::to_chars would write (its
// shortest round-trip form, see below) for every double with
// 1e-8 <= |v| < 1e15 that has at most 15 significant digits (prices,
// measurements, most hand-written numbers), and for those with
// 1e-6 <= |v| < 1e15 that need 16 or 17, without its general algorithm.
// Writes to buf (at least 32 bytes) and returns the end, or nullptr for
// any other double, and in the rare cases where the answer would depend on
// a tie (the caller then uses to_chars).
//
// Up to 15 digits: with X = floor(log10 |v|) and k = 14 - X, a decimal
// n / 10^k with n < 10^15 whose correctly rounded quotient (n and 10^k are
// exact doubles: IEEE division rounds correctly) is v parses back to v. Two
// different decimals of at most 15 significant digits never round to the
// same normal double (DBL_DIG is 15), so n's digits, trailing zeros dropped,
// are the shortest that read back as v, and the only ones that short: what
// to_chars finds. A decimal with fewer digits is the same number with zeros
// appended, and |v| * 10^k is within 0.25 of n (two roundings of 2^-53), so
// one rounding finds n when there is one.
//
// 16 and 17 digits: when no 15-digit decimal reads back as v, the shortest
// has 16 or 17 digits, and to_chars gives the one nearest v. In integers,
// exactly: |v| = m * 2^-s, so |v| * 10^k = m * 10^k / 2^s (below 2^127 when
// k <= 22). Its nearest integer c reads back as v when it is less than half
// a unit in the last place of v away: |c * 2^s - m * 10^k| < 10^k / 2. The
// two ties (c halfway between two integers; c exactly half an ulp away) and
// the bottom of a binade (its lower neighbour is nearer) go to to_chars.
//
// The layout to_chars picks: fixed or scientific (%f or %e of printf),
// whichever is shorter, fixed on a tie.
char* ShortestDecimal(char* buf, double v) {
  static const double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const double a = std::fabs(v);
  if (!(a >= 1e-8 && a < 1e15)) return nullptr;  // (also NaN)
  uint64_t bits;
  std::memcpy(&bits, &a, sizeof bits);
  const int e2 = static_cast<int>(bits >> 52) - 1023;  // a is normal: 2^e2 <= a < 2^(e2+1)
  int k = std::min(22, 14 - ((e2 * 1233) >> 12));     // 14 - floor(e2 log10 2): one too many at most
  double t = a * kPow10[k];
  if (t >= 1e15) {
    if (k == 0) return nullptr;
    t = a * kPow10[--k];
    if (t >= 1e15) return nullptr;
  }
  uint64_t n = static_cast<uint64_t>(t + 0.5);  // t + 0.5 is exact below 2^50
  if (static_cast<double>(n) / kPow10[k] != a) {
    // No decimal of 15 digits (k = 14 - X when t >= 1e14): 16, then 17.
    const uint64_t m = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1} << 52);
    const int shift = 52 - e2;  // a = m / 2^shift; 3..72 here
    if (t < 1e14 || k > 20 || m == uint64_t{1} << 52) return nullptr;
    using u128 = unsigned __int128;
    const u128 one = 1;
    bool found = false;
    for (int digits = 16; digits <= 17 && !found; digits++) {
      k++;
      const u128 p10 = static_cast<u128>(static_cast<uint64_t>(kPow10[k < 19 ? k : 19])) *
                       (k < 19 ? 1 : static_cast<uint64_t>(kPow10[k - 19]));  // 10^k, exactly
      const u128 scaled = static_cast<u128>(m) * p10;
      u128 c = scaled >> shift;
      const u128 rem = scaled - (c << shift), half = one << (shift - 1);
      if (rem == half) return nullptr;
      u128 off = rem;  // |c * 2^shift - scaled|
      if (rem > half) {
        c++;
        off = (one << shift) - rem;
      }
      if (2 * off == p10) return nullptr;
      if (2 * off > p10) continue;  // reads back as another double
      const uint64_t lo = digits == 16 ? 1000000000000000ULL : 10000000000000000ULL;
      if (c < lo || c >= 10 * static_cast<u128>(lo)) return nullptr;
      n = static_cast<uint64_t>(c);
      found = true;
    }
    if (!found) return nullptr;
  }
  // Digits n, value n * 10^e, n without trailing zeros (15 at most; none
  // with 16 or 17 digits: dropping one would leave a shorter decimal that
  // reads back as v).
  int e = -k;
  if (n % 100000000 == 0) n /= 100000000, e += 8;
  if (n % 10000 == 0) n /= 10000, e += 4;
  if (n % 100 == 0) n /= 100, e += 2;
  if (n % 10 == 0) n /= 10, e += 1;
  char digits[20];
  char* const dend = digits + sizeof digits;
  char* const d = DigitsBefore(dend, n);
  const int s = static_cast<int>(dend - d);
  const int x = e + s - 1;  // the exponent of scientific form
  const int fixed = e >= 0 ? s + e : (x >= 0 ? s + 1 : s + 1 - x);
  const int sci = s + (s > 1) + 4;  // d[.ddd]e+XX: |x| < 100 here
  char* p = buf;
  if (v < 0) *p++ = '-';
  if (fixed <= sci) {
    if (e >= 0) {
      std::memcpy(p, d, s);
      p += s;
      std::memset(p, '0', e);
      p += e;
      *p++ = '.';  // an integer-valued REAL keeps a fraction (see JsonDouble)
      *p++ = '0';
    } else if (x >= 0) {
      std::memcpy(p, d, x + 1);
      p += x + 1;
      *p++ = '.';
      std::memcpy(p, d + x + 1, s - x - 1);
      p += s - x - 1;
    } else {
      *p++ = '0';
      *p++ = '.';
      std::memset(p, '0', -x - 1);
      p += -x - 1;
      std::memcpy(p, d, s);
      p += s;
    }
  } else {
    *p++ = d[0];
    if (s > 1) {
      *p++ = '.';
      std::memcpy(p, d + 1, s - 1);
      p += s - 1;
    }
    *p++ = 'e';
    *p++ = x < 0 ? '-' : '+';
    const int ax = x < 0 ? -x : x;
    *p++ = static_cast<char>('0' + ax / 10);
    *p++ = static_cast<char>('0' + ax % 10);
  }
  return p;
}

}  // namespace

char* JsonDoubleTo(char* p, double v) {
  if (std::isnan(v)) {  // SQLite stores NaN as NULL; kept for safety
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  if (std::isinf(v)) {
    if (v < 0) *p++ = '-';
    std::memcpy(p, "9e999", 5);
    return p + 5;
  }
  if (v == 0) {
    if (std::signbit(v)) *p++ = '-';
    std::memcpy(p, "0.0", 3);
    return p + 3;
  }
  if (char* end = ShortestDecimal(p, v)) return end;
  auto r = std::to_chars(p, p + kJsonNumberMax - 2, v);  // shortest round-trip form
  char* end = r.ptr;
  // "1" would read back as an integer; keep REALs recognisable as numbers
  // with a fraction or exponent so consumers can tell 1 from 1.0.
  const size_t len = static_cast<size_t>(end - p);
  if (!std::memchr(p, '.', len) && !std::memchr(p, 'e', len)) {
    *end++ = '.';
    *end++ = '0';
  }
  return end;
}

void JsonDouble(std::string* out, double v) {
  char buf[kJsonNumberMax];
  out->append(buf, static_cast<size_t>(JsonDoubleTo(buf, v) - buf));
}

void JsonBlob(std::string* out, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  out->append("{\"$blob\":\"");
  size_t at = out->size();
  out->resize(at + 2 * n);
  for (size_t i = 0; i < n; i++) {
    (*out)[at + 2 * i] = kHex[b[i] >> 4];
    (*out)[at + 2 * i + 1] = kHex[b[i] & 15];
  }
  out->append("\"}");
}

void JsonValue(std::string* out, sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      JsonInt(out, sqlite3_value_int64(v));
      break;
    case SQLITE_FLOAT:
      JsonDouble(out, sqlite3_value_double(v));
      break;
    case SQLITE_TEXT: {
      const unsigned char* p = sqlite3_value_text(v);
      JsonString(out, reinterpret_cast<const char*>(p),
                 static_cast<size_t>(sqlite3_value_bytes(v)));
      break;
    }
    case SQLITE_BLOB: {
      const void* p = sqlite3_value_blob(v);
      JsonBlob(out, p, static_cast<size_t>(sqlite3_value_bytes(v)));
      break;
    }
    default:
      out->append("null", 4);
  }
}

}  // namespace cdc
