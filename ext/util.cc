// util.cc — see util.h.
#include "util.h"

#include <cmath>
#include <algorithm>
#include <atomic>
#include <mutex>
#include <type_traits>
#include <unordered_map>

namespace cdc {

Status Status::FromDb(sqlite3* db, const std::string& context) {
  return Error(context + ": " + sqlite3_errmsg(db), sqlite3_extended_errcode(db));
}

std::string Ident(const std::string& name) {
  std::string out;
  out.reserve(name.size() + 2);
  out.push_back('"');
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string Literal(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('\'');
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string NameInMessage(const std::string& name) {
  constexpr size_t kMax = 200;
  if (name.size() <= kMax) return Literal(name);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) cut--;
  return Literal(name.substr(0, cut)) + "... (" + std::to_string(name.size()) + " bytes)";
}

struct StmtCache::State {
  sqlite3* db;
  std::unordered_multimap<std::string, sqlite3_stmt*> idle;
};

namespace {

// The live caches, found by connection. Not thread_local: a dlopen()ed
// module's TLS outlives its dlclose() in the DTV, and LeakSanitizer crashes
// scanning it. Never destroyed: listener threads may outlive exit().
struct CacheList {
  std::mutex mu;
  std::vector<StmtCache::State*> live;
  std::atomic<int> n{0};
};
CacheList& Caches() {
  static CacheList* c = new CacheList;
  return *c;
}

StmtCache::State* CacheFor(sqlite3* db) {
  CacheList& c = Caches();
  if (c.n.load(std::memory_order_acquire) == 0) return nullptr;  // no listener: no lock
  std::lock_guard<std::mutex> g(c.mu);
  for (auto* s : c.live) {
    if (s->db == db) return s;
  }
  return nullptr;
}

}  // namespace

StmtCache::StmtCache(sqlite3* db) : state_(new State{db, {}}) {
  CacheList& c = Caches();
  std::lock_guard<std::mutex> g(c.mu);
  c.live.push_back(state_);
  c.n.fetch_add(1, std::memory_order_release);
}

StmtCache::~StmtCache() {
  {
    CacheList& c = Caches();
    std::lock_guard<std::mutex> g(c.mu);
    c.live.erase(std::find(c.live.begin(), c.live.end(), state_));
    c.n.fetch_sub(1, std::memory_order_release);
  }
  for (auto& kv : state_->idle) sqlite3_finalize(kv.second);
  delete state_;
}

void Stmt::Drop() {
  StmtCache::State* cache = s_ && cached_ ? CacheFor(sqlite3_db_handle(s_)) : nullptr;
  if (cache) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    try {
      cache->idle.emplace(sqlite3_sql(s_), s_);
    } catch (...) {  // out of memory: not kept (a destructor must not throw)
      sqlite3_finalize(s_);
    }
  } else {
    sqlite3_finalize(s_);
  }
  s_ = nullptr;
  cached_ = false;
}

Status Stmt::Prepare(sqlite3* db, const std::string& sql) {
  Drop();
  if (StmtCache::State* cache = CacheFor(db)) {
    auto it = cache->idle.find(sql);
    if (it != cache->idle.end()) {
      s_ = it->second;
      cache->idle.erase(it);
    } else if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                  &s_, nullptr) != SQLITE_OK) {
      return Status::FromDb(db, "prepare");
    }
    cached_ = true;
    return Status();
  }
  if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &s_, nullptr) !=
      SQLITE_OK) {
    return Status::FromDb(db, "prepare");
  }
  return Status();
}

std::string Stmt::Text(int i) const {
  const unsigned char* p = sqlite3_column_text(s_, i);
  int n = sqlite3_column_bytes(s_, i);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

Status Exec(sqlite3* db, const std::string& sql) {
  if (sql.find(';') == std::string::npos && CacheFor(db)) {
    Stmt st;
    CDC_RETURN_IF_ERROR(st.Prepare(db, sql));
    if (!st) return Status();  // no statement (empty text), as sqlite3_exec
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return Status::Error(sqlite3_errmsg(db), sqlite3_extended_errcode(db));
    return Status();
  }
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    Str owned(err);
    return Status::Error(err ? err : sqlite3_errmsg(db), sqlite3_extended_errcode(db));
  }
  return Status();
}

