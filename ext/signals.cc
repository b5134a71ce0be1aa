// signals.cc — see signals.h.
#include "signals.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace cdc {

namespace {

class MonotonicClock : public Clock {
 public:
  int64_t NowUs() override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  }
};

void DrainEventfd(int fd) {
  uint64_t v;
  while (read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v)) {
  }
}

}  // namespace

Clock* SystemClock() {
  static Clock* clock = new MonotonicClock;  // never destroyed: threads may outlive exit()
  return clock;
}

const char* SourceName(int source) {
  switch (source) {
    case kSrcWatch: return "watch";
    case kSrcInterval: return "interval";
    case kSrcCommit: return "commit";
    case kSrcRecheck: return "recheck";
  }
  return "?";
}

// --- Recheck ---------------------------------------------------------------

int64_t Recheck::StepUs(int i) {
  static const int64_t kUs[kSteps] = {20, 50, 100, 250, 1000, 4000, 16000, 64000, 256000, 1000000, 4000000};
  return kUs[std::clamp(i, 0, kSteps - 1)];
}

void Recheck::Arm(int64_t now) {
  step_ = 0;
  fired_ = false;
  at_ = now + StepUs(0);
}

bool Recheck::Due(int64_t now) {
  if (at_ == kNever || now < at_) return false;
  at_ = kNever;
  fired_ = true;
  return true;
}

void Recheck::AfterRead(int64_t now, bool found) {
  const bool fired = fired_;
  fired_ = false;
  if (found) {
    if (!fired && at_ == kNever) return;  // not running: a wake of another source found them
    step_ = kSlowStep;
    at_ = now + StepUs(step_);
  } else if (fired && ++step_ < kSteps) {
    at_ = now + StepUs(step_);
  }
}

void Recheck::Spun(int64_t now) {
  if (!armed() || step_ >= kSlowStep) return;
  fired_ = false;
  step_ = kSlowStep;
  at_ = now + StepUs(step_);
}

// --- RecheckedSignal -------------------------------------------------------

RecheckedSignal::~RecheckedSignal() {
  if (fd_ >= 0) close(fd_);
}

unsigned RecheckedSignal::Check(int64_t now, bool readable) {
  unsigned mask = 0;
  if (readable && fd_ >= 0 && Consume()) {
    mask |= Bit(source_);
    recheck_.Arm(now);
  }
  if (recheck_.Due(now)) mask |= Bit(kSrcRecheck);
  return mask;
}

// --- WatchSignal -----------------------------------------------------------

std::string WatchSignal::Open(const std::string& db_path) {
  if (db_path.empty()) return "watch: the database has no file";
  size_t slash = db_path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : db_path.substr(0, slash);
  std::string base = slash == std::string::npos ? db_path : db_path.substr(slash + 1);
  names_ = {base, base + "-wal", base + "-journal"};
  fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) return std::string("watch: inotify_init1: ") + strerror(errno);
  // IN_MODIFY: WAL frames, database pages, journal headers; IN_DELETE and
  // IN_MOVED/IN_CREATE: a rollback journal finishing; IN_CLOSE_WRITE: writers
  // that open, write and close.
  uint32_t mask = IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM;
  if (inotify_add_watch(fd_, dir.c_str(), mask) < 0) {
    std::string err = std::string("watch: inotify_add_watch(") + dir + "): " + strerror(errno);
    close(fd_);
    fd_ = -1;
    return err;
  }
  return "";
}

