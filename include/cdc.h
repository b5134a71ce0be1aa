/* cdc.h — public C interface of the sqlite-cdc listener (C, C++, and any
 * language with a C FFI: Rust, Go/cgo, ...).
 *
 *   #include <sqlite3.h>
 *   #include "cdc.h"
 *
 *   static int on_changes(void *user, const cdc_change *c, int n) {
 *     for (int i = 0; i < n; i++) printf("%lld %s %s\n", (long long)c[i].id, c[i].op, c[i].table);
 *     return 0;                                   // 0 = handled: the batch is acked
 *   }
 *   ...
 *   char *err = NULL;
 *   if (cdc_listen(db, "search_index", on_changes, NULL, NULL, "{\"batch\":100}", &err) != SQLITE_OK) {
 *     fprintf(stderr, "%s\n", err);
 *     sqlite3_free(err);
 *   }
 *   ...
 *   cdc_unlisten(db, "search_index", NULL);      // or just sqlite3_close(db)
 *
 * `db` must have the extension loaded (sqlite3_load_extension(db, "cdc", ...))
 * and the consumer must exist (SELECT cdc_consumer_add('search_index')).
 *
 * The callback runs on the listener's own thread, one batch at a time, in
 * change-id order. It returns 0 when the batch is handled (the listener then
 * acks it); any other value makes the listener retry the same batch later,
 * with capped exponential backoff. Pointers in `cdc_change` are valid only
 * during the call. `table`, `op` are NUL-terminated UTF-8; `before`/`after`
 * are JSON object texts (README "Events") or NULL when the operation has no
 * such image.
 *
 * Lifetime: `user_data` belongs to the listener once cdc_listen succeeded;
 * `destroy(user_data)` (if not NULL) is called exactly once, on the listener
 * thread, after its last callback. If cdc_listen fails nothing is called and
 * the caller keeps it. The listener stops on cdc_unlisten (which waits for a
 * callback in flight), when `db` closes, or before the extension is unloaded.
 * Calling cdc_unlisten, or sqlite3_close_v2(db), from inside the callback is
 * allowed (the extension stays loaded while its threads run); the callback
 * must not otherwise use `db` while another thread may be closing it or
 * calling cdc_unlisten on it (use a connection of its own). A second listener
 * on the same consumer in another process stands by until this one stops or
 * its process dies (README "cdc_listen", the lease). Hosts with a global lock
 * (Python, Node) use cdc_serve with an SQL function instead of a C callback
 * that takes the lock.
 *
 * Under the hood: the helpers run `SELECT cdc_listen(?1, ?2, ?3)` with ?2
 * bound by sqlite3_bind_pointer(..., CDC_CALLBACK_TYPE, NULL) to a
 * `cdc_callback` struct, which the extension copies. Other FFIs can do the
 * same with their raw SQLite bindings.
 */
#ifndef SQLITE_CDC_H
#define SQLITE_CDC_H

#include <sqlite3.h>
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Type tag of the pointer passed as cdc_listen's callback argument. */
#define CDC_CALLBACK_TYPE "cdc_callback"
/* Layout version of struct cdc_callback and cdc_change. 2 added
 * cdc_change.reason; callbacks registered with abi 1 still receive the
 * six-field cdc_change of version 1. */
#define CDC_CALLBACK_ABI 2

/* One change, as the callback sees it (DESIGN §3). */
typedef struct cdc_change {
  int64_t id;          /* change id, strictly increasing in commit order */
  int64_t ts;          /* Unix time in milliseconds of the change */
  const char *table;   /* table name */
  const char *op;      /* "INSERT", "UPDATE", "DELETE", "BOOTSTRAP" or "DROP" */
  const char *before;  /* JSON object text, or NULL (INSERT, BOOTSTRAP, DROP) */
  const char *after;   /* JSON object text, or NULL (DELETE, BOOTSTRAP, DROP) */
  const char *reason;  /* BOOTSTRAP / DROP caused by a schema change: why
                          (README "Schema changes"); else NULL. abi >= 2 */
} cdc_change;

/* Called with a batch of n >= 1 changes in id order. Return 0 = handled. */
typedef int (*cdc_callback_fn)(void *user_data, const cdc_change *changes, int n);

/* What is bound as cdc_listen's second argument. */
typedef struct cdc_callback {
  int abi;                         /* CDC_CALLBACK_ABI */
  cdc_callback_fn fn;
  void *user_data;
  void (*destroy)(void *user_data);  /* may be NULL */
} cdc_callback;

/* Runs one statement that returns a single row; SQLITE_OK or the error, with
 * *errmsg (if errmsg is not NULL) set to an sqlite3_malloc'ed message. */
static inline int cdc__run(sqlite3 *db, const char *sql, const char *a1, const cdc_callback *cb,
                           const char *a3, char **errmsg) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, a1, -1, SQLITE_TRANSIENT);
    if (cb) sqlite3_bind_pointer(st, 2, (void *)cb, CDC_CALLBACK_TYPE, NULL);
    if (a3) sqlite3_bind_text(st, 3, a3, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
  }
  if (errmsg) *errmsg = rc == SQLITE_OK ? NULL : sqlite3_mprintf("%s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc;
}

/* Starts a listener for `consumer` on db's main database. `options_json` is
 * NULL (defaults) or a JSON object such as
 * {"signals":["watch","interval","commit"],"interval_ms":250,"batch":256}. */
static inline int cdc_listen(sqlite3 *db, const char *consumer, cdc_callback_fn fn, void *user_data,
                             void (*destroy)(void *), const char *options_json, char **errmsg) {
  cdc_callback cb;
  cb.abi = CDC_CALLBACK_ABI;
  cb.fn = fn;
  cb.user_data = user_data;
  cb.destroy = destroy;
  return cdc__run(db, options_json ? "SELECT cdc_listen(?1, ?2, ?3)" : "SELECT cdc_listen(?1, ?2)",
                  consumer, &cb, options_json, errmsg);
}

/* Stops the listener of `consumer`, waiting for a callback in flight. */
static inline int cdc_unlisten(sqlite3 *db, const char *consumer, char **errmsg) {
  return cdc__run(db, "SELECT cdc_unlisten(?1)", consumer, NULL, NULL, errmsg);
}

#ifdef __cplusplus
}
#endif

#endif /* SQLITE_CDC_H */
