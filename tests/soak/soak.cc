// soak.cc — multi-process soak of sqlite-cdc: load, crashes, and a full audit.
//
//   cdc_soak --ext build/cdc [--seconds 30] [--dir DIR] [--seed N] [--keep]
//
// The driver creates a WAL database with three captured tables:
//   items  rowid table: INTEGER PRIMARY KEY, a UNIQUE text code, REAL, BLOB
//   pairs  WITHOUT ROWID, composite primary key (text, integer)
//   wide   120 columns (events spill over continuation rows in the log)
// seeds rows before capture (so consumers must learn them from cdc_bootstrap),
// then runs, as separate processes (this same binary, re-executed):
//   4 writers   random transactions of 1-20 statements with busy waits
//               measured: inserts, updates (also of keys), deletes, INSERT OR
//               REPLACE / UPDATE OR REPLACE hitting the UNIQUE code, multi-row
//               inserts that fail on a constraint, savepoint rollbacks, whole
//               rollbacks, cdc_bootstrap (full, in a transaction, and chunked
//               in autocommit). Writers 2 and 3 never load the extension
//               (plain-SQL capture); writer 3 runs with recursive_triggers=ON.
//   2 consumers "poll" (cdc_wait/cdc_poll/cdc_ack) and "listen" (cdc_listen
//               with a C callback when the extension has it, else a second
//               poll consumer), each applying events to its own replica
//               database and recording every event it applied.
// During the run it SIGKILLs consumers at random moments and restarts them,
// and SIGKILLs writers in the middle of a transaction (holding the write
// lock, statements done, COMMIT not yet issued) and restarts them.
//
// What is checked at the end (any failure: exit status 1):
//   - each replica equals the tables exactly (types and bytes of every value);
//   - event ids strictly increase per consumer, across its restarts; after a
//     restart only the batch that was not acked is delivered again;
//   - every change a committed transaction made was seen by each consumer,
//     exactly once per (op, tag) (each INSERT/UPDATE writes a unique tag; each
//     writer logs, before COMMIT, the events its statements must produce,
//     including the DELETEs that a REPLACE implies; a per-transaction row in
//     the uncaptured table soak_commits says which transactions committed);
//   - no event carries a tag of a transaction that did not commit (rolled
//     back, savepoint-rolled back, failed statement, killed writer);
//   - right after each writer kill: no row, commit record or retained log
//     event of the killed transaction exists.
// Figures are printed and written to DIR/summary.txt.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <tuple>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#if __has_include("cdc.h")
#include "cdc.h"
#define SOAK_HAVE_CDC_H 1
#endif

#include "json_reader.h"
#include "sqlite_values.h"

using cdcjson::Json;
using cdcjson::Row;
using cdcjson::SqlValue;

namespace {

// ---------------------------------------------------------------- basics

std::string g_role = "driver";
volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_die_in_txn = 0;
std::vector<pid_t> g_children;  // driver: killed when it fails

[[noreturn]] void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak[%s %d]: FAIL: ", g_role.c_str(), getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  _exit(1);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void SleepUs(int64_t us) {
  timespec ts{static_cast<time_t>(us / 1000000), static_cast<long>((us % 1000000) * 1000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die("write: %s", strerror(errno));
    off += static_cast<size_t>(n);
  }
}

struct Args {
  std::string role = "driver", ext, dir, name;
  double seconds = 30;
  uint64_t seed = 0;
  int id = 0, epoch = 0, killfd = -1;
  bool keep = false;
};

// ---------------------------------------------------------------- SQLite

// Busy handler that sleeps in short steps (so waits measure the lock, not
// the back-off) and gives up after a minute.
struct Busy {
  int64_t started = 0;
  int64_t calls = 0;
};

int BusyHandler(void* p, int n) {
  auto* b = static_cast<Busy*>(p);
  if (n == 0) b->started = NowNs();
  b->calls++;
  if (NowNs() - b->started > 60'000'000'000LL) return 0;
  SleepUs(n < 20 ? 100 : n < 200 ? 500 : 2000);
  return 1;
}

class Conn {
 public:
  Conn(const std::string& path, const std::string& ext) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
      Die("open %s: %s", path.c_str(), sqlite3_errmsg(db_));
    }
    sqlite3_busy_handler(db_, BusyHandler, &busy_);
    sqlite3_extended_result_codes(db_, 1);
    if (!ext.empty()) {
      sqlite3_enable_load_extension(db_, 1);
      char* err = nullptr;
      if (sqlite3_load_extension(db_, ext.c_str(), nullptr, &err) != SQLITE_OK) Die("load %s: %s", ext.c_str(), err);
    }
  }
  ~Conn() {
    for (auto& kv : cache_) sqlite3_finalize(kv.second);
    sqlite3_close(db_);
  }
  sqlite3* get() const { return db_; }
  Busy& busy() { return busy_; }

  // Runs SQL; returns the result code (errors are returned, not fatal).
  int TryExec(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) Die("%s: %s", sql.c_str(), err);
  }
  // A cached prepared statement, reset and unbound.
  sqlite3_stmt* Prep(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) Die("prepare %s: %s", sql.c_str(), sqlite3_errmsg(db_));
    cache_[sql] = st;
    return st;
  }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = Prep(sql);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) Die("%s: %s", sql.c_str(), sqlite3_errmsg(db_));
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
  }
  bool HasFunction(const char* name) {
    sqlite3_stmt* st = Prep("SELECT count(*) FROM pragma_function_list WHERE name = ?1");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_step(st);
    bool have = sqlite3_column_int(st, 0) > 0;
    sqlite3_reset(st);
    return have;
  }

 private:
  sqlite3* db_ = nullptr;
  Busy busy_;
  std::map<std::string, sqlite3_stmt*> cache_;
};

// ---------------------------------------------------------------- schema

struct TableSpec {
  std::string name;
  std::vector<std::string> cols;
  std::vector<std::string> decl;  // column declarations
  std::vector<int> key;           // key column indexes
  std::string extra;              // table constraints / options (main db only)
  std::string options;            // after ")": WITHOUT ROWID
};

const int kWideExtra = 118;

std::vector<TableSpec> Specs() {
  std::vector<TableSpec> t(3);
  t[0].name = "items";
  t[0].cols = {"id", "code", "price", "data", "tag"};
  t[0].decl = {"INTEGER PRIMARY KEY", "TEXT", "REAL", "BLOB", "TEXT NOT NULL"};
  t[0].key = {0};
  t[0].extra = ", UNIQUE(code)";
  t[1].name = "pairs";
  t[1].cols = {"a", "b", "qty", "note", "tag"};
  t[1].decl = {"TEXT NOT NULL", "INTEGER NOT NULL", "INTEGER", "TEXT", "TEXT NOT NULL"};
  t[1].key = {0, 1};
  t[1].extra = ", PRIMARY KEY(a, b)";
  t[1].options = " WITHOUT ROWID";
  t[2].name = "wide";
  t[2].cols = {"id", "tag"};
  t[2].decl = {"INTEGER PRIMARY KEY", "TEXT NOT NULL"};
  for (int i = 0; i < kWideExtra; i++) {
    t[2].cols.push_back("c" + std::to_string(i));
    t[2].decl.push_back(i % 10 == 3 ? "REAL" : i % 7 == 2 ? "TEXT" : i % 5 == 1 ? "INTEGER" : "");
  }
  t[2].key = {0};
  return t;
}

std::string Q(const std::string& id) {  // identifier quoting for our own names
  std::string s = "\"";
  for (char c : id) s += c == '"' ? std::string("\"\"") : std::string(1, c);
  return s + "\"";
}

std::string CreateSql(const TableSpec& t, bool with_constraints) {
  std::string s = "CREATE TABLE IF NOT EXISTS " + Q(t.name) + "(";
  for (size_t i = 0; i < t.cols.size(); i++) s += (i ? ", " : "") + Q(t.cols[i]) + " " + t.decl[i];
  if (with_constraints) s += t.extra;
  else if (t.key.size() > 1 || !t.options.empty()) s += ", PRIMARY KEY(a, b)";
  s += ")";
  if (!t.options.empty()) s += t.options;
  return s;
}

std::string OrderBy(const TableSpec& t) {
  std::string s;
  for (size_t i = 0; i < t.key.size(); i++) s += (i ? ", " : "") + Q(t.cols[static_cast<size_t>(t.key[i])]);
  return s;
}

