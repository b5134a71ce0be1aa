// strict_json_test.cc — the tests' JSON parser is as strict as RFC 8259, so
// "parses with strictjson" really means "is strict JSON".
#include "strict_json.h"

#include <gtest/gtest.h>

TEST(StrictJsonParser, RejectsWhatRfc8259Forbids) {
  const char* bad[] = {
      "NaN", "Infinity", "-Infinity", "[NaN]", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "0x10",
      "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{a:1}", "'x'", "\"\\x41\"", "\"\\u12\"",
      "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"", "\"nl\nhere\"",
      "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"",
      "{\"a\":1,\"a\":2}", "true false", "[1]]", "", " ", "nul", "[", "{\"a\":}", "9223372036854775808",
      "-9223372036854775809", "\"unterminated",
  };
  for (const char* b : bad) {
    EXPECT_THROW(strictjson::Parse(b), std::runtime_error) << b;
  }
}

TEST(StrictJsonParser, AcceptsValidJson) {
  EXPECT_EQ(strictjson::Parse("9223372036854775807").i, INT64_MAX);
  EXPECT_EQ(strictjson::Parse("-9223372036854775808").i, INT64_MIN);
  EXPECT_EQ(strictjson::Parse("9e999").d, HUGE_VAL);
  EXPECT_EQ(strictjson::Parse("-9e999").d, -HUGE_VAL);
  EXPECT_EQ(strictjson::Parse("0.30000000000000004").d, 0.1 + 0.2);
  EXPECT_EQ(strictjson::Parse("1e-310").d, 1e-310);
  EXPECT_EQ(strictjson::Parse("-0.0").kind, strictjson::Value::kReal);
  EXPECT_EQ(strictjson::Parse("\"\\ud83c\\udf89 \\u0000 \\/ é\"").s, std::string("\xf0\x9f\x8e\x89 \0 / \xc3\xa9", 11));
  auto v = strictjson::Parse(" {\"a\": [1, 2.5, \"x\", null, true, false, {}], \"b\": {\"$blob\": \"00FF\"}} ");
  EXPECT_EQ(v["a"].items.size(), 7u);
  EXPECT_EQ(v["b"]["$blob"].s, "00FF");
}
