// registry.cc — the process's listeners, and each connection's state.
//
// The registry lists the running listeners (found by database file and
// consumer name: one per consumer in a process), the "zombies" stopped from
// their own thread and joined later, and the state of every connection the
// extension is loaded on (its commit hook). A connection's state is
// destroyed when the connection closes: that stops its listeners first.
// cdc_status()'s listener section reads it too, with the leases of other
// processes' listeners.
//
// Lock order (listener.cc): a connection's mutex, then the registry mutex,
// then a listener's stats mutex; nobody joins a thread holding the registry
// mutex.
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>

#include "delivery.h"
#include "json.h"
#include "listener.h"
#include "listener_internal.h"

namespace cdc {

// Never destroyed: listener threads may outlive static destruction at exit.
Registry& Reg() {
  static Registry* r = new Registry;
  return *r;
}

namespace {

int CommitHook(void* state) noexcept {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  for (const auto& l : r.live) {
    if (l->owner == state && l->commit) l->commit->Notify();
  }
  return 0;  // never turn the commit into a rollback
}

}  // namespace

// Joins a stopped listener's thread, or, when called from that very thread
// (cdc_unlisten inside the callback), leaves it to be joined later.
void Finish(std::shared_ptr<Listener> l) {
  if (!l->thread.joinable()) return;
  if (l->thread.get_id() == std::this_thread::get_id()) {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    r.zombies.push_back(std::move(l));
    return;
  }
  l->thread.join();
}

// Joins zombies whose thread has finished.
void Reap() {
  std::vector<std::shared_ptr<Listener>> done;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (auto it = r.zombies.begin(); it != r.zombies.end();) {
      if ((*it)->done.load()) {
        done.push_back(std::move(*it));
        it = r.zombies.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& l : done) {
    if (l->thread.joinable()) l->thread.join();
  }
}

ConnState* FindConn(sqlite3* db) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = r.conns.find(db);
  return it == r.conns.end() ? nullptr : it->second;
}

// --- connection state ---------------------------------------------------------

void* NewConnectionState(sqlite3* db) {
  auto* cs = new ConnState;
  cs->db = db;
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  r.conns[db] = cs;
  return cs;
}

void DestroyConnectionState(void* p) {
  auto* cs = static_cast<ConnState*>(p);
  std::vector<std::shared_ptr<Listener>> mine;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (auto* v : {&r.live, &r.zombies}) {
      for (auto it = v->begin(); it != v->end();) {
        if ((*it)->owner == cs) {
          mine.push_back(std::move(*it));
          it = v->erase(it);
        } else {
          ++it;
        }
      }
    }
    auto it = r.conns.find(cs->db);
    if (it != r.conns.end() && it->second == cs) r.conns.erase(it);
  }
  for (auto& l : mine) l->stop.Set();  // all first: they stop in parallel
  for (auto& l : mine) {
    if (!l->thread.joinable()) continue;
    if (l->thread.get_id() == std::this_thread::get_id()) {
      l->thread.detach();  // closed from inside its own callback
    } else {
      l->thread.join();
    }
  }
  if (cs->hook) sqlite3_commit_hook(cs->db, nullptr, nullptr);
  delete cs;
}

// Adds l to the live listeners unless its consumer already has one here (a
// listener that stopped by itself gives its place up).
Status Register(const char* fn, const std::shared_ptr<Listener>& l) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  for (auto it = r.live.begin(); it != r.live.end(); ++it) {
    if ((*it)->file != l->file || (*it)->name != l->name) continue;
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) r.zombies.push_back(*it);  // joined by Reap()
      r.live.erase(it);
      break;
    }
    return Status::Error(std::string(fn) + ": consumer " + NameInMessage(l->name) +
                         " already has a listener in this process (stop it with SELECT cdc_unlisten(" +
                         NameInMessage(l->name) + "))");
  }
  r.live.push_back(l);
  return Status();
}

void Unregister(const std::shared_ptr<Listener>& l) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = std::find(r.live.begin(), r.live.end(), l);
  if (it != r.live.end()) r.live.erase(it);
}

