// delivery.h — named consumers, cdc_poll / cdc_ack, pruning, cdc_status.
#pragma once

#include <string>

#include "log.h"

namespace cdc {

// Position (last acked id) of consumer `name`; an error naming `fn` that says
// how to add it when there is no such consumer.
Status ConsumerPosition(sqlite3* db, const char* fn, const std::string& name, int64_t* pos);

// Consumer `name`'s row as a reader that tells consumers apart needs it:
// found is false when there is no such consumer (or no internal tables
// yet); created is created_ms (-1 when NULL); lost (with why) when
// retention invalidated it. Errors only for failed reads (named `fn`).
struct ConsumerState {
  bool found = false;
  int64_t pos = 0;
  int64_t created = -1;
  bool lost = false;
  std::string lost_reason;
};
Status ReadConsumerState(sqlite3* db, const char* fn, const std::string& name, ConsumerState* out);
// Number of events after `pos`.
Status PendingCount(sqlite3* db, int64_t pos, int64_t* count);
// Moves `name` to `id` (clamped to the newest event <= id; ids below the
// position are a no-op) and prunes what every consumer has passed. Runs in a
// savepoint on db. *pos receives the new position.
Status AckConsumer(sqlite3* db, const char* fn, const std::string& name, int64_t id, int64_t* pos);
// Log rows one ack prunes beyond those it passed itself (a backlog left by
// a consumer dropped or behind is pruned over several acks).
constexpr int64_t kPruneChunk = 1000;
// The listener's ack (acker.cc): like AckConsumer, in a transaction of its
// own that takes the write lock only when it is free (the connection must
// have no busy handler), and prunes at most `prune` rows (0: none; pruning is
// the acker's to schedule), and checks the retention limits only when
// `check_limits`. *busy: the lock was taken (or, in rollback-journal mode, a
// reader kept the commit out); nothing changed, try again later. *left: log
// rows that could be pruned now.
Status AckNoWait(sqlite3* db, const char* fn, const std::string& name, int64_t id, int64_t prune,
                 bool check_limits, int64_t* pos, bool* busy, int64_t* left);
// Prepares the statements AckNoWait runs while it holds the write lock into
// `db`'s StmtCache (util.h): parsed there, they held it for milliseconds on
// a listener's first ack (cdc_busy_writer trace).
void WarmAck(sqlite3* db);
// Log rows every consumer has acked (all but the newest event): what Prune
// would delete with no chunk limit.
Status PrunableRows(sqlite3* db, int64_t* rows);
// Deletes log rows every consumer has acked, always keeping the newest event
// whole (with its continuation rows), so that ids are never reused; at most
// `max_rows` ids from the oldest row.
Status Prune(sqlite3* db, int64_t max_rows);
Status Prune(sqlite3* db);  // all of them
// The error for change `id` whose JSON alone (`bytes`) exceeds the
// connection's SQLITE_LIMIT_LENGTH `limit`: names the change and the ways past it.
Status EventTooBig(const char* fn, const std::string& consumer, int64_t id, size_t bytes, int64_t limit);
// Reads the consumer's next events as a JSON array (DESIGN §3), as many as fit
// in SQLITE_LIMIT_LENGTH (at most `limit`); an error if the first alone does not.
// *last_id (when given): the last event's id, 0 when there is none.
// *created (when given): the consumer's created_ms (-1 when NULL).
Status PollJson(sqlite3* db, const char* fn, const std::string& name, int64_t limit,
                std::string* out, int64_t* count, int64_t* last_id = nullptr, int64_t* created = nullptr);

void SqlConsumerAdd(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlConsumerDrop(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlPoll(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlAck(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlStatus(sqlite3_context* ctx, int argc, sqlite3_value** argv);

// Listener section of cdc_status() (registry.cc): a JSON array.
void AppendListenersJson(sqlite3* db, std::string* out);

}  // namespace cdc
