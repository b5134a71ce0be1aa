// cdc.cc — entry point of the sqlite-cdc loadable extension.
//
//   .load ./build/cdc            -- sqlite3 shell
//   SELECT cdc_setup('orders');  -- capture a table
//
// Registers every SQL function and module from the static tables below and
// reports which one failed. The functions themselves live beside this file,
// one concern per file (capture.cc, ...). The reference is docs/reference.md.
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <cxxabi.h>

#include <exception>
#include <new>
#include <string>

#include "capture.h"
#include "delivery.h"
#include "drift.h"
#include "last_poll.h"
#include "listener.h"
#include "retention.h"
#include "util.h"



namespace cdc {

using SqlFn = void (*)(sqlite3_context*, int, sqlite3_value**);

void SqlBootstrap(sqlite3_context* ctx, int argc, sqlite3_value** argv);
const sqlite3_module* ChangesModule();

namespace {

void SqlVersion(sqlite3_context* ctx, int, sqlite3_value**) {
  sqlite3_result_text(ctx, CDC_VERSION_STRING, -1, SQLITE_STATIC);
}

// Functions that change the schema or the log are SQLITE_DIRECTONLY: they
// cannot be called from triggers, views or CHECK constraints.
constexpr int kDirect = SQLITE_UTF8 | SQLITE_DIRECTONLY;
constexpr int kPure = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;

struct FunctionDef {
  const char* name;
  int nargs;
  int flags;
  SqlFn fn;
};

const FunctionDef kFunctions[] = {
    {"cdc_version", 0, kPure, SqlVersion},
    {"cdc_setup", 1, kDirect, SqlSetup},
    {"cdc_setup", 2, kDirect, SqlSetup},
    {"cdc_teardown", 0, kDirect, SqlTeardown},
    {"cdc_teardown", 1, kDirect, SqlTeardown},
    {"cdc_bootstrap", 1, kDirect, SqlBootstrap},
    {"cdc_bootstrap", 2, kDirect, SqlBootstrap},
    {"cdc_consumer_add", 1, kDirect, SqlConsumerAdd},
    {"cdc_consumer_add", 2, kDirect, SqlConsumerAdd},
    {"cdc_consumer_drop", 1, kDirect, SqlConsumerDrop},
    {"cdc_poll", 1, kDirect, SqlPoll},
    {"cdc_poll", 2, kDirect, SqlPoll},
    {"cdc_ack", 1, kDirect, SqlAck},
    {"cdc_ack", 2, kDirect, SqlAck},
    {"cdc_status", 0, SQLITE_UTF8, SqlStatus},
    {"cdc_config", 1, kDirect, SqlConfig},
    {"cdc_config", 2, kDirect, SqlConfig},
    {"cdc_listen", 2, kDirect, SqlListen},
    {"cdc_listen", 3, kDirect, SqlListen},
    {"cdc_serve", 2, kDirect, SqlServe},
    {"cdc_serve", 3, kDirect, SqlServe},
    {"cdc_unlisten", 1, kDirect, SqlUnlisten},
    {"cdc_wait", 2, kDirect, SqlWait},
};

}  // namespace

// A function's registration: its implementation, and for cdc_unlisten the
// connection's listener state.
struct Registration {
  SqlFn fn;
  void* conn_state;
  sqlite3* db;
};

void DestroyRegistration(void* p) {
  auto* reg = static_cast<Registration*>(p);
  if (reg->conn_state) {  // once per connection, as it closes
    DestroyConnectionState(reg->conn_state);
    ForgetConnection(reg->db);
    ForgetPolls(reg->db);
  }
  delete reg;
}

namespace {

// Every function runs through this trampoline (the implementation is in the
// registration), so no C++ exception ever crosses into SQLite. A forced
// unwind is not an exception of ours: a host ending the thread (pthread_exit,
// e.g. CPython at exit inside cdc_serve's callback) must pass through, so the
// trampoline is not noexcept and rethrows it.
CDC_CATCHES_FORCED_UNWIND void Trampoline(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  try {
    static_cast<Registration*>(sqlite3_user_data(ctx))->fn(ctx, argc, argv);
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (const std::bad_alloc&) {
    sqlite3_result_error_nomem(ctx);
  } catch (const std::exception& e) {
    sqlite3_result_error(ctx, e.what(), -1);
  } catch (...) {
    sqlite3_result_error(ctx, "sqlite-cdc: internal error", -1);
  }
}

}  // namespace
}  // namespace cdc

extern "C" __attribute__((visibility("default"))) int sqlite3_cdc_init(
    sqlite3* db, char** pzErrMsg, const sqlite3_api_routines* pApi) {
  // SQLITE_EXTENSION_INIT2, written only when it changes: cdc.so stays
  // loaded while listener threads run (listener.cc), and they read the API
  // pointer while another connection loads the extension again (a write of
  // the same value, but a data race all the same).
  if (sqlite3_api != pApi) sqlite3_api = pApi;
  for (const auto& f : cdc::kFunctions) {
    // cdc_unlisten's registration also carries the connection's listener
    // state: SQLite destroys it when the connection closes, which stops
    // that connection's listeners.
    auto* reg = new (std::nothrow) cdc::Registration{
        f.fn, f.fn == cdc::SqlUnlisten ? cdc::NewConnectionState(db) : nullptr, db};
    if (!reg) return SQLITE_NOMEM;
    // On failure SQLite calls DestroyRegistration itself.
    int rc = sqlite3_create_function_v2(db, f.name, f.nargs, f.flags, reg, cdc::Trampoline, nullptr,
                                        nullptr, cdc::DestroyRegistration);
    if (rc != SQLITE_OK) {
      *pzErrMsg = sqlite3_mprintf("sqlite-cdc: cannot register %s: %s", f.name, sqlite3_errmsg(db));
      return rc;
    }
  }
  int rc = sqlite3_create_module_v2(db, "cdc_changes", cdc::ChangesModule(), nullptr, nullptr);
  if (rc != SQLITE_OK) {
    *pzErrMsg = sqlite3_mprintf("sqlite-cdc: cannot register cdc_changes: %s", sqlite3_errmsg(db));
    return rc;
  }
  return SQLITE_OK;
}
