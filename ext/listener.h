// listener.h — cdc_listen / cdc_serve / cdc_unlisten / cdc_wait (DESIGN §4).
#pragma once

#include "util.h"

namespace cdc {

void SqlListen(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlServe(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlUnlisten(sqlite3_context* ctx, int argc, sqlite3_value** argv);
void SqlWait(sqlite3_context* ctx, int argc, sqlite3_value** argv);

// Per-connection state: created when the extension registers cdc_unlisten on
// `db` (its pApp), destroyed by SQLite when that connection closes or the
// function is replaced. Destroying it stops the connection's listeners, so
// they end before the connection (and the extension's code) goes away.
void* NewConnectionState(sqlite3* db);
void DestroyConnectionState(void* state);

}  // namespace cdc
