// values_test.cc — every value survives capture and comes back through
// cdc_poll as strict JSON that decodes to the identical value (DESIGN §1.3,
// §1.4, §3), on tables of 1 to 2000 columns.
#include <gtest/gtest.h>

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "events.h"
#include "testing.h"

using cdctest::Db;
using cdctest::Ev;
using cdctest::PollAll;
using cdctest::Scalar;
using cdctest::TempDir;
using strictjson::Value;

namespace {

// A value to bind and the JSON it must come back as.
struct Cell {
  int type = SQLITE_NULL;
  int64_t i = 0;
  double d = 0;
  std::string s;  // TEXT or BLOB bytes

  static Cell Int(int64_t v) { Cell c; c.type = SQLITE_INTEGER; c.i = v; return c; }
  static Cell Real(double v) { Cell c; c.type = SQLITE_FLOAT; c.d = v; return c; }
  static Cell Text(std::string v) { Cell c; c.type = SQLITE_TEXT; c.s = std::move(v); return c; }
  static Cell Blob(std::string v) { Cell c; c.type = SQLITE_BLOB; c.s = std::move(v); return c; }
  static Cell Null() { return Cell(); }

  void Bind(sqlite3_stmt* st, int at) const {
    switch (type) {
      case SQLITE_INTEGER: sqlite3_bind_int64(st, at, i); break;
      case SQLITE_FLOAT: sqlite3_bind_double(st, at, d); break;
      case SQLITE_TEXT: sqlite3_bind_text64(st, at, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8); break;
      case SQLITE_BLOB: sqlite3_bind_blob64(st, at, s.data(), s.size(), SQLITE_TRANSIENT); break;
      default: sqlite3_bind_null(st, at);
    }
  }
};

std::string Hex(const std::string& b) {
  static const char* k = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : b) { o.push_back(k[c >> 4]); o.push_back(k[c & 15]); }
  return o;
}

// Checks that the decoded JSON value is exactly `c`.
::testing::AssertionResult Same(const Value& v, const Cell& c) {
  auto fail = [&](const std::string& why) { return ::testing::AssertionFailure() << why; };
  switch (c.type) {
    case SQLITE_NULL:
      return v.kind == Value::kNull ? ::testing::AssertionSuccess() : fail("expected null");
    case SQLITE_INTEGER:
      if (v.kind != Value::kInt) return fail("expected integer " + std::to_string(c.i) + ", got " + v.text);
      return v.i == c.i ? ::testing::AssertionSuccess() : fail("integer " + v.text + " != " + std::to_string(c.i));
    case SQLITE_FLOAT: {
      // REALs are written with a fraction or an exponent so they stay REALs.
      if (v.kind != Value::kReal) return fail("expected a real, got " + cdctest::Dump(v));
      if (std::memcmp(&v.d, &c.d, sizeof(double)) != 0 && !(v.d == 0 && c.d == 0)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", c.d);
        return fail("real " + v.text + " does not read back as " + buf);
      }
      return ::testing::AssertionSuccess();
    }
    case SQLITE_TEXT:
      if (v.kind != Value::kString) return fail("expected string");
      return v.s == c.s ? ::testing::AssertionSuccess() : fail("text differs (" + std::to_string(v.s.size()) + " vs " + std::to_string(c.s.size()) + " bytes)");
    case SQLITE_BLOB:
      if (v.kind != Value::kObject || v.members.size() != 1 || !v.Has("$blob") || v["$blob"].kind != Value::kString) {
        return fail("expected {\"$blob\":...}, got " + cdctest::Dump(v));
      }
      return v["$blob"].s == Hex(c.s) ? ::testing::AssertionSuccess() : fail("blob hex differs");
  }
  return fail("?");
}

