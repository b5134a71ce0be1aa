// retention.h — limits on what the log keeps for consumers (DESIGN §9).
//
//   SELECT cdc_config('max_lag_ms');             -- the setting (its default if unset)
//   SELECT cdc_config('max_log_rows', 1000000);  -- set it (NULL: back to the default)
//
// Settings live in __cdc_meta under 'retention.<key>'; 0 means no limit:
//   max_log_rows     rows a consumer may hold in the log (ids after its position)
//   max_log_bytes    bytes a consumer may hold in the log: the stored size of
//                    the log's rows (SQLite's record format), shared among
//                    consumers in proportion to the rows each holds
//   max_lag_ms       age of a consumer's oldest unacked change
//   idle_timeout_ms  time since a consumer with pending changes last read or
//                    acked (or was added)
//
// Bytes are a running count in __cdc_meta ('log_bytes.*'): each log row is
// measured once when a check first sees it and once when Prune deletes it,
// and not at all while the database's pages in use fit within the limit
// (then no consumer can hold more). No scan of the log.
//
// Reads. A read that returns changes (cdc_poll, a listener's batch) is
// recorded in __cdc_meta ('read.<name>', Unix ms) only when the consumer's
// last recorded read or ack is older than a tenth of idle_timeout_ms (at
// most a minute), in a short write transaction of its own that never waits
// for the write lock: taken, the record is left to a later read. A consumer
// that keeps acking never needs one; an ack counts as a read.
// A consumer past a limit is invalidated ("lost"): its position stops holding
// the log back, a mark 'lost.<name>' in __cdc_meta says why and when, and
// every read of it (cdc_poll, cdc_ack, cdc_wait, cdc_changes('name'),
// cdc_listen) fails with an error that says so and how to recover.
// cdc_consumer_add(name) starts a lost consumer again.
//
// Limits are checked by every cdc_ack that moves a position, by a
// listener's acker when it moves one (at most every 10 s: acker.cc), by
// cdc_consumer_add and cdc_consumer_drop, and by cdc_config with a value,
// inside their write transaction.
#pragma once

#include <string>

#include "util.h"

namespace cdc {

// The value of setting `key` (its default when unset).
Status RetentionSetting(sqlite3* db, const std::string& key, int64_t* out);
// Invalidates every consumer past a limit. In the caller's write transaction.
Status EnforceRetention(sqlite3* db);
// Why `name` was invalidated ("" when it was not, or no such mark).
Status LostReason(sqlite3* db, const std::string& name, std::string* reason);
// Forgets that `name` was invalidated and when it last read. In the
// caller's write transaction.
Status ForgetMarks(sqlite3* db, const std::string& name);
// Records that `name` has just read changes, if due (see above). Not in a
// transaction: does nothing when one is open on main. Never waits for the
// write lock (a busy timeout set with sqlite3_busy_timeout is set aside;
// no_busy_handler: the connection has none). Errors are not reported: a
// read that could not be recorded is recorded by a later one.
Status NoteRead(sqlite3* db, const std::string& name, bool no_busy_handler);
// NoteRead with what it would read given: `now` (Unix ms), the consumer's
// last recorded read, ack or creation `seen`, the idle_timeout_ms setting
// (-1: unset). cdc_poll reads them with the consumer's position.
Status NoteReadKnown(sqlite3* db, const std::string& name, int64_t now, int64_t seen, int64_t idle_setting,
                     bool no_busy_handler);
// Before Prune deletes the log rows with ids <= upto: keeps the byte count
// of max_log_bytes. In the caller's write transaction.
Status AccountPrune(sqlite3* db, int64_t upto);
// The error a read of a lost consumer fails with.
std::string LostError(const char* fn, const std::string& name, const std::string& reason);

// Prepares EnforceRetention's statements into `db`'s StmtCache (util.h), so
// that a listener's acker does not parse them while it holds the write lock.
void WarmRetention(sqlite3* db);

void SqlConfig(sqlite3_context* ctx, int argc, sqlite3_value** argv);

}  // namespace cdc
