// last_poll.cc — see last_poll.h.
#include "last_poll.h"

#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace cdc {

namespace {

struct Polled {
  PolledBatch batch;
  bool have_text = false;
  std::string text;
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

}  // namespace

void RememberPoll(sqlite3* db, const std::string& name, const PolledBatch& b, std::string* json) {
  Memory& m = Mem();
  std::lock_guard<std::mutex> g(m.mu);
  Polled& p = m.by_key[{db, name}];
  p.batch = b;
  p.have_text = json->size() <= kMaxRememberedBatch;
  if (p.have_text) {
    p.text.swap(*json);  // the caller's string is not used again
  } else {
    std::string().swap(p.text);
  }
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
  if (it == m.by_key.end() || !it->second.have_text) return false;
  const std::string& t = it->second.text;
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