void Insert(Db& db, const std::string& table, const std::vector<Cell>& row) {
  std::string sql = "INSERT INTO \"" + table + "\" VALUES(";
  for (size_t i = 0; i < row.size(); i++) sql += i ? ",?" : "?";
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), (sql + ")").c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db.get());
  for (size_t i = 0; i < row.size(); i++) row[i].Bind(st, static_cast<int>(i + 1));
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sqlite3_errmsg(db.get());
  sqlite3_finalize(st);
}

void Update(Db& db, const std::string& table, const std::vector<std::string>& cols, const std::vector<Cell>& row,
            const std::string& where) {
  std::string sql = "UPDATE \"" + table + "\" SET ";
  for (size_t i = 0; i < row.size(); i++) sql += (i ? ",\"" : "\"") + cols[i] + "\"=?";
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), (sql + " WHERE " + where).c_str(), -1, &st, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db.get());
  for (size_t i = 0; i < row.size(); i++) row[i].Bind(st, static_cast<int>(i + 1));
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sqlite3_errmsg(db.get());
  sqlite3_finalize(st);
}

void ExpectImage(const Value& img, const std::vector<std::string>& cols, const std::vector<Cell>& row) {
  ASSERT_EQ(img.kind, Value::kObject);
  ASSERT_EQ(img.members.size(), cols.size());
  for (size_t i = 0; i < cols.size(); i++) {
    EXPECT_EQ(img.members[i].first, cols[i]);
    EXPECT_TRUE(Same(img.members[i].second, row[i])) << "column " << cols[i];
  }
}

std::string PollText(Db& db) { return Scalar(db.get(), "SELECT cdc_poll('audit', 1000000)"); }

}  // namespace

TEST(Values, ScalarExtremesRoundTrip) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(n INTEGER PRIMARY KEY, txt TEXT, untyped, r REAL, i INTEGER, num NUMERIC);"
          "CREATE TABLE s(n INTEGER PRIMARY KEY, a ANY, b BLOB, t TEXT, r REAL) STRICT;"
          "SELECT cdc_setup('t'), cdc_setup('s'), cdc_consumer_add('audit');");
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<Cell> samples = {
      Cell::Real(0.1 + 0.2), Cell::Real(1e-310), Cell::Real(5e-324), Cell::Real(DBL_MAX),
      Cell::Real(-DBL_MAX), Cell::Real(DBL_MIN), Cell::Real(M_PI), Cell::Real(1.0 / 3),
      Cell::Real(123456789012345678.0), Cell::Real(-1.5e-300), Cell::Real(2.5),
      Cell::Real(9007199254740993.0), Cell::Real(1e22), Cell::Real(1e23),
      Cell::Int(std::numeric_limits<int64_t>::min()), Cell::Int(std::numeric_limits<int64_t>::max()),
      Cell::Int(0), Cell::Int(-1), Cell::Int(9007199254740993LL),
      Cell::Text(""), Cell::Text("plain"), Cell::Text("quote \" back \\ slash / nl \n tab \t cr \r"),
      Cell::Text(std::string("nul\0in\0side", 11)), Cell::Text("\x01\x1f\x7f control"),
      Cell::Text("ünïcödé 名前 🎉"), Cell::Text("1e5"), Cell::Text("null"),
      Cell::Blob(""), Cell::Blob(std::string("\x00\xff\x10 text-ish", 12)), Cell::Null()};
  // Every sample into the untyped column of t (kept exactly as given) and
  // BLOBs into TEXT and STRICT ANY columns.
  int n = 0;
  for (const auto& c : samples) {
    Insert(db, "t", {Cell::Int(++n), Cell::Null(), c, Cell::Null(), Cell::Null(), Cell::Null()});
  }
  Insert(db, "t", {Cell::Int(++n), Cell::Blob("\x01\x02"), Cell::Null(), Cell::Real(inf), Cell::Real(-inf), Cell::Null()});
  Insert(db, "s", {Cell::Int(1), Cell::Blob("\xca\xfe"), Cell::Blob(std::string(1, '\0')), Cell::Text("t"), Cell::Real(0.1 + 0.2)});
  Insert(db, "s", {Cell::Int(2), Cell::Real(-inf), Cell::Null(), Cell::Null(), Cell::Real(1e-310)});
  std::string raw = PollText(db);
  EXPECT_NE(raw.find("9e999"), std::string::npos);
  EXPECT_NE(raw.find("-9e999"), std::string::npos);
  EXPECT_EQ(raw.find("Inf"), std::string::npos);
  EXPECT_EQ(raw.find("NaN"), std::string::npos);
  auto evs = cdctest::ParseEvents(raw);
  ASSERT_EQ(evs.size(), samples.size() + 3);
  for (size_t k = 0; k < samples.size(); k++) {
    EXPECT_TRUE(Same(evs[k].after["untyped"], samples[k])) << "sample " << k << ": " << evs[k].after["untyped"].text;
  }
  size_t m = samples.size();
  EXPECT_TRUE(Same(evs[m].after["txt"], Cell::Blob("\x01\x02")));
  EXPECT_TRUE(Same(evs[m].after["r"], Cell::Real(inf)));
  EXPECT_TRUE(Same(evs[m].after["i"], Cell::Real(-inf)));
  EXPECT_EQ(evs[m].after["r"].text, "9e999");
  EXPECT_EQ(evs[m].after["i"].text, "-9e999");
  EXPECT_TRUE(Same(evs[m + 1].after["a"], Cell::Blob("\xca\xfe")));
  EXPECT_TRUE(Same(evs[m + 1].after["b"], Cell::Blob(std::string(1, '\0'))));
  EXPECT_TRUE(Same(evs[m + 1].after["r"], Cell::Real(0.1 + 0.2)));
  EXPECT_TRUE(Same(evs[m + 2].after["a"], Cell::Real(-inf)));
  EXPECT_TRUE(Same(evs[m + 2].after["r"], Cell::Real(1e-310)));
}