bool Interrupted(sqlite3* db) {
  // SQLite's tokenizer looks at the interrupt at every space: preparing a
  // lone space answers without a statement, so no authorizer, trace or
  // profile callback of the host sees anything.
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, " ", -1, &st, nullptr);
  sqlite3_finalize(st);
  return (rc & 0xff) == SQLITE_INTERRUPT;
}

Status QueryInt(sqlite3* db, const std::string& sql, int64_t* out) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, sql));
  int rc = st.Step();
  if (rc == SQLITE_ROW) {
    *out = st.Int(0);
  } else if (rc == SQLITE_DONE) {
    *out = 0;
  } else {
    return Status::FromDb(db, "query");
  }
  return Status();
}

namespace {

// The Savepoints that opened their connection's transaction, linked through
// next_owner_, so that a nested one finds its owner. Constant-initialized
// (a destructor may look it up first, out of memory) and a list, not a map
// or thread_local (see CacheList): nothing here allocates. std::mutex has a
// trivial destructor, so threads that outlive exit() may still use it.
struct OwnerList {
  std::mutex mu;
  Savepoint* head = nullptr;
};
OwnerList g_owners;
static_assert(std::is_trivially_destructible<OwnerList>::value, "g_owners is used after exit()");
OwnerList& Owners() { return g_owners; }

}  // namespace

Savepoint* Savepoint::Owner(sqlite3* db) {
  OwnerList& o = Owners();
  std::lock_guard<std::mutex> g(o.mu);
  for (Savepoint* p = o.head; p; p = p->next_owner_) {
    if (p->db_ == db) return p;  // one transaction per connection: one owner
  }
  return nullptr;
}

void Savepoint::Own() {
  OwnerList& o = Owners();
  std::lock_guard<std::mutex> g(o.mu);
  next_owner_ = o.head;
  o.head = this;
}

void Savepoint::Disown() {
  OwnerList& o = Owners();
  std::lock_guard<std::mutex> g(o.mu);
  for (Savepoint** p = &o.head; *p; p = &(*p)->next_owner_) {
    if (*p == this) {
      *p = next_owner_;
      break;
    }
  }
  next_owner_ = nullptr;
}

Savepoint::~Savepoint() {
  // Undo everything done since Begin(), with the statements Begin() (or
  // Arm()) prepared: after an allocation failure in a nested statement
  // SQLite prepares nothing more on the connection until the caller's
  // statement ends, but still runs statements prepared before. When the
  // rollback itself fails (the connection was interrupted: every statement
  // fails until the caller's statement ends), step the tripwire: SQLite then
  // rolls back the whole transaction and returns to autocommit, instead of
  // leaving it open with half of the call's writes in it. Errors here cannot
  // be reported.
  bool clean = true;
  if (own_txn_) {
    if (!sqlite3_get_autocommit(db_)) clean = rollback_.Step() == SQLITE_DONE;
    Disown();
  } else if (open_) {
    if (Savepoint* owner = Owner(db_)) {
      // Inside a transaction of our own: its ROLLBACK undoes this work too,
      // and a ROLLBACK TO here could leave it unable to run (util.h).
      owner->failed_ = true;
    } else {
      clean = rollback_.Step() == SQLITE_DONE;
      clean = release_.Step() == SQLITE_DONE && clean;
    }
  }
  if (!clean && tripwire_ && !sqlite3_get_autocommit(db_)) sqlite3_step(tripwire_);
  sqlite3_finalize(tripwire_);
}

Status Savepoint::Arm() {
  sqlite3_finalize(tripwire_);
  tripwire_ = nullptr;
  if (sqlite3_prepare_v2(db_, "BEGIN IMMEDIATE", -1, &tripwire_, nullptr) != SQLITE_OK) {
    return Status::FromDb(db_, "savepoint");
  }
  // The undo statements expire with a schema change too.
  if (own_txn_ || (open_ && !rollback_)) {
    CDC_RETURN_IF_ERROR(rollback_.Prepare(db_, "ROLLBACK"));
  } else if (open_) {
    CDC_RETURN_IF_ERROR(rollback_.Prepare(db_, "ROLLBACK TO " + Ident(name_)));
    CDC_RETURN_IF_ERROR(release_.Prepare(db_, "RELEASE " + Ident(name_)));
  }
  return Status();
}