// ---------------------------------------------------------------- values

const char* kPairA[] = {"x", "y z", "\xc3\xbcn\xc3\xaf", "o'q", "\"dq\"", "\xe6\x97\xa5\xe6\x9c\xac"};

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(uint64_t seed) : rng(seed) {}
  int64_t Uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  double Real() {
    switch (Uniform(0, 7)) {
      case 0: return 0.1 + 0.2;
      case 1: return Uniform(0, 1) ? HUGE_VAL : -HUGE_VAL;
      case 2: return static_cast<double>(Uniform(-1000, 1000));  // integral REAL
      case 3: return 5e-324;
      case 4: {  // any finite bit pattern
        for (;;) {
          uint64_t bits = rng();
          double d;
          memcpy(&d, &bits, sizeof d);
          if (std::isfinite(d)) return d;
        }
      }
      default: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng);
    }
  }
  std::string Text(int maxlen) {
    static const char* pieces[] = {"a", "Z", " ", "'", "\"", "\\", "\n", "\t", "\xc3\xa9", "\xe2\x82\xac",
                                   "\xf0\x9f\x98\x80", "{", "}", "[", ",", ":", "null"};
    std::string s;
    int n = static_cast<int>(Uniform(0, maxlen));
    for (int i = 0; i < n; i++) {
      int k = static_cast<int>(Uniform(0, 17));
      if (k == 17) s.push_back('\0');
      else s += pieces[k];
    }
    return s;
  }
  std::string Bytes(int maxlen) {
    std::string s(static_cast<size_t>(Uniform(0, maxlen)), '\0');
    for (auto& c : s) c = static_cast<char>(Uniform(0, 255));
    return s;
  }
  SqlValue Any() {
    SqlValue v;
    switch (Uniform(0, 9)) {
      case 0: case 1: break;  // NULL
      case 2: v.type = SqlValue::kInt; v.i = Uniform(-100, 100); break;
      case 3: v.type = SqlValue::kInt; v.i = Uniform(0, 1) ? INT64_MAX : INT64_MIN; break;
      case 4: case 5: v.type = SqlValue::kReal; v.d = Real(); break;
      case 6: case 7: v.type = SqlValue::kText; v.bytes = Text(12); break;
      default: v.type = SqlValue::kBlob; v.bytes = Bytes(24); break;
    }
    return v;
  }
};

SqlValue Int(int64_t i) { SqlValue v; v.type = SqlValue::kInt; v.i = i; return v; }
SqlValue Text(const std::string& s) { SqlValue v; v.type = SqlValue::kText; v.bytes = s; return v; }
SqlValue Real(double d) { SqlValue v; v.type = SqlValue::kReal; v.d = d; return v; }
SqlValue Blob(const std::string& s) { SqlValue v; v.type = SqlValue::kBlob; v.bytes = s; return v; }
SqlValue Null() { return SqlValue(); }

// Binds vals to ?1.. and steps; collects the first column of each row
// (RETURNING tag). Returns the final result code.
int Run(Conn& c, const std::string& sql, const std::vector<SqlValue>& vals, std::vector<std::string>* col0 = nullptr) {
  sqlite3_stmt* st = c.Prep(sql);
  for (size_t i = 0; i < vals.size(); i++) cdcjson::BindValue(st, static_cast<int>(i + 1), vals[i]);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (col0) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      col0->push_back(t ? reinterpret_cast<const char*>(t) : "");
    }
  }
  sqlite3_reset(st);
  return rc;
}

void OpenMainPragmas(Conn& c) {
  c.Exec("PRAGMA synchronous=NORMAL");  // WAL: durable across process crashes
}

// ---------------------------------------------------------------- writer

struct Writer {
  Args a;
  Gen g;
  Conn c;
  bool ext, recursive;
  std::vector<std::string> exp;  // expected events of the open transaction
  int64_t txn = 0, opn = 0;
  int lockfd = -1, expfd = -1;