// Column affinity applies before capture: the image holds the stored value.
TEST(Values, ImagesHoldTheStoredValueAfterAffinity) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(r REAL, i INTEGER, x TEXT, n NUMERIC); SELECT cdc_setup('t');"
          "INSERT INTO t VALUES(1, '2', 3, '4.0'), (-0.0, 2.0, 1.5, '0x10');");
  auto evs = PollAll(db);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(cdctest::Dump(evs[0].after), R"({"r":R1,"i":2,"x":"3","n":4})");
  EXPECT_EQ(evs[0].after["r"].text, "1.0");
  // -0.0 in a REAL column is stored as the integer 0 and reads back as 0.0.
  EXPECT_EQ(evs[1].after["r"].text, "0.0");
  EXPECT_EQ(cdctest::Dump(evs[1].after), R"({"r":R0,"i":2,"x":"1.5","n":"0x10"})");
}

// Integers of every digit count and sign come back as the exact decimal
// text; REALs as std::to_chars's shortest form, with ".0" when it has
// neither a fraction nor an exponent (json.cc writes both by hand).
TEST(Values, NumbersAtEveryDigitCountAsText) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(v); SELECT cdc_setup('t'), cdc_consumer_add('audit')");
  std::vector<int64_t> ints = {0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  for (int64_t p = 1;; p *= 10) {  // 1 .. 10^18
    for (int64_t v : {p - 1, p, p + 1, 5 * p}) {
      ints.push_back(v);
      ints.push_back(-v);
    }
    if (p == 1000000000000000000LL) break;
  }
  std::vector<double> reals = {1.0, 100.0, 0.5, 0.001, 0.0001, 1e-7, 1e15, 1e16, 1e21, 123456.75, -2.5e-300,
                               1.0 / 3, 1e300, 4.9e-324, -100.0, 1e6, 1234567.0};
  db.Exec("BEGIN");
  for (int64_t v : ints) Insert(db, "t", {Cell::Int(v)});
  for (double d : reals) Insert(db, "t", {Cell::Real(d)});
  db.Exec("COMMIT");
  auto evs = cdctest::ParseEvents(PollText(db));
  ASSERT_EQ(evs.size(), ints.size() + reals.size());
  for (size_t i = 0; i < ints.size(); i++) EXPECT_EQ(evs[i].after["v"].text, std::to_string(ints[i]));
  for (size_t i = 0; i < reals.size(); i++) {
    char buf[40];
    std::string want(buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, reals[i]).ptr - buf));
    if (want.find_first_of(".e") == std::string::npos) want += ".0";
    EXPECT_EQ(evs[ints.size() + i].after["v"].text, want);
  }
}

