// log.h — reading events back out of __cdc_log.
//
// The one reader of the log, used by cdc_poll, the cdc_changes virtual table,
// cdc_wait and the listener thread. It assembles continuation rows, decodes
// the stored values with their shape's column names and renders the images
// as strict JSON (json.h).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "schema.h"

namespace cdc {

struct Event {
  int64_t id = 0;
  int64_t ts = 0;
  int op = 0;
  std::string table;
  bool has_before = false, has_after = false;
  std::string before;  // JSON object text when has_before
  std::string after;   // JSON object text when has_after
};

// Appends the event as the JSON object of DESIGN §3.
void EventJson(std::string* out, const Event& e);

struct ReadRange {
  int64_t after = 0;                                    // id > after
  int64_t upto = std::numeric_limits<int64_t>::max();  // id <= upto
  bool by_table = false;
  std::string table;                                    // when by_table
  int64_t limit = std::numeric_limits<int64_t>::max();  // events, not rows
};

class LogReader {
 public:
  // Calls fn for each event in range, in id order; stops early when fn
  // returns false. The reader holds no statement between calls.
  Status Read(sqlite3* db, const ReadRange& range, const std::function<bool(const Event&)>& fn);

 private:
  struct Shape {
    std::string table;
    std::vector<std::string> keys;  // JSON-encoded column names
  };
  Status LoadShape(sqlite3* db, int64_t id, const Shape** out);
  std::unordered_map<int64_t, Shape> shapes_;
};

// Id of the newest event row with id <= x (0 if none): where a scan for
// "id > x" must start so that continuation rows come with their event.
Status EventFloor(sqlite3* db, int64_t x, int64_t* out);

}  // namespace cdc