  explicit Writer(const Args& args)
      : a(args), g(args.seed), c(args.dir + "/soak.db", args.id < 2 ? args.ext : ""), ext(args.id < 2),
        recursive(args.id == 3) {
    OpenMainPragmas(c);
    if (recursive) c.Exec("PRAGMA recursive_triggers=ON");
    std::string base = a.dir + "/w" + std::to_string(a.id) + "e" + std::to_string(a.epoch);
    expfd = open((base + ".exp").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    lockfd = open((base + ".locks").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (expfd < 0 || lockfd < 0) Die("open writer files: %s", strerror(errno));
  }

  std::string Tag() {
    return "w" + std::to_string(a.id) + "." + std::to_string(a.epoch) + "." + std::to_string(txn) + "." +
           std::to_string(opn++);
  }
  void Expect(char op, const std::string& tag) { exp.push_back(std::string(1, op) + " " + tag); }

  void OpItems() {
    int64_t id = g.Uniform(1, 300);
    SqlValue code = g.Chance(0.1) ? Null() : Text("k" + std::to_string(g.Uniform(0, 149)));
    SqlValue price = g.Chance(0.1) ? Null() : Real(g.Real());
    SqlValue data = g.Chance(0.15) ? g.Any() : Blob(g.Bytes(40));
    std::vector<std::string> out;
    switch (g.Uniform(0, 7)) {
      case 0: {  // insert, skip on any conflict
        std::string tag = Tag();
        Run(c, "INSERT INTO items(id,code,price,data,tag) VALUES(?1,?2,?3,?4,?5) ON CONFLICT DO NOTHING RETURNING tag",
            {Int(id), code, price, data, Text(tag)}, &out);
        for (auto& t : out) Expect('I', t);
        break;
      }
      case 1: {  // multi-row insert that may fail on a constraint: all or nothing
        std::string t1 = Tag(), t2 = Tag(), t3 = Tag();
        int rc = Run(c,
                     "INSERT INTO items(id,code,price,data,tag) VALUES(?1,?2,?3,?4,?5),(?6,?7,?3,?4,?8),(?9,?10,?3,?4,?11) "
                     "RETURNING tag",
                     {Int(id), code, price, data, Text(t1), Int(g.Uniform(1, 300)),
                      Text("k" + std::to_string(g.Uniform(0, 149))), Text(t2), Int(g.Uniform(1, 300)),
                      Text("k" + std::to_string(g.Uniform(0, 149))), Text(t3)},
                     &out);
        if (rc == SQLITE_DONE) {
          for (auto& t : out) Expect('I', t);
        } else if ((rc & 0xff) != SQLITE_CONSTRAINT) {
          Die("multi-row insert: %s", sqlite3_errmsg(c.get()));
        }
        break;
      }
      case 2: {  // INSERT OR REPLACE: conflicts on id and/or code
        std::vector<Row> rows;
        std::string err;
        sqlite3_stmt* st = c.Prep("SELECT id, tag FROM items WHERE id = ?1 OR code = ?2");
        cdcjson::BindValue(st, 1, Int(id));
        cdcjson::BindValue(st, 2, code);
        while (sqlite3_step(st) == SQLITE_ROW) {
          int64_t rid = sqlite3_column_int64(st, 0);
          std::string rtag = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
          if (rid != id || recursive) Expect('D', rtag);
        }
        sqlite3_reset(st);
        std::string tag = Tag();
        if (Run(c, "INSERT OR REPLACE INTO items(id,code,price,data,tag) VALUES(?1,?2,?3,?4,?5)",
                {Int(id), code, price, data, Text(tag)}) != SQLITE_DONE) {
          Die("replace items: %s", sqlite3_errmsg(c.get()));
        }
        Expect('I', tag);
        break;
      }
      case 3: {
        std::string tag = Tag();
        Run(c, "UPDATE items SET price=?1, data=?2, tag=?3 WHERE id=?4 RETURNING tag", {price, data, Text(tag), Int(id)},
            &out);
        for (auto& t : out) Expect('U', t);
        break;
      }
      case 4: {  // UPDATE OR REPLACE of the UNIQUE code
        std::vector<std::string> exists;
        Run(c, "SELECT tag FROM items WHERE id=?1", {Int(id)}, &exists);
        if (!exists.empty()) {
          Run(c, "SELECT tag FROM items WHERE code=?1 AND id<>?2", {code, Int(id)}, &out);
          for (auto& t : out) Expect('D', t);
          out.clear();
        }
        std::string tag = Tag();
        if (Run(c, "UPDATE OR REPLACE items SET code=?1, tag=?2 WHERE id=?3 RETURNING tag", {code, Text(tag), Int(id)},
                &out) != SQLITE_DONE) {
          Die("update or replace: %s", sqlite3_errmsg(c.get()));
        }
        for (auto& t : out) Expect('U', t);
        break;
      }
      case 5: {  // key change; fails (no change) on a conflict
        std::string tag = Tag();
        int rc = Run(c, "UPDATE items SET id=?1, tag=?2 WHERE id=?3 RETURNING tag",
                     {Int(g.Uniform(1, 300)), Text(tag), Int(id)}, &out);
        if (rc == SQLITE_DONE) {
          for (auto& t : out) Expect('U', t);
        } else if ((rc & 0xff) != SQLITE_CONSTRAINT) {
          Die("update key: %s", sqlite3_errmsg(c.get()));
        }
        break;
      }
      default: {
        Run(c, "DELETE FROM items WHERE id BETWEEN ?1 AND ?2 RETURNING tag", {Int(id), Int(id + g.Uniform(0, 3))}, &out);
        for (auto& t : out) Expect('D', t);
      }
    }
  }

  void OpPairs() {
    SqlValue pa = Text(kPairA[g.Uniform(0, 5)]);
    SqlValue pb = Int(g.Uniform(1, 40));
    SqlValue qty = g.Chance(0.2) ? g.Any() : Int(g.Uniform(-5, 500));
    SqlValue note = g.Chance(0.3) ? g.Any() : Text(g.Text(30));
    std::vector<std::string> out;
    switch (g.Uniform(0, 5)) {
      case 0: {
        std::string tag = Tag();
        Run(c, "INSERT INTO pairs(a,b,qty,note,tag) VALUES(?1,?2,?3,?4,?5) ON CONFLICT DO NOTHING RETURNING tag",
            {pa, pb, qty, note, Text(tag)}, &out);
        for (auto& t : out) Expect('I', t);
        break;
      }
      case 1: {  // REPLACE on the primary key: DELETE only with recursive_triggers
        Run(c, "SELECT tag FROM pairs WHERE a=?1 AND b=?2", {pa, pb}, &out);
        if (recursive) for (auto& t : out) Expect('D', t);
        std::string tag = Tag();
        if (Run(c, "INSERT OR REPLACE INTO pairs(a,b,qty,note,tag) VALUES(?1,?2,?3,?4,?5)", {pa, pb, qty, note, Text(tag)}) !=
            SQLITE_DONE) {
          Die("replace pairs: %s", sqlite3_errmsg(c.get()));
        }
        Expect('I', tag);
        break;
      }
      case 2: {
        std::string tag = Tag();
        Run(c, "UPDATE pairs SET qty=?1, note=?2, tag=?3 WHERE a=?4 AND b=?5 RETURNING tag", {qty, note, Text(tag), pa, pb},
            &out);
        for (auto& t : out) Expect('U', t);
        break;
      }
      case 3: {  // composite key change, skipped on conflict
        std::string tag = Tag();
        Run(c, "UPDATE OR IGNORE pairs SET b=?1, tag=?2 WHERE a=?3 AND b=?4 RETURNING tag",
            {Int(g.Uniform(1, 40)), Text(tag), pa, pb}, &out);
        for (auto& t : out) Expect('U', t);
        break;
      }
      default: {
        Run(c, "DELETE FROM pairs WHERE a=?1 AND b BETWEEN ?2 AND ?2 + 2 RETURNING tag", {pa, pb}, &out);
        for (auto& t : out) Expect('D', t);
      }
    }
  }

  void OpWide() {
    int64_t id = g.Uniform(1, 120);
    std::vector<std::string> out;
    switch (g.Uniform(0, 3)) {
      case 0: {
        Run(c, "SELECT tag FROM wide WHERE id=?1", {Int(id)}, &out);
        if (recursive) for (auto& t : out) Expect('D', t);
        std::string tag = Tag();
        std::string sql = "INSERT OR REPLACE INTO wide VALUES(?1,?2";
        std::vector<SqlValue> vals = {Int(id), Text(tag)};
        for (int i = 0; i < kWideExtra; i++) {
          sql += ",?" + std::to_string(i + 3);
          vals.push_back(g.Chance(0.6) ? Null() : g.Any());
        }
        if (Run(c, sql + ")", vals) != SQLITE_DONE) Die("replace wide: %s", sqlite3_errmsg(c.get()));
        Expect('I', tag);
        break;
      }
      case 1: case 2: {
        std::string tag = Tag();
        int k1 = static_cast<int>(g.Uniform(0, kWideExtra - 1)), k2 = static_cast<int>(g.Uniform(0, kWideExtra - 1));
        if (k2 == k1) k2 = (k1 + 1) % kWideExtra;
        Run(c, "UPDATE wide SET c" + std::to_string(k1) + "=?1, c" + std::to_string(k2) + "=?2, tag=?3 WHERE id=?4 RETURNING tag",
            {g.Any(), g.Any(), Text(tag), Int(id)}, &out);
        for (auto& t : out) Expect('U', t);
        break;
      }
      default: {
        Run(c, "DELETE FROM wide WHERE id=?1 RETURNING tag", {Int(id)}, &out);
        for (auto& t : out) Expect('D', t);
      }
    }
  }

  void Op() {
    int k = static_cast<int>(g.Uniform(0, 9));
    if (k < 5) OpItems();
    else if (k < 8) OpPairs();
    else OpWide();
  }

  void ChunkedBootstrap() {
    // Each call is its own autocommit transaction, interleaved with the
    // other writers' transactions.
    for (;;) {
      sqlite3_stmt* st = c.Prep("SELECT cdc_bootstrap('items', 64)");
      int rc = sqlite3_step(st);
      if (rc != SQLITE_ROW) Die("chunked bootstrap: %s", sqlite3_errmsg(c.get()));
      int64_t n = sqlite3_column_int64(st, 0);
      sqlite3_reset(st);
      if (n == 0) break;
      if (g_stop) break;  // an unfinished chunked bootstrap is legitimate
    }
  }

  void Loop() {
    while (!g_stop) {
      if (ext && g.Chance(0.001)) ChunkedBootstrap();
      exp.clear();
      opn = 0;
      txn++;
      int64_t t0 = NowNs();
      if (c.TryExec("BEGIN IMMEDIATE") != SQLITE_OK) {
        fprintf(stderr, "soak[writer %d]: BEGIN IMMEDIATE gave up: %s\n", a.id, sqlite3_errmsg(c.get()));
        continue;
      }
      int64_t t1 = NowNs();
      int nops = static_cast<int>(g.Uniform(1, 20));
      size_t sp_mark = 0;
      bool in_sp = false;
      for (int i = 0; i < nops; i++) {
        if (!in_sp && g.Chance(0.03)) {
          c.Exec("SAVEPOINT part");
          sp_mark = exp.size();
          in_sp = true;
        }
        if (ext && g.Chance(0.0005)) {
          c.Exec("SELECT cdc_bootstrap('pairs')");
          exp.push_back("B pairs");
        }
        Op();
        if (in_sp && g.Chance(0.3)) {
          if (g.Chance(0.5)) {
            c.Exec("ROLLBACK TO part");
            exp.resize(sp_mark);
          }
          c.Exec("RELEASE part");
          in_sp = false;
        }
      }
      if (in_sp) c.Exec("RELEASE part");
      Run(c, "INSERT INTO soak_commits(writer, epoch, txn, events) VALUES(?1,?2,?3,?4)",
          {Int(a.id), Int(a.epoch), Int(txn), Int(static_cast<int64_t>(exp.size()))});
      bool rollback = g.Chance(0.08);
      if (!rollback) {
        // The expectations go to disk before COMMIT, so a committed
        // transaction always has them, whenever this process dies.
        std::string block = "T " + std::to_string(txn) + "\n";
        for (auto& e : exp) block += e + "\n";
        WriteAll(expfd, block);
      }
      if (g_die_in_txn && !rollback && !exp.empty()) {
        // Hold the write lock mid-transaction and let the driver kill us.
        std::string msg = std::to_string(t1) + " " + std::to_string(a.epoch) + " " + std::to_string(txn) + " " +
                          std::to_string(exp.size()) + "\n";
        WriteAll(a.killfd, msg);
        for (;;) pause();
      }
      int rc = c.TryExec(rollback ? "ROLLBACK" : "COMMIT");
      int64_t t2 = NowNs();
      if (rc != SQLITE_OK) Die("%s: %s", rollback ? "ROLLBACK" : "COMMIT", sqlite3_errmsg(c.get()));
      if (rollback) WriteAll(expfd, "R " + std::to_string(txn) + "\n");
      WriteAll(lockfd, "W " + std::to_string(t0) + " " + std::to_string(t1) + "\nH " + std::to_string(t1) + " " +
                           std::to_string(t2) + "\n");
    }
  }
};

void OnTerm(int) { g_stop = 1; }
void OnUsr1(int) { g_die_in_txn = 1; }

// The signals the driver sends a writer: blocked from before its fork until
// the writer has its handlers (Spawn), so one sent while it starts (slow
// under ASan) is held pending instead of ending it by default action.
sigset_t DriverSignals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  sigaddset(&s, SIGTERM);
  return s;
}

int WriterMain(const Args& a) {
  signal(SIGTERM, OnTerm);
  signal(SIGUSR1, OnUsr1);
  const sigset_t sigs = DriverSignals();
  sigprocmask(SIG_UNBLOCK, &sigs, nullptr);
  Writer w(a);
  w.Loop();
  return 0;
}

// ---------------------------------------------------------------- consumer

struct Replica {
  Conn c;
  std::vector<TableSpec> specs = Specs();
  int64_t last_id = 0, acked_before = 0;
  int64_t applied = 0, redelivered = 0, batches = 0;
  bool drop_one_ = getenv("CDC_SOAK_SELFTEST_LOSE_ONE") != nullptr;

