// double_text_test.cc — the text of a REAL in an image is exactly what
// std::to_chars's shortest round-trip form gives (plus ".0" when that has
// neither a point nor an exponent), for every kind of double: json.cc
// writes short decimals itself, without to_chars, and must agree with it
// byte for byte (DESIGN §3: a REAL parses back to the identical double).
#include <gtest/gtest.h>

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

namespace {

// Today's text of a double, computed here independently of json.cc.
std::string Reference(double d) {
  if (std::isinf(d)) return d > 0 ? "9e999" : "-9e999";
  char buf[40];
  std::string s(buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, d).ptr - buf));
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

double FromBits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

// Checks every double of `values` through capture and cdc_changes.
void CheckAll(const std::vector<double>& values) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(v REAL); SELECT cdc_setup('t')");
  db.Exec("BEGIN");
  sqlite3_stmt* ins = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "INSERT INTO t(v) VALUES(?1)", -1, &ins, nullptr), SQLITE_OK);
  std::vector<double> kept;
  for (double d : values) {
    if (std::isnan(d)) continue;  // SQLite stores NaN as NULL
    sqlite3_bind_double(ins, 1, d);
    ASSERT_EQ(sqlite3_step(ins), SQLITE_DONE);
    sqlite3_reset(ins);
    kept.push_back(d);
  }
  sqlite3_finalize(ins);
  db.Exec("COMMIT");
  // What SQLite kept: a REAL with an integer value is stored as an integer
  // and read back as a REAL, so -0.0 comes back as 0.0 (before any JSON).
  sqlite3_stmt* back = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT v FROM t ORDER BY rowid", -1, &back, nullptr), SQLITE_OK);
  for (double& d : kept) {
    ASSERT_EQ(sqlite3_step(back), SQLITE_ROW);
    d = sqlite3_column_double(back, 0);
  }
  sqlite3_finalize(back);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT after FROM cdc_changes ORDER BY id", -1, &q, nullptr), SQLITE_OK);
  size_t i = 0, bad = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    ASSERT_LT(i, kept.size());
    std::string after(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
    ASSERT_EQ(after.compare(0, 5, "{\"v\":"), 0) << after;
    std::string got = after.substr(5, after.size() - 6);
    std::string want = Reference(kept[i]);
    if (got != want && bad++ < 20) {
      char hex[40];
      std::snprintf(hex, sizeof hex, "%a", kept[i]);
      ADD_FAILURE() << "double " << hex << ": got " << got << ", to_chars gives " << want;
    }
    if (!std::isinf(kept[i])) {
      EXPECT_EQ(std::strtod(got.c_str(), nullptr), kept[i]) << got;
    }
    i++;
  }
  sqlite3_finalize(q);
  EXPECT_EQ(i, kept.size());
  EXPECT_EQ(bad, 0u);
}

}  // namespace

// Short decimals (the fast path): every digit count from 1 to 17 and every
// place of the point from 10^0 to 10^-12 and 10^12, both signs, each as
// parsed from its text and as computed n / 10^k, and the doubles next to
// them (which are not short).
TEST(DoubleText, ShortDecimalsAsToChars) {
  std::mt19937_64 rng(17);
  std::vector<double> v;
  for (int digits = 1; digits <= 17; digits++) {
    for (int k = -12; k <= 12; k++) {
      for (int rep = 0; rep < 40; rep++) {
        uint64_t n = rng() % 9 + 1;
        for (int i = 1; i < digits; i++) n = n * 10 + rng() % 10;
        if (rep % 4 == 0) n -= n % 100;  // trailing zeros
        std::string text = std::to_string(n) + "e" + std::to_string(-k);
        const double d = std::strtod(text.c_str(), nullptr);
        v.push_back(d);
        v.push_back(-d);
        v.push_back(std::nextafter(d, 0.0));
        v.push_back(std::nextafter(d, HUGE_VAL));
        if (k >= 0 && k <= 22) v.push_back(static_cast<double>(n) / std::pow(10.0, k));
      }
    }
  }
  for (int i = 0; i < 20000; i++) {  // prices, percentages, hand-typed numbers
    const int64_t cents = static_cast<int64_t>(rng() % 100000000) - 50000000;
    v.push_back(static_cast<double>(cents) / 100);
    v.push_back(static_cast<double>(cents) * 0.01);  // not always the same double
    v.push_back(0.1 * static_cast<double>(i));
    v.push_back(static_cast<double>(i) / 7);
  }
  CheckAll(v);
}

// Every other kind of double: random bit patterns, integer-valued reals
// around every power of ten, powers of ten and two, the edges of the fast
// path (1e-8, 1e-6, 1e15), subnormals, the extremes, zeros and infinities.
TEST(DoubleText, EveryKindOfDoubleAsToChars) {
  std::mt19937_64 rng(1717);
  std::vector<double> v;
  for (int i = 0; i < 60000; i++) v.push_back(FromBits(rng()));
  for (int i = 0; i < 5000; i++) v.push_back(FromBits(rng() & 0x000fffffffffffffULL));  // subnormals
  // Random doubles from 2^-30 to 2^52 (16 and 17 digits: the exact path),
  // and quotients like the benchmark's.
  for (int i = 0; i < 60000; i++) {
    const uint64_t exp = 1023 - 30 + rng() % 83;
    v.push_back(FromBits((exp << 52) | (rng() & 0x000fffffffffffffULL) | (i % 2 ? 0x8000000000000000ULL : 0)));
    v.push_back(static_cast<double>(rng() % 100000) / 7.0);
    v.push_back(static_cast<double>(rng() % 1000000007) / 3.0 * std::pow(10.0, static_cast<int>(rng() % 20) - 10));
  }
  for (int e = -30; e <= 30; e++) {
    const double p = std::strtod(("1e" + std::to_string(e)).c_str(), nullptr);
    for (double d : {p, std::nextafter(p, 0.0), std::nextafter(p, HUGE_VAL), 2 * p, 5 * p, 9.5 * p, 1.5 * p,
                     p - 1, p + 1, 3 * p + 7}) {
      v.push_back(d);
      v.push_back(-d);
    }
  }
  for (int e = -1074; e <= 1023; e++) v.push_back(std::ldexp(1.0, e));
  for (int64_t n = 1; n < 2000000; n = n * 3 + 1) v.push_back(static_cast<double>(n));
  for (double d : {0.0, -0.0, 1e-8, 9.999999999999999e-9, 1e-6, 9.999999999999999e-7, 1.0000000000000002e-6,
                   1e15, 999999999999999.0, 999999999999999.9, 99999999999999.99, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, DBL_MIN, DBL_TRUE_MIN, DBL_MAX, -DBL_MAX,
                   DBL_EPSILON, 4503599627370496.5, 9007199254740993.0, 123456789012345.6, 0.000123456789,
                   1e22, 1e23, 5e-324, 1.7976931348623157e308, std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    v.push_back(d);
    v.push_back(-d);
    v.push_back(std::nextafter(d, 0.0));
  }
  CheckAll(v);
}
