// signals.h — wake-up sources for listeners and cdc_wait (DESIGN §4).
//
// A Signal tells a waiting thread "the log may have grown, look again". Each
// one exposes a file descriptor to poll and/or a deadline, and is asked after
// every wait whether it fired:
//
//   WatchSignal     inotify on the database's directory, for the database file
//                   and its -wal and -journal files. An event can arrive
//                   before the commit is visible to readers (the writer writes
//                   its WAL frames, then publishes them in the -shm index), so
//                   after every watch wake it re-checks on a short schedule
//                   (Recheck) until the re-checks find nothing new. The
//                   caller may look continuously for a while first (kSpinUs).
//   IntervalSignal  a timer: the backstop that makes a lost or early
//                   notification cost at most one interval. Restarts after
//                   every read, so an idle listener wakes once per interval.
//   CommitSignal    an eventfd poked by a commit hook (in-process writers).
//                   The hook runs before the commit is durable, so it also
//                   re-checks on the Recheck schedule.
//   Combiner        polls all of them plus a stop descriptor with ppoll(2).
//
// The caller decides cheaply whether a wake needs a read (PRAGMA data_version
// on its own connection, in listener.cc) and reports back with AfterRead().
// Time comes from a Clock so that unit tests drive deadlines without
// sleeping. Nothing here touches SQLite.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cdc {

constexpr int64_t kNever = INT64_MAX;

// How long a caller looks continuously for a commit after a wake that can
// precede it and came with a write to the -wal file (WAL mode: see
// Signal::WalWrite) before it waits for the re-check schedule: commits
// become visible 20-70 us after their first inotify event (bench
// listener/latency_shared), and every wait on a busy machine may wait for
// the scheduler too.
constexpr int64_t kSpinUs = 100;

// Monotonic time in microseconds.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUs() = 0;
};
// CLOCK_MONOTONIC.
Clock* SystemClock();

// Where a wake came from; bit (1u << source) in a wake mask.
enum Source : int { kSrcWatch = 0, kSrcInterval = 1, kSrcCommit = 2, kSrcRecheck = 3, kSrcCount = 4 };
const char* SourceName(int source);
inline unsigned Bit(int source) { return 1u << source; }
// The sources whose wakes can come before the commit is visible.
constexpr unsigned kEarlySources = (1u << kSrcWatch) | (1u << kSrcCommit);

class Signal {
 public:
  virtual ~Signal() = default;
  // Descriptor to poll for readability, or -1.
  virtual int fd() const { return -1; }
  // Clock time at which the signal fires without its descriptor, or kNever.
  virtual int64_t deadline() const { return kNever; }
  // Called after every wait with the current time and whether fd() was
  // readable; consumes what fired and returns the wake mask (0: nothing).
  virtual unsigned Check(int64_t now, bool readable) = 0;
  // The caller looked at the log after a wake: found = it had new changes.
  virtual void AfterRead(int64_t now, bool found) { (void)now; (void)found; }
  // The caller looked continuously until `now` after a wake (Recheck::Spun).
  virtual void Spun(int64_t now) { (void)now; }
  // Whether the last Check that fired consumed a write to the -wal file: a
  // writer in WAL mode, which readers never hold up. (In rollback-journal
  // mode every look takes a shared lock on the database, which a writer
  // needs gone before it can commit: nobody looks there continuously.)
  virtual bool WalWrite() const { return false; }
};

// The short re-check schedule after a wake that may precede visibility:
// re-checks 20, 50, 100 and 250 us, then 1, 4, 16 and 64 ms, then 0.256, 1
// and 4 s apart while they find nothing, then stops (a writer publishes its
// commit in the -shm index a few microseconds after its last WAL write, and
// that publication makes no inotify event: the first steps are short so a
// wake that came too early costs tens of microseconds, not hundreds; with
// synchronous=FULL the WAL's fsync comes between, and a slow disk can take
// longer than the short steps: the long ones find such a commit without the
// interval, which a listener may have left out, and cost three wakes after
// a burst of commits). Every new wake starts it again.
//
// A read that finds changes while the schedule runs restarts it at its slow
// part (kSlowStep: 250 us, then 1, 4, 16, 64 ms, ...): the events of a commit
// come before it is visible, so one that the wake consumed may belong to a
// commit that became visible only after the read; most of the time they all
// belonged to what was read, and the short steps found nothing (measured: none
// of 904 re-checks 20 us after a read that found changes found anything,
// bench listener/latency_shared, 2026-11-30). A commit that writes after the
// wake's events were consumed makes an event of its own.
//
// Spun(): the caller looked continuously (data_version, for kSpinUs) after
// the wake instead of waiting for the short steps; the schedule goes on at
// its slow part.
class Recheck {
 public:
  static constexpr int kSteps = 11;
  static constexpr int kSlowStep = 3;
  static int64_t StepUs(int i);
  void Arm(int64_t now);
  int64_t deadline() const { return at_; }
  // True when due; the re-check then awaits AfterRead.
  bool Due(int64_t now);
  void AfterRead(int64_t now, bool found);
  void Spun(int64_t now);
  bool armed() const { return at_ != kNever || fired_; }