  explicit Replica(const std::string& path) : c(path, "") {
    c.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    c.Exec("BEGIN");
    for (auto& t : specs) c.Exec(CreateSql(t, false));
    c.Exec("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;"
           "CREATE TABLE IF NOT EXISTS seen(id INTEGER PRIMARY KEY, op TEXT, tbl TEXT, tag TEXT);"
           "INSERT OR IGNORE INTO meta VALUES('last_id',0),('acked_before',0),('applied',0),('redelivered',0),"
           "('batches',0),('restarts',-1);"
           "UPDATE meta SET v = v + 1 WHERE k = 'restarts'");
    c.Exec("COMMIT");
    last_id = Meta("last_id");
    acked_before = Meta("acked_before");
    applied = Meta("applied");
    redelivered = Meta("redelivered");
    batches = Meta("batches");
  }
  int64_t Meta(const char* k) {
    sqlite3_stmt* st = c.Prep("SELECT v FROM meta WHERE k = ?1");
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) Die("meta %s", k);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
  }
  void SetMeta(const char* k, int64_t v) {
    sqlite3_stmt* st = c.Prep("UPDATE meta SET v = ?2 WHERE k = ?1");
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    if (sqlite3_step(st) != SQLITE_DONE) Die("set meta: %s", sqlite3_errmsg(c.get()));
  }

  const TableSpec* Spec(const std::string& name) {
    for (auto& t : specs)
      if (t.name == name) return &t;
    return nullptr;
  }

  // Decodes an image and checks its keys are the table's columns, in order.
  void Image(const TableSpec& t, const Json* img, Row* out, int64_t id) {
    if (!img || img->kind != Json::kObject) Die("event %" PRId64 ": image is not an object", id);
    if (img->members.size() != t.cols.size()) Die("event %" PRId64 ": image has %zu keys, table %s has %zu columns", id, img->members.size(), t.name.c_str(), t.cols.size());
    out->clear();
    for (size_t i = 0; i < t.cols.size(); i++) {
      if (img->members[i].first != t.cols[i]) Die("event %" PRId64 ": key %zu is '%s', column is '%s'", id, i, img->members[i].first.c_str(), t.cols[i].c_str());
      SqlValue v;
      if (!cdcjson::ToSqlValue(img->members[i].second, &v)) Die("event %" PRId64 ": undecodable value of %s", id, t.cols[i].c_str());
      out->push_back(std::move(v));
    }
  }

  void DeleteKey(const TableSpec& t, const Row& r) {
    std::string sql = "DELETE FROM " + Q(t.name) + " WHERE ";
    for (size_t i = 0; i < t.key.size(); i++) sql += (i ? " AND " : "") + Q(t.cols[static_cast<size_t>(t.key[i])]) + " = ?" + std::to_string(i + 1);
    sqlite3_stmt* st = c.Prep(sql);
    for (size_t i = 0; i < t.key.size(); i++) cdcjson::BindValue(st, static_cast<int>(i + 1), r[static_cast<size_t>(t.key[i])]);
    if (sqlite3_step(st) != SQLITE_DONE) Die("replica delete: %s", sqlite3_errmsg(c.get()));
  }
  void Upsert(const TableSpec& t, const Row& r) {
    std::string sql = "INSERT OR REPLACE INTO " + Q(t.name) + " VALUES(";
    for (size_t i = 0; i < t.cols.size(); i++) sql += (i ? ",?" : "?") + std::to_string(i + 1);
    sqlite3_stmt* st = c.Prep(sql + ")");
    for (size_t i = 0; i < r.size(); i++) cdcjson::BindValue(st, static_cast<int>(i + 1), r[i]);
    if (sqlite3_step(st) != SQLITE_DONE) Die("replica upsert: %s", sqlite3_errmsg(c.get()));
  }
  static std::string TagOf(const TableSpec& t, const Row& r) {
    size_t k = static_cast<size_t>(std::find(t.cols.begin(), t.cols.end(), "tag") - t.cols.begin());
    return r[k].type == SqlValue::kText ? r[k].bytes : "?";
  }

  // Applies one batch (a JSON array of events) in one replica transaction.
  // `pos` is the consumer's acknowledged position when the batch was read.
  // Returns the id to ack (0 for an empty batch).
  int64_t ApplyBatch(const std::string& text, int64_t pos) {
    Json arr;
    cdcjson::Reader rd;
    if (!rd.Parse(text, &arr) || arr.kind != Json::kArray) Die("batch is not strict JSON: %s", rd.error().c_str());
    if (arr.items.empty()) return 0;
    c.Exec("BEGIN");
    int64_t prev = 0, newest = 0;
    bool any = false;
    for (auto& e : arr.items) {
      const Json* jid = e.Get("id");
      const Json* jop = e.Get("op");
      const Json* jt = e.Get("table");
      if (!jid || jid->kind != Json::kInt || !jop || jop->kind != Json::kString || !jt || jt->kind != Json::kString ||
          !e.Get("ts") || !e.Get("before") || !e.Get("after") || e.members.size() != 6) {
        Die("malformed event in batch");
      }
      int64_t id = jid->i;
      if (id <= prev) Die("ids not strictly increasing in a batch: %" PRId64 " after %" PRId64, id, prev);
      if (id <= pos) Die("event %" PRId64 " is at or below the acked position %" PRId64, id, pos);
      prev = newest = id;
      if (id <= last_id) {
        // Delivered again after a crash: must belong to the batch that was
        // applied but not acked.
        if (id <= acked_before) Die("event %" PRId64 " redelivered but older than the last applied batch (acked %" PRId64 ")", id, acked_before);
        redelivered++;
        continue;
      }
      if (drop_one_ && id % 997 == 0) {  // self-test of the audit: lose one event
        drop_one_ = false;
        last_id = id;
        continue;
      }
      const TableSpec* t = Spec(jt->s);
      if (!t) Die("event %" PRId64 " for unknown table %s", id, jt->s.c_str());
      const std::string& op = jop->s;
      Row before, after;
      std::string rop, tag;
      if (op == "INSERT") {
        if (e.Get("before")->kind != Json::kNull) Die("INSERT with a before image");
        Image(*t, e.Get("after"), &after, id);
        Upsert(*t, after);
        rop = "I";
        tag = TagOf(*t, after);
      } else if (op == "UPDATE") {
        Image(*t, e.Get("before"), &before, id);
        Image(*t, e.Get("after"), &after, id);
        DeleteKey(*t, before);
        Upsert(*t, after);
        rop = "U";
        tag = TagOf(*t, after);
      } else if (op == "DELETE") {
        if (e.Get("after")->kind != Json::kNull) Die("DELETE with an after image");
        Image(*t, e.Get("before"), &before, id);
        DeleteKey(*t, before);
        rop = "D";
        tag = TagOf(*t, before);
      } else if (op == "BOOTSTRAP") {
        if (e.Get("before")->kind != Json::kNull || e.Get("after")->kind != Json::kNull) Die("BOOTSTRAP with images");
        c.Exec("DELETE FROM " + Q(t->name));
        rop = "B";
      } else {
        Die("unknown op %s", op.c_str());
      }
      sqlite3_stmt* st = c.Prep("INSERT INTO seen(id, op, tbl, tag) VALUES(?1,?2,?3,?4)");
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_text(st, 2, rop.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 3, t->name.c_str(), -1, SQLITE_TRANSIENT);
      if (rop == "B") sqlite3_bind_null(st, 4);
      else sqlite3_bind_text(st, 4, tag.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) != SQLITE_DONE) Die("record seen %" PRId64 ": %s", id, sqlite3_errmsg(c.get()));
      last_id = id;
      applied++;
      any = true;
    }
    batches++;
    if (any) acked_before = pos;
    SetMeta("last_id", last_id);
    SetMeta("acked_before", acked_before);
    SetMeta("applied", applied);
    SetMeta("redelivered", redelivered);
    SetMeta("batches", batches);
    c.Exec("COMMIT");
    return newest;
  }
};

