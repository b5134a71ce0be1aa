// last_poll.h — what cdc_poll last returned on a connection, per consumer.
//
//   SELECT cdc_poll('search', 1000);   -- remembered: the batch and its last id
//   SELECT cdc_ack('search');          -- acks up to that last id
//   SELECT cdc_ack('search', :batch);  -- the same text: acks up to its last id
//
// cdc_ack uses it so that a consumer acks with what it has at hand (nothing,
// or the batch it was given) instead of digging the last id out of the JSON.
// One entry per (connection, consumer), replaced by each cdc_poll, dropped
// when the connection closes. The batch's text is kept (it is the string
// cdc_poll built anyway, and the one its result points to) up to
// kMaxRememberedBatch bytes, so that cdc_ack
// can recognise it with one memcmp instead of parsing it; a larger batch is
// parsed (json_extract) when it comes back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "util.h"

namespace cdc {

constexpr size_t kMaxRememberedBatch = size_t{16} << 20;

// What is remembered of a poll. `created` is the consumer's created_ms then
// (-1 when NULL): a consumer dropped and added again since is another one.
struct PolledBatch {
  int64_t created = -1;
  int64_t last_id = 0;  // the last event's id, 0 for an empty batch
};

// After a successful cdc_poll of `name` on `db`; `json` is the text it
// returned (kept, shared with the SQL result, when not larger than
// kMaxRememberedBatch).
void RememberPoll(sqlite3* db, const std::string& name, const PolledBatch& b,
                  std::shared_ptr<const std::string> json);

// Makes `text` the SQL function's result without copying it: SQLite holds a
// reference until it is done with the value (its destructor callback drops
// it), so a batch polled again or forgotten meanwhile stays valid.
void ResultSharedText(sqlite3_context* ctx, const std::shared_ptr<const std::string>& text);

// The last cdc_poll of `name` on `db`; false when `db` has not polled
// `name` since it opened.
bool LastPoll(sqlite3* db, const std::string& name, PolledBatch* b);

// Whether `text` is byte for byte the last batch cdc_poll returned for
// `name` on `db`; then *b is what is remembered of it.
bool IsLastPolledBatch(sqlite3* db, const std::string& name, const char* text, size_t n, PolledBatch* b);

// Drops `db`'s memory (the connection is closing).
void ForgetPolls(sqlite3* db);

}  // namespace cdc