Status Savepoint::Begin() {
  CDC_RETURN_IF_ERROR(Arm());
  if (sqlite3_get_autocommit(db_)) {
    // Take the write lock now, waiting through the busy handler. A SAVEPOINT
    // here would open a deferred transaction: its first read pins a
    // snapshot, and the write that follows fails at once with SQLITE_BUSY
    // (or SQLITE_BUSY_SNAPSHOT in WAL mode) whenever another connection
    // writes, because SQLite never calls the busy handler to upgrade a
    // reading transaction.
    CDC_RETURN_IF_ERROR(rollback_.Prepare(db_, "ROLLBACK"));
    Status st = Exec(db_, "BEGIN IMMEDIATE");
    own_txn_ = !sqlite3_get_autocommit(db_);
    if (own_txn_) Own();
    CDC_RETURN_IF_ERROR(st);
  } else {
    CDC_RETURN_IF_ERROR(rollback_.Prepare(db_, "ROLLBACK TO " + Ident(name_)));
    CDC_RETURN_IF_ERROR(release_.Prepare(db_, "RELEASE " + Ident(name_)));
  }
  CDC_RETURN_IF_ERROR(Exec(db_, "SAVEPOINT " + Ident(name_)));
  open_ = true;
  return Status();
}

Status Savepoint::Release() {
  if (failed_) {  // a nested Savepoint failed and its error was dropped: never commit that
    return Status::Error(name_ + ": a step inside the transaction failed; rolled back");
  }
  CDC_RETURN_IF_ERROR(Exec(db_, "RELEASE " + Ident(name_)));
  open_ = false;
  if (own_txn_) {
    CDC_RETURN_IF_ERROR(Exec(db_, "COMMIT"));  // on failure the destructor rolls back
    own_txn_ = false;
    Disown();
  }
  return Status();
}

void ResultError(sqlite3_context* ctx, const Status& st) {
  sqlite3_result_error(ctx, st.message().c_str(), static_cast<int>(st.message().size()));
  switch (st.code() & 0xff) {
    case SQLITE_NOMEM: sqlite3_result_error_nomem(ctx); break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_INTERRUPT: sqlite3_result_error_code(ctx, st.code()); break;
    default: break;
  }
}

Status ArgText(const char* fn, sqlite3_value** argv, int i, const char* what,
               std::string* out) {
  int t = sqlite3_value_type(argv[i]);
  if (t == SQLITE_NULL) {
    return Status::Error(std::string(fn) + ": " + what + " must not be NULL");
  }
  if (t != SQLITE_TEXT) {
    return Status::Error(std::string(fn) + ": " + what + " must be text");
  }
  const unsigned char* p = sqlite3_value_text(argv[i]);
  int n = sqlite3_value_bytes(argv[i]);
  out->assign(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  if (out->empty()) {
    return Status::Error(std::string(fn) + ": " + what + " must not be empty");
  }
  return Status();
}

Status ArgInt(const char* fn, sqlite3_value** argv, int i, const char* what,
              int64_t* out) {
  int t = sqlite3_value_type(argv[i]);
  if (t == SQLITE_NULL) {
    return Status::Error(std::string(fn) + ": " + what + " must not be NULL");
  }
  if (t == SQLITE_INTEGER) {
    *out = sqlite3_value_int64(argv[i]);
    return Status();
  }
  if (t == SQLITE_FLOAT) {
    double d = sqlite3_value_double(argv[i]);
    if (std::isfinite(d) && d == std::floor(d) && d >= -9.2e18 && d <= 9.2e18) {
      *out = static_cast<int64_t>(d);
      return Status();
    }
  }
  return Status::Error(std::string(fn) + ": " + what + " must be an integer");
}

Status RequireWritable(sqlite3* db, const char* fn) {
  if (sqlite3_db_readonly(db, "main") == 1) {
    return Status::Error(std::string(fn) + ": the database is read-only");
  }
  // PRAGMA query_only makes every write fail with SQLite's bare "attempt to
  // write a readonly database"; say which call and why.
  int64_t query_only = 0;
  if (QueryInt(db, "PRAGMA query_only", &query_only).ok() && query_only) {
    return Status::Error(std::string(fn) + ": the connection is read-only (PRAGMA query_only)");
  }
  return Status();
}

}  // namespace cdc