struct AckLog {
  int fd = -1;
  int64_t max_ns = 0;
};

int64_t Position(Conn& c, const std::string& name) {
  sqlite3_stmt* st = c.Prep("SELECT cdc_consumer_add(?1)");
  sqlite3_bind_text(st, 1, name.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) != SQLITE_ROW) Die("position: %s", sqlite3_errmsg(c.get()));
  int64_t p = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return p;
}

int PollConsumer(const Args& a, Replica& rep, Conn& c, Gen& g) {
  const bool have_wait = c.HasFunction("cdc_wait");
  int64_t pos = Position(c, a.name);
  int ackfd = open((a.dir + "/" + a.name + ".acks").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  while (!g_stop) {
    if (have_wait) {
      sqlite3_stmt* st = c.Prep("SELECT cdc_wait(?1, 200)");
      sqlite3_bind_text(st, 1, a.name.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) != SQLITE_ROW) Die("cdc_wait: %s", sqlite3_errmsg(c.get()));
      int64_t n = sqlite3_column_int64(st, 0);
      sqlite3_reset(st);
      if (n == 0) continue;
    }
    sqlite3_stmt* st = c.Prep("SELECT cdc_poll(?1, ?2)");
    sqlite3_bind_text(st, 1, a.name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, g.Uniform(1, 400));
    if (sqlite3_step(st) != SQLITE_ROW) Die("cdc_poll: %s", sqlite3_errmsg(c.get()));
    std::string text(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), static_cast<size_t>(sqlite3_column_bytes(st, 0)));
    sqlite3_reset(st);
    int64_t upto = rep.ApplyBatch(text, pos);
    if (upto == 0) {
      if (!have_wait) SleepUs(5000);
      continue;
    }
    if (g.Chance(0.05)) SleepUs(g.Uniform(0, 20000));  // widen the applied-but-not-acked window
    int64_t t0 = NowNs();
    st = c.Prep("SELECT cdc_ack(?1, ?2)");
    sqlite3_bind_text(st, 1, a.name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, upto);
    if (sqlite3_step(st) != SQLITE_ROW) Die("cdc_ack: %s", sqlite3_errmsg(c.get()));
    int64_t np = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    int64_t t1 = NowNs();
    if (np != upto) Die("cdc_ack(%" PRId64 ") returned position %" PRId64, upto, np);
    pos = np;
    if (ackfd >= 0) WriteAll(ackfd, "A " + std::to_string(t0) + " " + std::to_string(t1) + "\n");
  }
  return 0;
}

#ifdef SOAK_HAVE_CDC_H
// The listener consumer: cdc_listen with a C callback (include/cdc.h). The
// callback runs on the listener's thread; it rebuilds the batch as the JSON
// array cdc_poll would return and applies it like the poll consumer. The
// acknowledged position it checks against is read, on a connection of its
// own, from __cdc_consumers at each call (the listener acks after a batch).
struct ListenCtx {
  Replica* rep;
  Conn* probe;
  std::string name;
};

void AppendJsonString(std::string* out, const char* s) {
  out->push_back('"');
  for (; *s; s++) {
    unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      out->append(b);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

int OnChanges(void* user, const cdc_change* ch, int n) {
  auto* ctx = static_cast<ListenCtx*>(user);
  sqlite3_stmt* st = ctx->probe->Prep("SELECT pos FROM __cdc_consumers WHERE name = ?1");
  sqlite3_bind_text(st, 1, ctx->name.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) != SQLITE_ROW) Die("listener: read position: %s", sqlite3_errmsg(ctx->probe->get()));
  int64_t pos = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  std::string text = "[";
  for (int i = 0; i < n; i++) {
    if (i) text += ",";
    text += "{\"id\":" + std::to_string(ch[i].id) + ",\"ts\":" + std::to_string(ch[i].ts) + ",\"table\":";
    AppendJsonString(&text, ch[i].table);
    text += ",\"op\":";
    AppendJsonString(&text, ch[i].op);
    text += std::string(",\"before\":") + (ch[i].before ? ch[i].before : "null");
    text += std::string(",\"after\":") + (ch[i].after ? ch[i].after : "null") + "}";
  }
  text += "]";
  ctx->rep->ApplyBatch(text, pos);
  return 0;
}

int ListenConsumer(const Args& a, Replica& rep, Conn& c) {
  Conn probe(a.dir + "/soak.db", "");
  ListenCtx ctx{&rep, &probe, a.name};
  char* err = nullptr;
  if (cdc_listen(c.get(), a.name.c_str(), OnChanges, &ctx, nullptr, "{\"batch\": 200}", &err) != SQLITE_OK) {
    Die("cdc_listen: %s", err ? err : "?");
  }
  while (!g_stop) SleepUs(20000);
  if (cdc_unlisten(c.get(), a.name.c_str(), &err) != SQLITE_OK) Die("cdc_unlisten: %s", err ? err : "?");
  return 0;
}
#endif

int ConsumerMain(const Args& a) {
  signal(SIGTERM, OnTerm);
  Gen g(a.seed);
  Replica rep(a.dir + "/replica_" + a.name + ".db");
  Conn c(a.dir + "/soak.db", a.ext);
  OpenMainPragmas(c);
  // Only the batch that was applied but not acked may come again.
  int64_t pos = Position(c, a.name);
  if (pos < rep.acked_before) Die("position %" PRId64 " went back before %" PRId64, pos, rep.acked_before);
  if (pos > rep.last_id) Die("position %" PRId64 " is past what was applied (%" PRId64 ")", pos, rep.last_id);
#ifdef SOAK_HAVE_CDC_H
  if (a.name == "listen" && c.HasFunction("cdc_listen")) {
    rep.c.Exec("INSERT OR REPLACE INTO meta VALUES('listener', 1)");
    return ListenConsumer(a, rep, c);
  }
#endif
  return PollConsumer(a, rep, c, g);
}

// ---------------------------------------------------------------- driver

struct Child {
  pid_t pid = -1;
  std::string what;
  int killfd = -1;  // writers: read end of the mid-transaction pipe
};

std::string g_self;

Child Spawn(const Args& a, const std::vector<std::string>& extra, const std::string& what) {
  int fds[2] = {-1, -1};
  bool writer = what[0] == 'w';
  if (writer && pipe(fds) != 0) Die("pipe");
  // A writer starts with SIGUSR1 and SIGTERM blocked (the mask survives
  // execv) and unblocks them once its handlers are set (WriterMain): a kill
  // request sent while it starts waits for it instead of killing it.
  const sigset_t sigs = DriverSignals();
  sigset_t old_mask;
  if (writer) sigprocmask(SIG_BLOCK, &sigs, &old_mask);
  pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid > 0 && writer) sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid == 0) {
    std::vector<std::string> args = {g_self, "--ext", a.ext, "--dir", a.dir};
    args.insert(args.end(), extra.begin(), extra.end());
    if (writer) {
      close(fds[0]);
      args.push_back("--killfd");
      args.push_back(std::to_string(fds[1]));
    }
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    execv(g_self.c_str(), argv.data());
    _exit(127);
  }
  g_children.push_back(pid);
  Child ch;
  ch.pid = pid;
  ch.what = what;
  if (writer) {
    close(fds[1]);
    ch.killfd = fds[0];
  }
  return ch;
}

