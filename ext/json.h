// json.h — strict RFC 8259 JSON output for sqlite-cdc.
//
// SQLite 3.40's json functions print REALs with 15 significant digits and
// reject BLOBs, so the extension writes its own JSON:
//   INTEGER -> integer (all 64 bits), REAL -> shortest text that parses back
//   to the identical double, +/-Inf -> 9e999 / -9e999, TEXT -> string (invalid
//   UTF-8 bytes become U+FFFD), NULL -> null, BLOB -> {"$blob":"<HEX>"}.
#pragma once

#include <sqlite3ext.h>

#include <cstdint>
#include <string>

SQLITE_EXTENSION_INIT3

namespace cdc {

void JsonString(std::string* out, const char* s, size_t n);
inline void JsonString(std::string* out, const std::string& s) {
  JsonString(out, s.data(), s.size());
}
void JsonInt(std::string* out, int64_t v);
void JsonDouble(std::string* out, double v);
// The same texts written at p, which has room for kJsonNumberMax bytes;
// return the end. For callers that put a number and its surroundings in
// one append.
constexpr size_t kJsonNumberMax = 40;
char* JsonIntTo(char* p, int64_t v);
char* JsonDoubleTo(char* p, double v);
void JsonBlob(std::string* out, const void* p, size_t n);
// Appends the JSON form of an sqlite3_value of any type.
void JsonValue(std::string* out, sqlite3_value* v);

}  // namespace cdc
