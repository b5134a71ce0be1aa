// util.h — the small toolkit every other file of sqlite-cdc builds on.
//
//   Status       an error message or success; never an exception across C.
//   Str          owner of an sqlite3_mprintf() string.
//   Stmt         owner of a prepared statement, with typed bind/column helpers.
//   Ident(x)     x quoted as an SQL identifier: "x" with " doubled.
//   Literal(x)   x quoted as an SQL string literal: 'x' with ' doubled.
//   Exec / Savepoint: run SQL on the caller's connection; a Savepoint rolls
//   back in its destructor unless released, so SQL functions stay inside the
//   caller's transaction.
//
// Every generated statement in the extension quotes identifiers with Ident()
// and literals with Literal() (or binds them); nothing is pasted raw.
#pragma once

#include <sqlite3ext.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

SQLITE_EXTENSION_INIT3

#define CDC_VERSION_STRING "0.1.0"

// On a function that catches abi::__forced_unwind by reference (to let a
// host's thread cancellation pass): that exception has no C++ object, and
// UBSan reports the binding as a null reference; the reference is never used.
#define CDC_CATCHES_FORCED_UNWIND __attribute__((no_sanitize("null")))

namespace cdc {

// An error message, or success (empty message and ok()==true).
class Status {
 public:
  Status() = default;
  // `code`: the SQLite result code behind the error, when SQLite's own
  // (SQLITE_NOMEM, SQLITE_IOERR_*, ...); see ResultError.
  static Status Error(std::string msg, int code = SQLITE_ERROR) { return Status(std::move(msg), code); }
  // An error taken from the connection's current error message and code.
  static Status FromDb(sqlite3* db, const std::string& context);
  bool ok() const { return !failed_; }
  const std::string& message() const { return msg_; }
  int code() const { return code_; }

 private:
  Status(std::string msg, int code) : msg_(std::move(msg)), code_(code), failed_(true) {}
  std::string msg_;
  int code_ = SQLITE_OK;
  bool failed_ = false;
};

#define CDC_RETURN_IF_ERROR(expr)     \
  do {                                \
    ::cdc::Status _st = (expr);       \
    if (!_st.ok()) return _st;        \
  } while (0)

// Owner of a string allocated by sqlite3_mprintf / sqlite3_malloc.
class Str {
 public:
  Str() = default;
  explicit Str(char* p) : p_(p) {}
  Str(const Str&) = delete;
  Str& operator=(const Str&) = delete;
  Str(Str&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Str& operator=(Str&& o) noexcept {
    if (this != &o) { sqlite3_free(p_); p_ = std::exchange(o.p_, nullptr); }
    return *this;
  }
  ~Str() { sqlite3_free(p_); }
  const char* get() const { return p_; }
  char* release() { return std::exchange(p_, nullptr); }

 private:
  char* p_ = nullptr;
};

// Quoting: the only two ways SQL text is built from names and values.
std::string Ident(const std::string& name);    // "na""me"
std::string Literal(const std::string& text);  // 'te''xt'
// A name quoted for an error message: Literal(name), but a name longer than
// 200 bytes is cut (at a UTF-8 boundary) and marked, so a message stays short
// whatever the caller passed.
std::string NameInMessage(const std::string& name);

// Owner of a prepared statement.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)), cached_(std::exchange(o.cached_, false)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) {
      Drop();
      s_ = std::exchange(o.s_, nullptr);
      cached_ = std::exchange(o.cached_, false);
    }
    return *this;
  }
  ~Stmt() { Drop(); }

  Status Prepare(sqlite3* db, const std::string& sql);
  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

  void Bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindNull(int i) { sqlite3_bind_null(s_, i); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(s_); }
  void Reset() { sqlite3_reset(s_); sqlite3_clear_bindings(s_); }
  int64_t Int(int i) const { return sqlite3_column_int64(s_, i); }
  std::string Text(int i) const;
  bool IsNull(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }

 private:
  void Drop();  // finalizes, or gives a StmtCache's statement back
  sqlite3_stmt* s_ = nullptr;
  bool cached_ = false;
};

// While a StmtCache for `db` is alive, the statements that Stmt::Prepare and
// single-statement Exec prepare on `db` are kept (reset) and reused instead of
// being parsed again. Only for a connection the extension owns and uses from
// one thread (a listener's): statements left on a user's connection would
// make sqlite3_close fail.
class StmtCache {
 public:
  explicit StmtCache(sqlite3* db);
  ~StmtCache();  // finalizes every kept statement
  StmtCache(const StmtCache&) = delete;
  StmtCache& operator=(const StmtCache&) = delete;
  struct State;

