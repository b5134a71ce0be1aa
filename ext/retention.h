// retention.h — limits on what the log keeps for consumers (DESIGN §9).
//
//   SELECT cdc_config('max_lag_ms');             -- the setting (its default if unset)
//   SELECT cdc_config('max_log_rows', 1000000);  -- set it (NULL: back to the default)
//
// Settings live in __cdc_meta under 'retention.<key>'; 0 means no limit:
//   max_log_rows     rows a consumer may hold in the log (ids after its position)
//   max_lag_ms       age of a consumer's oldest unacked change
//   idle_timeout_ms  time since a consumer with pending changes last acked
//                    (or was added)
// A consumer past a limit is invalidated ("lost"): its position stops holding
// the log back, a mark 'lost.<name>' in __cdc_meta says why and when, and
// every read of it (cdc_poll, cdc_ack, cdc_wait, cdc_changes('name'),
// cdc_listen) fails with an error that says so and how to recover.
// cdc_consumer_add(name) starts a lost consumer again.
//
// Limits are checked by every ack that moves a position (cdc_ack, a
// listener's acker), by cdc_consumer_add and cdc_consumer_drop, and by
// cdc_config with a value, inside their write transaction.
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
// Forgets that `name` was invalidated. In the caller's write transaction.
Status ClearLost(sqlite3* db, const std::string& name);
// The error a read of a lost consumer fails with.
std::string LostError(const char* fn, const std::string& name, const std::string& reason);

void SqlConfig(sqlite3_context* ctx, int argc, sqlite3_value** argv);

}  // namespace cdc
