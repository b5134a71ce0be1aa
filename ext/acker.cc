// acker.cc — the acker thread of a listener (listener.cc's header comment
// describes how the two threads share the work).
//
// The reading thread hands each delivered batch's last id over (PostAck);
// this thread acks the newest one on a connection of its own (AckNoWait: one
// short write transaction), coalescing the batches delivered meanwhile, at
// most once per kAckEvery, and never waits for the write lock. It prunes
// what every consumer acked when the database is quiet (or a backlog grows
// past kPruneBacklog). It also stops a listener whose consumer retention
// invalidated, and records that a consumer whose batch is retried or slow
// is still reading.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "delivery.h"
#include "listener_internal.h"
#include "retention.h"

namespace cdc {

namespace {

// The acker commits a position at most this often, right after a delivery
// (whoever committed what was delivered has just released the write lock).
// Each commit holds the write lock: a writer with no busy timeout that comes
// meanwhile fails, and on a loaded machine the few hundred microseconds a
// commit takes sometimes stretch to milliseconds. Positions (and what a
// crash could deliver again) stay at most kAckEvery + kAckFlush behind, as
// with Kafka's consumer auto-commit (5 s by default).
constexpr std::chrono::milliseconds kAckEvery{1000};
constexpr std::chrono::milliseconds kAckFlush{40};
// Pruning costs about 0.3 us a row of write lock (more under load), so it is
// done when the database is quiet: no commit by any other connection
// (PRAGMA data_version) for kQuiet, at most kQuietPruneRows per commit, one
// commit every kQuiet while it stays quiet. Measured with the trace of
// bench/busy_writer.cc: every failed write of a no-timeout writer beside a
// listener fell inside one of the acker's commits, most inside a prune.
constexpr std::chrono::milliseconds kQuiet{50};
constexpr int64_t kQuietPruneRows = 1000;
// While writers never leave the database quiet, the log keeps up to this
// many prunable rows; past it, acks prune kAckPruneRows each, one every
// kPruneEvery, right after a delivery.
constexpr int64_t kPruneBacklog = 50000;
constexpr std::chrono::milliseconds kPruneEvery{20};
constexpr int64_t kAckPruneRows = 256;
// After the write lock was found taken, the next try waits for the next
// delivery (its writer has just committed) at least this long.
constexpr std::chrono::milliseconds kAckRetry{2};
// While the reader retries a failed read, the acker checks this often
// whether the consumer was invalidated (StopIfLost), and records that the
// consumer is reading (NoteRead: it is not idle, retention.h).
constexpr std::chrono::milliseconds kLostCheck{250};
// A position commit checks the retention limits (retention.h) at most this
// often: the check's reads took about a third of a position commit's write
// lock (cdc_busy_writer trace).
constexpr std::chrono::seconds kLimitsEvery{10};
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
// makes one last attempt, and prunes what every consumer acked when the
// database is quiet. It never waits for the write lock (no busy handler:
// AckNoWait takes the lock only when it is free, else tries again after the
// next delivery), and each commit is short, so it never keeps an
// application's writer waiting long, nor makes one with no busy timeout
// fail more than rarely.
void Acker(Listener* l) noexcept {
  std::unique_ptr<StmtCache> cache;
  try {
    cache = std::make_unique<StmtCache>(l->ack_db);
  } catch (const std::bad_alloc&) {  // works without it, parsing every time
  }
  sqlite3_busy_handler(l->ack_db, nullptr, nullptr);
  if (cache) {
    try {
      WarmAck(l->ack_db);
    } catch (const std::bad_alloc&) {  // parsed when first run instead
    }
  }
  int attempt = 0, stop_tries = 0;
  int64_t left = 0;  // rows the last commit left that could be pruned
  int64_t seen_version = -1;  // PRAGMA data_version at the last quiet check
  auto next_commit = std::chrono::steady_clock::now();
  auto limits_checked = next_commit - kLimitsEvery;
  for (;;) {
    int64_t want = 0;
    uint64_t gen = 0;
    bool quit = false, quiet = false, moves = false;
    const bool backlog = left > kPruneBacklog;
    {
      std::unique_lock<std::mutex> g(l->ack_mu);
      auto ready = [&] { return l->ack_quit || l->ack_want > l->ack_done || backlog; };
      while (!l->ack_cv.wait_for(g, left > 0 ? kQuiet : kLostCheck, ready)) {
        g.unlock();  // never both locks at once
        bool reading = false;
        {
          std::lock_guard<std::mutex> m(l->mu);
          reading = std::strcmp(l->state, "retrying") == 0 || std::strcmp(l->state, "delivering") == 0;
        }
        const bool lost = reading && StopIfLost(l);
        if (reading && !lost) {
          try {
            NoteRead(l->ack_db, l->name, true);  // a batch retried or delivered slowly: not idle
          } catch (const std::bad_alloc&) {  // recorded by a later one
          }
        }
        if (left > 0 && !lost) {
          // Quiet: nobody committed since the last look, kQuiet ago.
          int64_t v = -1;
          if (QueryInt(l->ack_db, "PRAGMA data_version", &v).ok()) {
            quiet = v == seen_version;
            seen_version = v;
          }
        }
        g.lock();
        if (lost) {
          l->ack_cv.wait(g, [&] { return l->ack_quit; });
          return;
        }
        if (quiet) break;
      }
      if (!quiet && !l->ack_quit && std::chrono::steady_clock::now() < next_commit) {
        // At most one ack commit per kAckEvery (kPruneEvery while pruning a
        // backlog), made right after a delivery, or kAckFlush later when no
        // delivery comes. A stop acks at once.
        l->ack_cv.wait_until(g, next_commit + kAckFlush,
                             [&] { return l->ack_quit || l->ack_posted_at >= next_commit; });
      }
      want = l->ack_want;
      gen = l->ack_gen;
      quit = l->ack_quit;
      moves = want > l->ack_done;
      if (want <= l->ack_done && (quit || (!quiet && !backlog))) {  // nothing to do (or the consumer was re-created)
        if (quit) return;
        continue;
      }
    }
    int64_t pos = 0;
    bool busy = false;
    Status st;
    const int64_t prune = quit ? 0 : quiet ? kQuietPruneRows : backlog ? kAckPruneRows : 0;
    const auto now = std::chrono::steady_clock::now();
    const bool check_limits = now - limits_checked >= kLimitsEvery;
    try {
      st = AckNoWait(l->ack_db, "cdc_listen", l->name, want, prune, check_limits, &pos, &busy, &left);
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
      if (check_limits && moves) limits_checked = now;
      seen_version = -1;  // quiet is judged afresh from here
      next_commit = std::chrono::steady_clock::now() + (left > kPruneBacklog ? kPruneEvery : kAckEvery);
      {
        std::lock_guard<std::mutex> g(l->mu);
        l->position = pos;
      }
      std::lock_guard<std::mutex> g(l->ack_mu);
      if (gen == l->ack_gen) l->ack_done = std::max(l->ack_done, want);
      continue;
    }
    left = 0;
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