 private:
  State* state_;
};

// Runs one or more statements that return no rows.
Status Exec(sqlite3* db, const std::string& sql);
// Runs a single-value query; *out receives the first column of the first row
// (0 when there is no row).
Status QueryInt(sqlite3* db, const std::string& sql, int64_t* out);

// Whether sqlite3_interrupt() is in force on `db` (SQLite 3.40 has no
// sqlite3_is_interrupted): SQL prepared on an interrupted connection fails
// with SQLITE_INTERRUPT. Called from inside a function on `db` (the
// caller's statement keeps the interrupt in force).
bool Interrupted(sqlite3* db);
// How often a call that blocks on the caller's connection (cdc_wait,
// cdc_serve) looks for an interrupt while it has nothing else to do.
constexpr int64_t kInterruptCheckUs = 100000;

// A savepoint on the caller's connection. Rolls back and releases in its
// destructor unless Release() succeeded. Interrupted (sqlite3_interrupt), no
// statement can run on the connection until the caller's statement ends, not
// even ROLLBACK; the destructor then makes SQLite roll back the whole
// transaction (as SQLite does for any interrupted write), so nothing of the
// call is left behind and no transaction stays open. In autocommit mode it opens the
// transaction with BEGIN IMMEDIATE (and commits it on Release): a deferred
// transaction that reads first cannot later become a writer while another
// connection writes (SQLite returns SQLITE_BUSY at once, without the busy
// handler), so every writing function takes the write lock up front.
class Savepoint {
 public:
  Savepoint(sqlite3* db, const char* name) : db_(db), name_(name) {}
  Savepoint(const Savepoint&) = delete;
  Savepoint& operator=(const Savepoint&) = delete;
  ~Savepoint();
  Status Begin();
  Status Release();
  // Prepares the tripwire again: a schema change (DDL run after Begin())
  // expires it, and an expired statement cannot be re-prepared once the
  // connection is interrupted. Call after DDL.
  Status Arm();

 private:
  sqlite3* db_;
  std::string name_;
  bool open_ = false;
  bool own_txn_ = false;  // Begin() opened the transaction (BEGIN IMMEDIATE)
  // The undo, prepared by Begin(): after an allocation failure in a nested
  // statement SQLite prepares nothing more on the connection until the
  // caller's statement ends (and a statement that reads no table, like
  // SELECT cdc_setup('t'), does not roll back when it ends), but it still
  // runs statements prepared before.
  Stmt rollback_;  // ROLLBACK (own_txn_), else ROLLBACK TO the savepoint
  Stmt release_;   // RELEASE the savepoint (not own_txn_)
  // A write statement prepared by Begin(), stepped only when the rollback
  // failed: an interrupted write statement makes SQLite roll back the whole
  // transaction (a statement prepared after the interrupt fails to prepare).
  sqlite3_stmt* tripwire_ = nullptr;
  // A nested Savepoint inside one that owns the transaction leaves its undo
  // to the owner's ROLLBACK and marks the owner failed: a ROLLBACK TO after
  // a schema change in the transaction expires every statement of the
  // connection, the owner's prepared ROLLBACK too, and out of memory SQLite
  // cannot prepare it again (the transaction would stay open).
  bool failed_ = false;  // a nested Savepoint was abandoned: never commit
  Savepoint* next_owner_ = nullptr;  // the list of owners (own_txn_), util.cc
  static Savepoint* Owner(sqlite3* db);
  void Own();
  void Disown();
};

// Reports a Status as the SQL function's result error. An error caused by
// SQLITE_NOMEM, SQLITE_IOERR or SQLITE_FULL keeps that code (the caller sees
// SQLITE_NOMEM, not SQLITE_ERROR, and SQLite ends its statement as it does
// for its own such errors).
void ResultError(sqlite3_context* ctx, const Status& st);

// Argument checking helpers for SQL functions. Each returns an error that
// names the function and the argument.
Status ArgText(const char* fn, sqlite3_value** argv, int i, const char* what,
               std::string* out);
Status ArgInt(const char* fn, sqlite3_value** argv, int i, const char* what,
              int64_t* out);

// Fails with a clear message when the main database cannot be written.
Status RequireWritable(sqlite3* db, const char* fn);

}  // namespace cdc
