// last_poll.cc — see last_poll.h.
#include "last_poll.h"

#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace cdc {

namespace {

struct Polled {
  PolledBatch batch;
  std::shared_ptr<const std::string> text;  // null when not kept
};

struct Memory {
  std::mutex mu;
  std::map<std::pair<sqlite3*, std::string>, Polled> by_key;
};

// Never destroyed: connections may close during static destruction at exit.
Memory& Mem() {
  static Memory* m = new Memory;
  return *m;
}

// The texts SQLite holds as results (ResultSharedText), by their bytes'
// address: the destructor SQLite calls gets only that.
struct Results {
  std::mutex mu;
  std::unordered_map<const void*, std::shared_ptr<const std::string>> held;
};

Results& Held() {
  static Results* r = new Results;  // never destroyed, as Mem()
  return *r;
}

void ReleaseResult(void* p) {
  std::shared_ptr<const std::string> drop;  // freed after the lock is given back
  Results& r = Held();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = r.held.find(p);
  if (it != r.held.end()) {
    drop = std::move(it->second);
    r.held.erase(it);
  }
}

}  // namespace

void ResultSharedText(sqlite3_context* ctx, const std::shared_ptr<const std::string>& text) {
  {
    Results& r = Held();
    std::lock_guard<std::mutex> g(r.mu);
    r.held[text->data()] = text;
  }
  // SQLite calls ReleaseResult once, when it is done with the value (at
  // once if it refuses it, e.g. too big). Length -1: SQLite finds the
  // terminating NUL (JSON text has no other) and knows the text is
  // NUL-terminated, so sqlite3_column_text does not copy it to add one.
  if (text->size() <= static_cast<size_t>(std::numeric_limits<int>::max())) {
    sqlite3_result_text(ctx, text->data(), -1, ReleaseResult);
  } else {
    sqlite3_result_text64(ctx, text->data(), text->size(), ReleaseResult, SQLITE_UTF8);
  }
}

void RememberPoll(sqlite3* db, const std::string& name, const PolledBatch& b,
                  std::shared_ptr<const std::string> json) {
  if (json && json->size() > kMaxRememberedBatch) json.reset();
  std::shared_ptr<const std::string> old;  // freed after the lock is given back
  Memory& m = Mem();
  std::lock_guard<std::mutex> g(m.mu);
  Polled& p = m.by_key[{db, name}];
  p.batch = b;
  old = std::move(p.text);
  p.text = std::move(json);
}

bool LastPoll(sqlite3* db, const std::string& name, PolledBatch* b) {
  Memory& m = Mem();
  std::lock_guard<std::mutex> g(m.mu);
  auto it = m.by_key.find({db, name});
  if (it == m.by_key.end()) return false;
  *b = it->second.batch;
  return true;
}

bool IsLastPolledBatch(sqlite3* db, const std::string& name, const char* text, size_t n, PolledBatch* b) {
  Memory& m = Mem();
  std::lock_guard<std::mutex> g(m.mu);
  auto it = m.by_key.find({db, name});
  if (it == m.by_key.end() || !it->second.text) return false;
  const std::string& t = *it->second.text;
  if (t.size() != n || std::memcmp(t.data(), text, n) != 0) return false;
  *b = it->second.batch;
  return true;
}

void ForgetPolls(sqlite3* db) {
  Memory& m = Mem();
  std::lock_guard<std::mutex> g(m.mu);
  for (auto it = m.by_key.lower_bound({db, std::string()}); it != m.by_key.end() && it->first.first == db;) {
    it = m.by_key.erase(it);
  }
}

}  // namespace cdc
