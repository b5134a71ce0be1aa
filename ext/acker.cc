// acker.cc — the acker thread of a listener (listener.cc's header comment
// describes how the two threads share the work).
//
// The reading thread hands each delivered batch's last id over (PostAck);
// this thread acks the newest one on a connection of its own (AckNoWait:
// position and pruning in one short write transaction), coalescing the
// batches delivered meanwhile, at most once per kAckEvery, and never waits
// for the write lock. It also stops a listener whose consumer retention
// invalidated.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "delivery.h"
#include "listener_internal.h"
#include "retention.h"

namespace cdc {

namespace {

// The acker commits at most this often. Each ack commit costs the listener a
// wake and an empty read (it is another connection's commit), and holds the
// write lock: a writer with no busy timeout that comes meanwhile fails.
// Positions (and what a crash could deliver again) stay at most kAckEvery +
// kAckFlush behind.
constexpr std::chrono::milliseconds kAckEvery{250};
// When an ack left rows to prune (an older backlog), the next prune follows
// a delivery at least this much later.
constexpr std::chrono::milliseconds kPruneEvery{20};
// Log rows one ack commit prunes beyond those it passed (an older backlog,
// e.g. left by a dropped or invalidated consumer): about 1 us each
// (SECURE_DELETE), short enough to fit between a paced writer's commits.
constexpr int64_t kAckPruneRows = 256;
constexpr std::chrono::milliseconds kAckFlush{40};
// After the write lock was found taken, the next try waits for the next
// delivery (its writer has just committed) at least this long.
constexpr std::chrono::milliseconds kAckRetry{2};
// While the reader retries a failed read, the acker checks this often
// whether the consumer was invalidated (StopIfLost).
constexpr std::chrono::milliseconds kLostCheck{250};
// A stopping listener's last ack tries this often, 1 ms apart.
constexpr int kAckTriesAtStop = 50;

// A listener whose consumer retention invalidated (retention.h) stops, with
// the error that says so and how to recover as its last error. Checked by
// the acker after a failed ack, and while the reader retries a failed read.
bool StopIfLost(Listener* l) noexcept {
  try {
    std::string reason;
    if (!LostReason(l->ack_db, l->name, &reason).ok() || reason.empty()) return false;
    NoteError(l, LostError("cdc_listen", l->name, reason), false);
  } catch (const std::bad_alloc&) {  // out of memory: not known to be lost; asked again later
    return false;
  }
  l->stop.Set();
  return true;
}

}  // namespace

// Hands a delivered id to the acker.
void PostAck(Listener* l, int64_t id) {
  std::lock_guard<std::mutex> g(l->ack_mu);
  if (id > l->ack_want) {
    l->ack_want = id;
    l->ack_posted_at = std::chrono::steady_clock::now();
    l->ack_cv.notify_one();
  }
}

// The acker thread: acks the newest delivered id until told to quit, then
// makes one last attempt. It never waits for the write lock (no busy
// handler: AckNoWait takes the lock only when it is free, else tries again
// after the next delivery), and each ack prunes a bounded chunk, so it never
// keeps an application's writer waiting long, nor makes one with no busy
// timeout fail more than rarely.
void Acker(Listener* l) noexcept {
  std::unique_ptr<StmtCache> cache;
  try {
    cache = std::make_unique<StmtCache>(l->ack_db);
  } catch (const std::bad_alloc&) {  // works without it, parsing every time
  }
  sqlite3_busy_handler(l->ack_db, nullptr, nullptr);
  int attempt = 0, stop_tries = 0;
  bool more = false;  // the last ack left rows that can be pruned now
  auto next_commit = std::chrono::steady_clock::now();
  for (;;) {
    int64_t want = 0;
    uint64_t gen = 0;
    bool quit = false;
    {
      std::unique_lock<std::mutex> g(l->ack_mu);
      while (!l->ack_cv.wait_for(g, kLostCheck, [&] { return l->ack_quit || l->ack_want > l->ack_done || more; })) {
        g.unlock();  // never both locks at once
        bool retrying = false;
        {
          std::lock_guard<std::mutex> m(l->mu);
          retrying = std::strcmp(l->state, "retrying") == 0;
        }
        const bool lost = retrying && StopIfLost(l);
        g.lock();
        if (lost) {
          l->ack_cv.wait(g, [&] { return l->ack_quit; });
          return;
        }
      }
      if (!l->ack_quit && std::chrono::steady_clock::now() < next_commit) {
        // At most one ack commit per kAckEvery, made right after a delivery
        // (whoever committed what was delivered has just released the write
        // lock, so the ack is unlikely to meet a writer), or kAckFlush later
        // when no delivery comes. A stop acks at once.
        l->ack_cv.wait_until(g, next_commit + kAckFlush,
                             [&] { return l->ack_quit || l->ack_posted_at >= next_commit; });
      }
      want = l->ack_want;
      gen = l->ack_gen;
      quit = l->ack_quit;
      if (want <= l->ack_done && (quit || !more)) {  // nothing left to do (or the consumer was re-created)
        if (quit) return;
        continue;
      }
    }
    int64_t pos = 0;
    bool busy = false, left = false;
    Status st;
    try {
      st = AckNoWait(l->ack_db, "cdc_listen", l->name, want, kAckPruneRows, &pos, &busy, &left);
    } catch (const std::bad_alloc&) {  // the Savepoint rolled back: retried like any error
      st = Status::Error("out of memory", SQLITE_NOMEM);
    }
    if (st.ok() && busy) {
      if (quit) {
        if (++stop_tries >= kAckTriesAtStop) return;  // the rest is delivered again later
        usleep(1000);
      } else {
        next_commit = std::chrono::steady_clock::now() + kAckRetry;
      }
      continue;
    }
    if (st.ok()) {
      attempt = 0;
      more = left;
      next_commit = std::chrono::steady_clock::now() + (more ? kPruneEvery : kAckEvery);
      {
        std::lock_guard<std::mutex> g(l->mu);
        l->position = pos;
      }
      std::lock_guard<std::mutex> g(l->ack_mu);
      if (gen == l->ack_gen) l->ack_done = std::max(l->ack_done, want);
      continue;
    }
    more = false;
    if (StopIfLost(l)) {
      std::unique_lock<std::mutex> g(l->ack_mu);
      l->ack_cv.wait(g, [&] { return l->ack_quit; });
      return;
    }
    NoteError(l, st.message(), true);
    if (quit) return;  // that was the last attempt: the rest is delivered again later
    if (!l->stop.SleepUs(BackoffUs(attempt++, l->opt.retry_max_ms))) {
      std::unique_lock<std::mutex> g(l->ack_mu);  // stopping: wait for the quit, then try once more
      l->ack_cv.wait(g, [&] { return l->ack_quit; });
    }
  }
}

}  // namespace cdc