bool WatchSignal::Consume() {
  alignas(inotify_event) char buf[4096];
  bool match = false;
  wal_write_ = false;
  for (;;) {
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->mask & IN_Q_OVERFLOW) match = true;
      if (ev->len > 0) {
        const char* name = ev->name;
        for (size_t i = 0; i < names_.size(); i++) {
          if (names_[i] != name) continue;
          match = true;
          if (i == 1 && (ev->mask & IN_MODIFY)) wal_write_ = true;
        }
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
  return match;
}

// --- IntervalSignal --------------------------------------------------------

unsigned IntervalSignal::Check(int64_t now, bool) {
  if (now < next_) return 0;
  next_ = now + every_;
  return Bit(kSrcInterval);
}

void IntervalSignal::AfterRead(int64_t now, bool) { next_ = now + every_; }

// --- CommitSignal ----------------------------------------------------------

CommitSignal::CommitSignal() : RecheckedSignal(kSrcCommit) { fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void CommitSignal::Notify() {
  uint64_t one = 1;
  ssize_t n = write(fd_, &one, sizeof one);
  (void)n;  // EAGAIN only when the counter is saturated: already signalled
}

bool CommitSignal::Consume() {
  DrainEventfd(fd_);
  return true;
}

// --- StopFlag --------------------------------------------------------------

StopFlag::StopFlag() { fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

StopFlag::~StopFlag() {
  if (fd_ >= 0) close(fd_);
}

void StopFlag::Set() {
  uint64_t one = 1;
  ssize_t n = write(fd_, &one, sizeof one);
  (void)n;
}

bool StopFlag::IsSet() const {
  pollfd p = {fd_, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

bool StopFlag::SleepUs(int64_t us) const {
  timespec ts = {static_cast<time_t>(us / 1000000), static_cast<long>(us % 1000000) * 1000};
  pollfd p = {fd_, POLLIN, 0};
  int rc = ppoll(&p, 1, &ts, nullptr);
  return rc <= 0;  // 0: slept; >0: stop set (EINTR counts as slept)
}

// --- Combiner --------------------------------------------------------------

int64_t Combiner::NextDeadline() const {
  int64_t d = kNever;
  for (const auto& s : signals_) d = std::min(d, s->deadline());
  return d;
}

unsigned Combiner::Wait(int64_t until, int stop_fd, bool* stopped) {
  *stopped = false;
  std::vector<pollfd> fds;
  std::vector<int> which;  // signal index of each pollfd; -1 for stop
  if (stop_fd >= 0) {
    fds.push_back({stop_fd, POLLIN, 0});
    which.push_back(-1);
  }
  for (size_t i = 0; i < signals_.size(); i++) {
    if (signals_[i]->fd() >= 0) {
      fds.push_back({signals_[i]->fd(), POLLIN, 0});
      which.push_back(static_cast<int>(i));
    }
  }
  for (;;) {
    int64_t now = clock_->NowUs();
    int64_t wake = std::min(NextDeadline(), until);
    timespec ts{};
    timespec* tsp = nullptr;
    if (wake != kNever) {
      int64_t us = std::max<int64_t>(0, wake - now);
      // Keep the wait representable; the loop re-computes after waking.
      us = std::min<int64_t>(us, int64_t{3600} * 1000000);
      ts.tv_sec = static_cast<time_t>(us / 1000000);
      ts.tv_nsec = static_cast<long>(us % 1000000) * 1000;
      tsp = &ts;
    }
    for (auto& p : fds) p.revents = 0;
    int rc = ppoll(fds.data(), fds.size(), tsp, nullptr);
    if (rc < 0 && errno != EINTR) return 0;
    now = clock_->NowUs();
    std::vector<bool> readable(signals_.size(), false);
    for (size_t k = 0; k < fds.size(); k++) {
      if (!(fds[k].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      if (which[k] < 0) {
        *stopped = true;
        return 0;
      }
      readable[static_cast<size_t>(which[k])] = true;
    }
    unsigned mask = 0;
    bool wal = false;
    for (size_t i = 0; i < signals_.size(); i++) {
      const unsigned m = signals_[i]->Check(now, readable[i]);
      if ((m & ~Bit(kSrcRecheck)) && signals_[i]->WalWrite()) wal = true;  // an event consumed just now
      mask |= m;
    }
    if (mask) {
      wal_write_ = wal;
      return mask;
    }
    if (now >= until) return 0;
  }
}

void Combiner::Spun() {
  int64_t now = clock_->NowUs();
  for (auto& s : signals_) s->Spun(now);
}

void Combiner::AfterRead(bool found) {
  int64_t now = clock_->NowUs();
  for (auto& s : signals_) s->AfterRead(now, found);
}

}  // namespace cdc
