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
  // LogCursor: "table" as JSON text, for EventJson (empty: it encodes `table`).
  std::string table_json;
  bool has_before = false, has_after = false;
  std::string before;  // JSON object text when has_before
  std::string after;   // JSON object text when has_after
  std::string reason;  // markers written because of a schema change: why
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

// A forward cursor over the events of a range, in id order. Holds one
// statement on the connection while open; Close() (or destruction) ends it.
class LogCursor {
 public:
  Status Open(sqlite3* db, const ReadRange& range);
  // Open, keeping the shapes earlier scans loaded (a listener's reads: each
  // read otherwise loads its shapes again, a fifth of a small read's work).
  // Only while the internal tables cannot have been dropped and created
  // again since (cdc_teardown() reuses shape ids): the caller forgets them
  // when the schema changed.
  Status Reopen(sqlite3* db, const ReadRange& range);
  void ForgetShapes();
  // Ends the scan (its statement), keeping the shapes.
  void EndScan();
  // Moves to the next event; *have is false at the end of the range. The
  // event is built in `into` when given (reusing its strings' storage),
  // else in event().
  Status Next(bool* have, Event* into = nullptr);
  const Event& event() const { return e_; }
  void Close();
  ~LogCursor() { Close(); }

 private:
  struct Shape {
    std::string table;
    std::string table_json;  // as a JSON string
    // Per column, what precedes its value in an image: '{' for the first
    // column, ',' for the others, then the JSON-encoded name and ':'.
    std::vector<std::string> keys;
  };
  Status LoadShape(int64_t id, const Shape** out);
  void ClearCont();
  Status Start(sqlite3* db, const ReadRange& range);

  sqlite3* db_ = nullptr;
  Stmt st_;
  ReadRange range_;
  int64_t emitted_ = 0;
  Event e_;
  std::vector<sqlite3_value*> cont_;  // values of pending continuation rows
  std::vector<sqlite3_value*> seq_;   // the current event's value sequence
  // Shapes are immutable, but cdc_teardown() may reuse ids: cached per Open
  // (or across Reopen, see there).
  std::unordered_map<int64_t, Shape> shapes_;
  const Shape* shape_ = nullptr;  // the last row's shape
  int64_t shape_id_ = 0;
};

// Calls fn for each event in range, in id order; stops early when fn returns
// false.
Status ReadEvents(sqlite3* db, const ReadRange& range, const std::function<bool(const Event&)>& fn);

// SQL: the id of the newest event row with id <= X (0 if none), X an SQL
// parameter such as "?1": where a scan for "id > X" must start so that
// continuation rows come with their event.
#define CDC_EVENT_FLOOR_SQL(X) \
  "coalesce((SELECT id FROM main.__cdc_log WHERE id <= " X " AND op <> 0 ORDER BY id DESC LIMIT 1), 0)"

}  // namespace cdc