// Every ASCII byte (and a two-, three- and four-byte UTF-8 character) at
// every position of strings up to 19 bytes comes back as the same string:
// json.cc scans 8 bytes at a time for bytes to escape, so each has to be
// found wherever it sits in a word.
TEST(Values, EveryCharacterAtEveryOffsetRoundTrips) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(v); SELECT cdc_setup('t'), cdc_consumer_add('audit')");
  std::vector<std::string> texts;
  std::vector<std::string> chars = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
  for (int b = 0; b < 0x80; b++) chars.push_back(std::string(1, static_cast<char>(b)));
  for (const std::string& c : chars) {
    for (size_t len : {1, 7, 8, 9, 16, 19}) {
      for (size_t at = 0; at + c.size() <= len; at++) {
        std::string t(len, 'a');
        t.replace(at, c.size(), c);
        texts.push_back(t);
      }
    }
  }
  db.Exec("BEGIN");
  for (const std::string& t : texts) Insert(db, "t", {Cell::Text(t)});
  db.Exec("COMMIT");
  auto evs = cdctest::ParseEvents(PollText(db));
  ASSERT_EQ(evs.size(), texts.size());
  for (size_t i = 0; i < texts.size(); i++) {
    ASSERT_EQ(evs[i].after["v"].s, texts[i]) << "text " << i;
  }
}

// A REAL -0.0 in an untyped column keeps its sign.
TEST(Values, NegativeZero) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(v); SELECT cdc_setup('t'), cdc_consumer_add('audit')");
  Insert(db, "t", {Cell::Real(-0.0)});
  auto evs = cdctest::ParseEvents(PollText(db));
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].after["v"].text, "-0.0");
  EXPECT_TRUE(std::signbit(evs[0].after["v"].d));
}

// Invalid UTF-8 cannot be carried by strict JSON: each bad byte becomes
// U+FFFD, the output stays valid, and valid neighbours are kept.
TEST(Values, InvalidUtf8BecomesReplacementCharacter) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(v); SELECT cdc_setup('t'), cdc_consumer_add('audit')");
  Insert(db, "t", {Cell::Text("a\xff" "b\xc3(\xed\xa0\x80z\xf4\x90\x80\x80\xc3\xa9")});
  auto evs = cdctest::ParseEvents(PollText(db));
  ASSERT_EQ(evs.size(), 1u);
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(evs[0].after["v"].s, "a" + r + "b" + r + "(" + r + r + r + "z" + r + r + r + r + "\xc3\xa9");
}

TEST(Values, TenMegabyteText) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'), cdc_consumer_add('audit')");
  std::string big(10 * 1024 * 1024, 'x');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  big[5] = '"';
  Insert(db, "t", {Cell::Int(1), Cell::Text(big)});
  std::string bigblob(3 * 1024 * 1024, '\xab');
  Update(db, "t", {"v"}, {Cell::Blob(bigblob)}, "id = 1");
  auto evs = cdctest::ParseEvents(PollText(db));
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_TRUE(Same(evs[0].after["v"], Cell::Text(big)));
  EXPECT_TRUE(Same(evs[1].before["v"], Cell::Text(big)));
  EXPECT_TRUE(Same(evs[1].after["v"], Cell::Blob(bigblob)));
}