 private:
  int64_t at_ = kNever;
  int step_ = 0;
  bool fired_ = false;
};

// A descriptor whose events can come before the commit is visible: every
// event that counts arms the Recheck schedule. Owns (and closes) fd_.
class RecheckedSignal : public Signal {
 public:
  ~RecheckedSignal() override;
  int fd() const override { return fd_; }
  int64_t deadline() const override { return recheck_.deadline(); }
  unsigned Check(int64_t now, bool readable) final;
  void AfterRead(int64_t now, bool found) override { recheck_.AfterRead(now, found); }
  void Spun(int64_t now) override { recheck_.Spun(now); }

 protected:
  explicit RecheckedSignal(int source) : source_(source) {}
  // Reads what is pending on fd_; true when it includes an event that counts.
  virtual bool Consume() = 0;
  int fd_ = -1;

 private:
  int source_;  // the Source bit reported for an event
  Recheck recheck_;
};

class WatchSignal : public RecheckedSignal {
 public:
  WatchSignal() : RecheckedSignal(kSrcWatch) {}
  // Watches the directory of `db_path` for changes to the database, its -wal
  // and its -journal. Returns an error message, or "" on success.
  std::string Open(const std::string& db_path);
  bool WalWrite() const override { return wal_write_; }

 private:
  bool Consume() override;
  std::vector<std::string> names_;  // file names that count, without directory; -wal second
  bool wal_write_ = false;
};

class IntervalSignal : public Signal {
 public:
  IntervalSignal(int64_t now, int64_t interval_us) : every_(interval_us), next_(now + interval_us) {}
  int64_t deadline() const override { return next_; }
  unsigned Check(int64_t now, bool readable) override;
  void AfterRead(int64_t now, bool found) override;

 private:
  int64_t every_;
  int64_t next_;
};

class CommitSignal : public RecheckedSignal {
 public:
  CommitSignal();
  bool ok() const { return fd_ >= 0; }
  // Async-signal-safe and thread-safe: marks a commit.
  void Notify();

 private:
  bool Consume() override;
};

// A level-triggered stop flag that can be polled (eventfd).
class StopFlag {
 public:
  StopFlag();
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;
  bool ok() const { return fd_ >= 0; }
  void Set();
  bool IsSet() const;
  int fd() const { return fd_; }
  // Sleeps up to `us` microseconds of real time; false when the flag is set.
  bool SleepUs(int64_t us) const;

 private:
  int fd_ = -1;
};

class Combiner {
 public:
  explicit Combiner(Clock* clock) : clock_(clock) {}
  void Add(std::unique_ptr<Signal> s) { signals_.push_back(std::move(s)); }
  bool empty() const { return signals_.empty(); }
  Clock* clock() const { return clock_; }
  // Earliest deadline of all signals.
  int64_t NextDeadline() const;
  // Waits until a signal fires, the clock passes `until`, or `stop_fd` (if
  // >= 0) is readable. Returns the wake mask (0 on timeout or stop);
  // *stopped tells which.
  unsigned Wait(int64_t until, int stop_fd, bool* stopped);
  // Reports the outcome of the read that followed a wake.
  void AfterRead(bool found);
  // Reports that the caller looked continuously after the wake (kSpinUs),
  // before AfterRead.
  void Spun();
  // Whether the last wake came with a write to the -wal file (Signal::WalWrite).
  bool WalWrite() const { return wal_write_; }

 private:
  Clock* clock_;
  std::vector<std::unique_ptr<Signal>> signals_;
  bool wal_write_ = false;
};

}  // namespace cdc