void InstallCommitHook(sqlite3* db, Listener* l) {
  if ((l->opt.signals & Bit(kSrcCommit)) && !l->owner->hook) {
    sqlite3_commit_hook(db, CommitHook, l->owner);
    l->owner->hook = true;
  }
}

// --- cdc_status --------------------------------------------------------------------

void AppendListenersJson(sqlite3* db, std::string* out) {
  std::string file = MainFile(db);
  std::vector<std::shared_ptr<Listener>> ls;
  {
    Registry& r = Reg();
    std::lock_guard<std::mutex> g(r.mu);
    for (const auto& l : r.live) {
      if (!file.empty() && l->file == file) ls.push_back(l);
    }
  }
  std::sort(ls.begin(), ls.end(), [](const auto& a, const auto& b) { return a->name < b->name; });
  out->push_back('[');
  for (size_t i = 0; i < ls.size(); i++) {
    Listener* l = ls[i].get();
    if (i) out->push_back(',');
    out->append("{\"consumer\":");
    JsonString(out, l->name);
    out->append(",\"callback\":");
    if (l->sql_callback) {
      JsonString(out, "sql:" + l->sql_fn);
    } else {
      out->append("\"c\"");
    }
    out->append(",\"signals\":[");
    bool first = true;
    for (int s : {kSrcWatch, kSrcInterval, kSrcCommit}) {
      if (!(l->opt.signals & Bit(s))) continue;
      if (!first) out->push_back(',');
      first = false;
      out->append("\"").append(SourceName(s)).append("\"");
    }
    out->append("]");
    out->append(",\"interval_ms\":");
    JsonInt(out, l->opt.interval_ms);
    out->append(",\"batch\":");
    JsonInt(out, l->opt.batch);
    std::lock_guard<std::mutex> g(l->mu);
    out->append(",\"state\":\"").append(l->state).append("\",\"position\":");
    JsonInt(out, l->position);
    out->append(",\"wakes\":{");
    for (int s = 0; s < kSrcCount; s++) {
      if (s) out->push_back(',');
      out->append("\"").append(SourceName(s)).append("\":");
      JsonInt(out, static_cast<int64_t>(l->wakes[s]));
    }
    out->append("},\"batches\":");
    JsonInt(out, static_cast<int64_t>(l->batches));
    out->append(",\"changes\":");
    JsonInt(out, static_cast<int64_t>(l->changes));
    out->append(",\"retries\":");
    JsonInt(out, static_cast<int64_t>(l->retries));
    out->append(",\"last_error\":");
    if (l->last_error.empty()) {
      out->append("null");
    } else {
      JsonString(out, l->last_error);
    }
    out->append(",\"remote\":false,\"pid\":");
    JsonInt(out, static_cast<int64_t>(getpid()));
    out->append(",\"lease\":");
    if (l->done.load()) {
      out->append("null");
    } else if (l->lease.held()) {
      out->append("\"held\"");
    } else {
      LeaseHolder h = ReadLeaseHolder(l->file, l->name);
      JsonString(out, h.live ? "standby (held by " + DescribeHolder(h) + ")" : "standby");
    }
    out->push_back('}');
  }
  // Listeners of other processes, seen through their consumers' leases.
  Stmt names;
  if (!file.empty() && InternalTablesExist(db) &&
      names.Prepare(db, "SELECT name FROM main.__cdc_consumers ORDER BY name").ok()) {
    while (names.Step() == SQLITE_ROW) {
      const std::string name = names.Text(0);
      bool mine = false;
      for (const auto& l : ls) mine = mine || (l->name == name && l->lease.held());
      if (mine) continue;
      LeaseHolder h = ReadLeaseHolder(file, name);
      if (!h.live) continue;
      if (out->back() != '[') out->push_back(',');
      out->append("{\"consumer\":");
      JsonString(out, name);
      out->append(",\"remote\":true,\"pid\":");
      JsonInt(out, h.pid);
      out->append(",\"host\":");
      JsonString(out, h.host);
      out->append(",\"lease\":\"held\"}");
    }
  }
  out->push_back(']');
}

}  // namespace cdc