struct Interval {
  int64_t s, e;
};

struct Figures {
  int64_t txns_committed = 0, txns_rolled_back = 0, txns_killed = 0, expected_events = 0, log_events = 0;
  int consumer_kills = 0, writer_kills = 0;
};

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream f(path);
  std::string l;
  while (std::getline(f, l)) out.push_back(l);
  return out;
}

void Check(bool ok, const char* fmt, ...) {
  if (ok) return;
  for (pid_t p : g_children) kill(p, SIGKILL);
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak[driver]: FAIL: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

int DriverMain(Args a) {
  if (a.seed == 0) a.seed = static_cast<uint64_t>(time(nullptr)) ^ static_cast<uint64_t>(getpid());
  bool made_dir = false;
  if (a.dir.empty()) {
    char tmpl[] = "/tmp/cdcsoak.XXXXXX";
    if (!mkdtemp(tmpl)) Die("mkdtemp");
    a.dir = tmpl;
    made_dir = true;
  } else {
    mkdir(a.dir.c_str(), 0755);
    std::string cmd = "rm -f '" + a.dir + "'/*.db* '" + a.dir + "'/*.exp '" + a.dir + "'/*.locks '" + a.dir + "'/*.acks";
    if (system(cmd.c_str()) != 0) Die("clean %s", a.dir.c_str());
  }
  printf("soak: dir %s, %.0f s, seed %" PRIu64 "\n", a.dir.c_str(), a.seconds, a.seed);
  fflush(stdout);
  Gen g(a.seed);
  std::vector<TableSpec> specs = Specs();
  const std::string dbpath = a.dir + "/soak.db";
  {
    Conn c(dbpath, a.ext);
    c.Exec("PRAGMA journal_mode=WAL");
    c.Exec("BEGIN");
    for (auto& t : specs) c.Exec(CreateSql(t, true));
    c.Exec("CREATE TABLE soak_commits(writer INTEGER, epoch INTEGER, txn INTEGER, events INTEGER, "
           "PRIMARY KEY(writer, epoch, txn)) WITHOUT ROWID");
    // Rows that exist before capture: consumers learn them from cdc_bootstrap.
    for (int i = 1; i <= 100; i++) {
      Run(c, "INSERT INTO items VALUES(?1,?2,?3,?4,?5)",
          {Int(i), Text("k" + std::to_string(i)), Real(g.Real()), Blob(g.Bytes(16)), Text("init.i" + std::to_string(i))});
    }
    for (int i = 1; i <= 40; i++) {
      Run(c, "INSERT INTO pairs VALUES(?1,?2,?3,?4,?5)",
          {Text(kPairA[i % 6]), Int(i), g.Any(), Text(g.Text(10)), Text("init.p" + std::to_string(i))});
    }
    for (int i = 1; i <= 30; i++) {
      std::vector<SqlValue> vals = {Int(i), Text("init.w" + std::to_string(i))};
      std::string sql = "INSERT INTO wide VALUES(?1,?2";
      for (int k = 0; k < kWideExtra; k++) {
        sql += ",?" + std::to_string(k + 3);
        vals.push_back(g.Any());
      }
      Run(c, sql + ")", vals);
    }
    for (auto& t : specs) c.Exec("SELECT cdc_setup('" + t.name + "')");
    c.Exec("SELECT cdc_consumer_add('poll'); SELECT cdc_consumer_add('listen')");
    for (auto& t : specs) c.Exec("SELECT cdc_bootstrap('" + t.name + "')");
    c.Exec("COMMIT");
  }

  std::vector<std::string> cnames = {"poll", "listen"};
  std::vector<Child> writers(4), consumers(2);
  std::vector<int> epoch(4, 0);
  auto start_writer = [&](int w) {
    writers[static_cast<size_t>(w)] =
        Spawn(a, {"--role", "writer", "--id", std::to_string(w), "--epoch", std::to_string(epoch[static_cast<size_t>(w)]),
                  "--seed", std::to_string(a.seed * 131 + static_cast<uint64_t>(w) * 7919 + static_cast<uint64_t>(epoch[static_cast<size_t>(w)]))},
              "writer" + std::to_string(w));
  };
  int consumer_starts = 0;
  auto start_consumer = [&](int k) {
    consumers[static_cast<size_t>(k)] =
        Spawn(a, {"--role", "consumer", "--name", cnames[static_cast<size_t>(k)], "--seed", std::to_string(a.seed + 17 * static_cast<uint64_t>(++consumer_starts))},
              "consumer-" + cnames[static_cast<size_t>(k)]);
  };
  for (int k = 0; k < 2; k++) start_consumer(k);
  for (int w = 0; w < 4; w++) start_writer(w);

  // Fault plan.
  const int64_t t_start = NowNs();
  const int64_t dur = static_cast<int64_t>(a.seconds * 1e9);
  std::vector<std::pair<int64_t, int>> plan;  // (time, action): 0/1 kill consumer k, 2 kill a writer mid-transaction
  int ckills = std::max(3, static_cast<int>(a.seconds / 6));
  for (int i = 0; i < ckills; i++)
    for (int k = 0; k < 2; k++) plan.emplace_back(t_start + g.Uniform(dur / 10, dur * 9 / 10), k);
  int wkills = std::max(2, static_cast<int>(a.seconds / 20));
  for (int i = 0; i < wkills; i++) plan.emplace_back(t_start + g.Uniform(dur / 10, dur * 9 / 10), 2);
  std::sort(plan.begin(), plan.end());

  Figures fig;
  std::vector<Interval> killed_holds;
  std::vector<int64_t> kill_times;
  size_t next = 0;
  auto check_alive = [&]() {
    int status;
    for (auto* group : {&writers, &consumers}) {
      for (auto& ch : *group) {
        if (waitpid(ch.pid, &status, WNOHANG) == ch.pid) Check(false, "%s exited early (status %d)", ch.what.c_str(), status);
      }
    }
  };
  while (NowNs() - t_start < dur) {
    SleepUs(20000);
    check_alive();
    while (next < plan.size() && plan[next].first <= NowNs()) {
      int action = plan[next++].second;
      if (action < 2) {
        Child& ch = consumers[static_cast<size_t>(action)];
        kill(ch.pid, SIGKILL);
        int status;
        waitpid(ch.pid, &status, 0);
        Check(WIFSIGNALED(status), "%s ended before its kill (status %d)", ch.what.c_str(), status);
        fig.consumer_kills++;
        kill_times.push_back(NowNs());
        start_consumer(action);
      } else {
        int w = static_cast<int>(g.Uniform(0, 3));
        Child& ch = writers[static_cast<size_t>(w)];
        kill(ch.pid, SIGUSR1);
        pollfd pfd{ch.killfd, POLLIN, 0};
        Check(poll(&pfd, 1, 30000) == 1, "writer %d did not reach a transaction to be killed in", w);
        char buf[256] = {0};
        ssize_t n = read(ch.killfd, buf, sizeof buf - 1);
        Check(n > 0, "read kill pipe");
        int64_t acquired = 0, txn = 0, nev = 0;
        int ep = 0;
        Check(sscanf(buf, "%" SCNd64 " %d %" SCNd64 " %" SCNd64, &acquired, &ep, &txn, &nev) == 4, "kill pipe message");
        SleepUs(g.Uniform(0, 20000));
        kill(ch.pid, SIGKILL);
        int status;
        waitpid(ch.pid, &status, 0);
        killed_holds.push_back({acquired, NowNs()});
        close(ch.killfd);
        Check(WIFSIGNALED(status), "writer %d ended before its kill", w);
        // Neither its rows, nor its commit record, nor its events survive.
        Conn c(dbpath, a.ext);
        std::string prefix = "w" + std::to_string(w) + "." + std::to_string(ep) + "." + std::to_string(txn) + ".";
        int64_t rows = 0;
        for (auto& t : specs) {
          sqlite3_stmt* st = c.Prep("SELECT count(*) FROM " + Q(t.name) + " WHERE substr(tag, 1, length(?1)) = ?1");
          sqlite3_bind_text(st, 1, prefix.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_step(st);
          rows += sqlite3_column_int64(st, 0);
          sqlite3_reset(st);
        }
        sqlite3_stmt* st = c.Prep("SELECT count(*) FROM soak_commits WHERE writer=?1 AND epoch=?2 AND txn=?3");
        sqlite3_bind_int(st, 1, w);
        sqlite3_bind_int(st, 2, ep);
        sqlite3_bind_int64(st, 3, txn);
        sqlite3_step(st);
        int64_t commits = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        st = c.Prep("SELECT count(*) FROM cdc_changes WHERE instr(coalesce(before, '') || coalesce(after, ''), ?1) > 0");
        std::string needle = "\"tag\":\"" + prefix;
        sqlite3_bind_text(st, 1, needle.c_str(), -1, SQLITE_TRANSIENT);
        Check(sqlite3_step(st) == SQLITE_ROW, "scan cdc_changes: %s", sqlite3_errmsg(c.get()));
        int64_t events = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        Check(rows == 0 && commits == 0 && events == 0,
              "killed transaction %s (%" PRId64 " events pending) left %" PRId64 " rows, %" PRId64 " commit records, %" PRId64 " log events",
              prefix.c_str(), nev, rows, commits, events);
        fig.writer_kills++;
        kill_times.push_back(NowNs());
        epoch[static_cast<size_t>(w)]++;
        start_writer(w);
      }
    }
  }
  // Stop writers, let consumers drain, stop consumers.
  for (auto& ch : writers) kill(ch.pid, SIGTERM);
  for (auto& ch : writers) {
    int status;
    waitpid(ch.pid, &status, 0);
    Check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status %d)", ch.what.c_str(), status);
    close(ch.killfd);
  }
  {
    Conn c(dbpath, a.ext);
    // Consumers may trail the writers (they apply every event to a replica
    // on a shared machine); give the backlog time in proportion to the run.
    int64_t deadline = NowNs() + std::max<int64_t>(300'000'000'000LL, 5 * dur);
    for (;;) {
      check_alive();
      int64_t newest = c.Int("SELECT coalesce(max(id), 0) FROM __cdc_log");
      int64_t lagging = c.Int("SELECT count(*) FROM __cdc_consumers WHERE pos < (SELECT coalesce(max(id), 0) FROM __cdc_log)");
      if (lagging == 0) {
        fig.log_events = newest;
        break;
      }
      Check(NowNs() < deadline, "consumers did not catch up with %" PRId64, newest);
      SleepUs(50000);
    }
  }
  for (auto& ch : consumers) kill(ch.pid, SIGTERM);
  for (auto& ch : consumers) {
    int status;
    waitpid(ch.pid, &status, 0);
    Check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status %d)", ch.what.c_str(), status);
  }
  const double elapsed = static_cast<double>(NowNs() - t_start) / 1e9;

  // ---- audit
  Conn c(dbpath, "");
  // Which transactions committed, and what they must have produced.
  std::set<std::tuple<int, int, int64_t>> committed;
  {
    sqlite3_stmt* st = c.Prep("SELECT writer, epoch, txn FROM soak_commits");
    while (sqlite3_step(st) == SQLITE_ROW) {
      committed.emplace(sqlite3_column_int(st, 0), sqlite3_column_int(st, 1), sqlite3_column_int64(st, 2));
    }
    sqlite3_reset(st);
  }
  std::unordered_map<std::string, int> expected;  // "I tag" etc. -> count
  std::unordered_set<std::string> committed_tags;
  int64_t txns_logged = 0;
  for (int w = 0; w < 4; w++) {
    for (int e = 0; e <= epoch[static_cast<size_t>(w)]; e++) {
      bool in = false;
      for (auto& l : Lines(a.dir + "/w" + std::to_string(w) + "e" + std::to_string(e) + ".exp")) {
        if (l.size() < 3) continue;  // a torn last line of a killed writer
        if (l[0] == 'R') {
          fig.txns_rolled_back++;
          continue;
        }
        if (l[0] == 'T') {
          txns_logged++;
          in = committed.count({w, e, std::stoll(l.substr(2))}) > 0;
          continue;
        }
        if (!in || l[0] == 'B') continue;
        expected[l]++;
        if (l[0] != 'D') committed_tags.insert(l.substr(2));
      }
    }
  }
  fig.txns_committed = static_cast<int64_t>(committed.size());
  fig.txns_killed = txns_logged - fig.txns_committed;  // expectations logged, then killed before COMMIT
  for (auto& kv : expected) fig.expected_events += kv.second;
  c.Exec("ATTACH '" + a.dir + "/replica_poll.db' AS r0; ATTACH '" + a.dir + "/replica_listen.db' AS r1");

  std::string report;
  char line[2048];
  for (int k = 0; k < 2; k++) {
    const std::string sch = "r" + std::to_string(k);
    // Replica equals the tables, value by value.
    for (auto& t : specs) {
      std::vector<Row> mine, theirs;
      std::string err;
      Check(cdcjson::QueryRows(c.get(), "SELECT * FROM main." + Q(t.name) + " ORDER BY " + OrderBy(t), &mine, &err), "%s", err.c_str());
      Check(cdcjson::QueryRows(c.get(), "SELECT * FROM " + sch + "." + Q(t.name) + " ORDER BY " + OrderBy(t), &theirs, &err), "%s", err.c_str());
      size_t diffs = 0;
      for (size_t i = 0; i < std::max(mine.size(), theirs.size()); i++) {
        bool same = i < mine.size() && i < theirs.size() && mine[i] == theirs[i];
        if (!same && diffs++ < 5) {
          fprintf(stderr, "  %s.%s row %zu: table %s, replica %s\n", cnames[static_cast<size_t>(k)].c_str(), t.name.c_str(), i,
                  i < mine.size() ? cdcjson::RowDebug(mine[i]).substr(0, 200).c_str() : "-",
                  i < theirs.size() ? cdcjson::RowDebug(theirs[i]).substr(0, 200).c_str() : "-");
        }
      }
      Check(diffs == 0, "replica of %s differs from table %s in %zu rows (%zu vs %zu rows)", cnames[static_cast<size_t>(k)].c_str(),
            t.name.c_str(), diffs, mine.size(), theirs.size());
    }
    // Every expected event seen exactly once (INSERT: at least once, as a
    // bootstrap may repeat it); nothing seen that no committed statement made.
    std::unordered_map<std::string, int> seen;
    int64_t markers = 0, n_seen = 0;
    {
      sqlite3_stmt* st = c.Prep("SELECT op, tag FROM " + sch + ".seen ORDER BY id");
      while (sqlite3_step(st) == SQLITE_ROW) {
        n_seen++;
        std::string op = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        if (op == "B") {
          markers++;
          continue;
        }
        seen[op + " " + reinterpret_cast<const char*>(sqlite3_column_text(st, 1))]++;
      }
      sqlite3_reset(st);
    }
    int64_t missing = 0, invented = 0, doubled = 0;
    for (auto& kv : expected) {
      auto it = seen.find(kv.first);
      if (it == seen.end()) {
        if (missing++ < 5) fprintf(stderr, "  %s never saw %s\n", cnames[static_cast<size_t>(k)].c_str(), kv.first.c_str());
      } else if (kv.first[0] != 'I' && it->second != kv.second) {
        if (doubled++ < 5) fprintf(stderr, "  %s saw %s %d times\n", cnames[static_cast<size_t>(k)].c_str(), kv.first.c_str(), it->second);
      }
    }
    for (auto& kv : seen) {
      bool ok = expected.count(kv.first) ||
                (kv.first[0] == 'I' && (committed_tags.count(kv.first.substr(2)) || kv.first.compare(2, 5, "init.") == 0));
      if (!ok && invented++ < 5) fprintf(stderr, "  %s saw %s, which no committed statement made\n", cnames[static_cast<size_t>(k)].c_str(), kv.first.c_str());
    }
    Check(missing == 0 && invented == 0 && doubled == 0, "%s: %" PRId64 " missing, %" PRId64 " invented, %" PRId64 " repeated events",
          cnames[static_cast<size_t>(k)].c_str(), missing, invented, doubled);
    int64_t redelivered = c.Int("SELECT v FROM " + sch + ".meta WHERE k='redelivered'");
    int64_t restarts = c.Int("SELECT v FROM " + sch + ".meta WHERE k='restarts'");
    int64_t batches = c.Int("SELECT v FROM " + sch + ".meta WHERE k='batches'");
    bool listener = c.Int("SELECT count(*) FROM " + sch + ".meta WHERE k='listener'") > 0;
    snprintf(line, sizeof line,
             "consumer %-6s (%s): %" PRId64 " events applied (%" PRId64 " bootstrap markers) in %" PRId64 " batches, %" PRId64
             " redelivered after %" PRId64 " restarts; replica equal; 0 missing, 0 invented\n",
             cnames[static_cast<size_t>(k)].c_str(),
             listener ? "cdc_listen, C callback" : "cdc_wait/cdc_poll/cdc_ack", n_seen, markers, batches, redelivered, restarts);
    report += line;
  }

  // Writer waits for the lock, and how much of each wait no other writer's
  // transaction explains (an upper bound on what consumers' acks and
  // checkpoints cost writers).
  std::vector<Interval> waits, holds = killed_holds;
  std::vector<std::vector<Interval>> holds_by(4), waits_by(4);
  for (int w = 0; w < 4; w++) {
    for (int e = 0; e <= epoch[static_cast<size_t>(w)]; e++) {
      for (auto& l : Lines(a.dir + "/w" + std::to_string(w) + "e" + std::to_string(e) + ".locks")) {
        Interval iv{};
        char kind = 0;
        if (sscanf(l.c_str(), "%c %" SCNd64 " %" SCNd64, &kind, &iv.s, &iv.e) != 3) continue;
        (kind == 'H' ? holds : waits).push_back(iv);
      }
    }
  }
  std::sort(holds.begin(), holds.end(), [](const Interval& x, const Interval& y) { return x.s < y.s; });
  std::vector<Interval> acks;
  for (auto& l : Lines(a.dir + "/poll.acks")) {
    Interval iv{};
    if (sscanf(l.c_str(), "A %" SCNd64 " %" SCNd64, &iv.s, &iv.e) == 2) acks.push_back(iv);
  }
  std::sort(acks.begin(), acks.end(), [](const Interval& x, const Interval& y) { return x.s < y.s; });
  // Length of the part of [s, e) that no interval of `ivs` (sorted) covers.
  auto uncovered = [](int64_t s0, int64_t e0, const std::vector<Interval>& ivs) {
    int64_t covered = 0, cur = s0;
    for (auto& h : ivs) {
      if (h.e <= cur) continue;
      if (h.s >= e0) break;
      int64_t s = std::max(h.s, cur), e = std::min(h.e, e0);
      if (e > s) {
        covered += e - s;
        cur = e;
      }
    }
    return e0 - s0 - covered;
  };
  int64_t max_not_poll = 0, big_unexplained = 0, big_after_kill = 0;
  int64_t max_wait = 0, max_unexplained = 0, max_ack = 0, max_gap = 0;
  std::vector<int64_t> wl;
  for (auto& iv : waits) {
    int64_t len = iv.e - iv.s;
    wl.push_back(len);
    max_wait = std::max(max_wait, len);
    if (len < 1000000) continue;  // under 1 ms: nothing to explain
    // Covered = union of holds overlapping [s, e]; also the longest stretch
    // of the wait during which no writer held the lock: a consumer's (or a
    // checkpoint's, or a recovery's) hold blocks writers in one such stretch,
    // while busy-handler sleeps (up to 2 ms) only make many short ones.
    int64_t covered = 0, cur_s = iv.s;
    for (auto& h : holds) {
      if (h.e <= cur_s) continue;
      if (h.s >= iv.e) break;
      int64_t s = std::max(h.s, cur_s), e = std::min(h.e, iv.e);
      if (e > s) {
        max_gap = std::max(max_gap, s - cur_s);
        covered += e - s;
        cur_s = e;
      }
    }
    max_gap = std::max(max_gap, iv.e - cur_s);
    int64_t unexplained = len - covered;
    max_unexplained = std::max(max_unexplained, unexplained);
    if (unexplained > 20000000) {
      big_unexplained++;
      for (int64_t kt : kill_times)
        if (iv.s >= kt - 100000000 && iv.s <= kt + 3000000000LL) {
          big_after_kill++;
          break;
        }
      // Of the unexplained part, what the poll consumer's acks do not cover either.
      std::vector<Interval> both = holds;
      both.insert(both.end(), acks.begin(), acks.end());
      std::sort(both.begin(), both.end(), [](const Interval& x, const Interval& y) { return x.s < y.s; });
      max_not_poll = std::max(max_not_poll, uncovered(iv.s, iv.e, both));
    } else {
      max_not_poll = std::max(max_not_poll, unexplained);
    }
  }
  for (auto& iv : acks) max_ack = std::max(max_ack, iv.e - iv.s);
  std::sort(wl.begin(), wl.end());
  int64_t p99 = wl.empty() ? 0 : wl[wl.size() * 99 / 100];

  std::string summary;
  snprintf(line, sizeof line,
           "soak: %.1f s, seed %" PRIu64 ": %" PRId64 " transactions committed, %" PRId64 " rolled back, %" PRId64 " killed before COMMIT; "
           "%" PRId64 " log ids used (events + continuation rows), %" PRId64 " expected events checked\n",
           elapsed, a.seed, fig.txns_committed, fig.txns_rolled_back, fig.txns_killed, fig.log_events, fig.expected_events);
  summary += line;
  snprintf(line, sizeof line, "kills survived: %d consumer SIGKILLs, %d writer SIGKILLs mid-transaction\n", fig.consumer_kills,
           fig.writer_kills);
  summary += line + report;
  snprintf(line, sizeof line,
           "writer lock waits: %zu, p99 %.2f ms, max %.2f ms (mostly other writers' transactions)\n"
           "  LONGEST WRITER WAIT NOT CAUSED BY WRITERS: %.2f ms (longest stretch of a wait with no writer holding "
           "the lock: an upper bound on one hold by a consumer's read/ack, a checkpoint or a recovery, plus "
           "busy-handler sleep of up to 2 ms)\n"
           "  sum of such stretches within one wait, at most: %.2f ms "
           "(consumers' reads/acks, checkpoints, WAL recovery after a kill, back-off steps)\n"
           "  waits with over 20 ms unexplained: %" PRId64 ", of which %" PRId64 " began within 3 s of a SIGKILL\n"
           "  longest part explained neither by writers nor by the poll consumer's cdc_ack calls "
           "(so: the listener, checkpoints, recovery): %.2f ms; longest cdc_ack call (incl. its own wait): %.2f ms\n",
           wl.size(), static_cast<double>(p99) / 1e6, static_cast<double>(max_wait) / 1e6,
           static_cast<double>(max_gap) / 1e6, static_cast<double>(max_unexplained) / 1e6, big_unexplained, big_after_kill,
           static_cast<double>(max_not_poll) / 1e6, static_cast<double>(max_ack) / 1e6);
  summary += line;
  summary += "lost: 0 (every committed change seen by both consumers)\n";
  fputs(summary.c_str(), stdout);
  std::ofstream(a.dir + "/summary.txt") << summary;
  if (made_dir && !a.keep) {
    std::string cmd = "rm -rf '" + a.dir + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "could not remove %s\n", a.dir.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Die("%s needs a value", k.c_str());
      return argv[++i];
    };
    if (k == "--role") a.role = val();
    else if (k == "--ext") a.ext = val();
    else if (k == "--dir") a.dir = val();
    else if (k == "--name") a.name = val();
    else if (k == "--seconds") a.seconds = std::stod(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--id") a.id = std::stoi(val());
    else if (k == "--epoch") a.epoch = std::stoi(val());
    else if (k == "--killfd") a.killfd = std::stoi(val());
    else if (k == "--keep") a.keep = true;
    else {
      fprintf(stderr, "usage: cdc_soak --ext PATH [--seconds N] [--dir DIR] [--seed N] [--keep]\n");
      return 2;
    }
  }
  if (a.ext.empty()) {
    const char* e = getenv("CDC_EXTENSION");
    if (e) a.ext = e;
  }
  if (a.ext.empty()) Die("--ext PATH (or CDC_EXTENSION) is required");
  g_role = a.role;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) Die("readlink /proc/self/exe");
  g_self.assign(self, static_cast<size_t>(n));
  if (a.role == "writer") return WriterMain(a);
  if (a.role == "consumer") return ConsumerMain(a);
  return DriverMain(a);
}