// Wide tables: INSERT / UPDATE / DELETE images are exact, with NULLs
// anywhere (column 64+ included) and continuation rows past the log width.
class Wide : public ::testing::TestWithParam<int> {};

INSTANTIATE_TEST_SUITE_P(Columns, Wide, ::testing::Values(1, 63, 64, 100, 1000, 1999, 2000));

TEST_P(Wide, ExactImages) {
  const int ncols = GetParam();
  TempDir tmp;
  Db db(tmp.File("t.db"));
  // A narrow table captured first: the log is widened later; its events
  // must keep decoding.
  db.Exec("CREATE TABLE narrow(a, b); SELECT cdc_setup('narrow'), cdc_consumer_add('audit');"
          "INSERT INTO narrow VALUES(1, 2)");
  std::vector<std::string> cols;
  std::string sql = "CREATE TABLE \"w ide\"(";
  for (int i = 0; i < ncols; i++) {
    cols.push_back(i == 0 ? "id" : "c" + std::to_string(i) + (i % 7 == 0 ? " ü" : ""));
    sql += (i ? ", \"" : "\"") + cols.back() + "\"" + (i == 0 ? " INTEGER PRIMARY KEY" : "");
  }
  db.Exec(sql + ")");
  EXPECT_EQ(db.One("SELECT cdc_setup('w ide')"), "1");
  std::mt19937_64 rng(static_cast<uint64_t>(ncols));
  auto row = [&](int64_t id) {
    std::vector<Cell> r{Cell::Int(id)};
    for (int i = 1; i < ncols; i++) {
      switch (rng() % 6) {
        case 0: r.push_back(Cell::Null()); break;
        case 1: r.push_back(Cell::Int(static_cast<int64_t>(rng()))); break;
        case 2: r.push_back(Cell::Real(std::ldexp(static_cast<double>(rng() % 1000003), -static_cast<int>(rng() % 60)))); break;
        case 3: r.push_back(Cell::Text("t" + std::to_string(rng() % 1000))); break;
        case 4: r.push_back(Cell::Blob(std::string(1 + rng() % 4, static_cast<char>(rng())))); break;
        default: r.push_back(Cell::Real(0.1 * static_cast<double>(rng() % 100))); break;
      }
    }
    if (ncols > 64) r[64] = Cell::Null();
    return r;
  };
  auto r1 = row(1), r2 = row(1);
  Insert(db, "w ide", r1);
  Update(db, "w ide", cols, r2, "id = 1");
  db.Exec("DELETE FROM \"w ide\"; INSERT INTO narrow VALUES(3, 4)");
  auto evs = PollAll(db);
  ASSERT_EQ(evs.size(), 5u);
  EXPECT_EQ(cdctest::Dump(evs[0].after), R"({"a":1,"b":2})");
  EXPECT_EQ(evs[1].op, "INSERT");
  EXPECT_TRUE(evs[1].before.IsNull());
  ExpectImage(evs[1].after, cols, r1);
  EXPECT_EQ(evs[2].op, "UPDATE");
  ExpectImage(evs[2].before, cols, r1);
  ExpectImage(evs[2].after, cols, r2);
  EXPECT_EQ(evs[3].op, "DELETE");
  ExpectImage(evs[3].before, cols, r2);
  EXPECT_TRUE(evs[3].after.IsNull());
  EXPECT_EQ(cdctest::Dump(evs[4].after), R"({"a":3,"b":4})");
  // Event ids are the ids of their final rows, strictly increasing.
  for (size_t i = 1; i < evs.size(); i++) EXPECT_GT(evs[i].id, evs[i - 1].id);
  // cdc_changes renders the same images.
  auto rows = db.Rows("SELECT before, after FROM cdc_changes WHERE tbl = 'w ide' AND op = 'UPDATE'");
  ASSERT_EQ(rows.size(), 1u);
  ExpectImage(strictjson::Parse(rows[0].substr(0, rows[0].find("}|{") + 1)), cols, r1);
}
