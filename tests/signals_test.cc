// signals_test.cc — each wake-up source (ext/signals.h) on its own, with a
// fake clock: deadlines are reached by moving the clock, never by sleeping.
// inotify and eventfd are real; their events are queued synchronously by the
// write that causes them, so a zero-timeout poll sees them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "signals.h"
#include "testing.h"

using cdctest::TempDir;

namespace cdc {
namespace {

class FakeClock : public Clock {
 public:
  int64_t NowUs() override { return now; }
  int64_t now = 1000000;
};

void Append(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::app);
  f << text;
}

TEST(Signals, IntervalFiresAtItsDeadlineAndRestartsAfterARead) {
  FakeClock clock;
  IntervalSignal s(clock.now, 250000);
  EXPECT_EQ(s.deadline(), clock.now + 250000);
  EXPECT_EQ(s.Check(clock.now + 249999, false), 0u);
  EXPECT_EQ(s.Check(clock.now + 250000, false), Bit(kSrcInterval));
  EXPECT_EQ(s.deadline(), clock.now + 500000);
  // A read (for whatever reason) pushes the backstop a full interval away.
  s.AfterRead(clock.now + 400000, true);
  EXPECT_EQ(s.deadline(), clock.now + 650000);
}

TEST(Signals, RecheckScheduleBacksOffAndStopsWhenNothingIsFound) {
  Recheck r;
  EXPECT_EQ(r.deadline(), kNever);
  EXPECT_FALSE(r.Due(0));
  r.Arm(0);
  int64_t t = 0;
  for (int i = 0; i < Recheck::kSteps; i++) {
    EXPECT_EQ(r.deadline(), t + Recheck::StepUs(i)) << i;
    EXPECT_FALSE(r.Due(r.deadline() - 1));
    t = r.deadline();
    EXPECT_TRUE(r.Due(t));
    EXPECT_FALSE(r.Due(t));  // fires once per step
    r.AfterRead(t, false);
  }
  EXPECT_EQ(r.deadline(), kNever);
  EXPECT_FALSE(r.armed());
  // A re-check that finds something starts the schedule again, at its slow
  // part: the short steps are for a wake that came before its commit.
  r.Arm(0);
  ASSERT_TRUE(r.Due(Recheck::StepUs(0)));
  r.AfterRead(Recheck::StepUs(0), false);
  ASSERT_TRUE(r.Due(r.deadline()));
  r.AfterRead(5000, true);
  EXPECT_EQ(r.deadline(), 5000 + Recheck::StepUs(Recheck::kSlowStep));
  // So does a read that finds something right after the wake, before any
  // re-check fired.
  r.Arm(10000);
  r.AfterRead(10005, true);
  EXPECT_EQ(r.deadline(), 10005 + Recheck::StepUs(Recheck::kSlowStep));
  // Not running, a read that finds changes (woken by another source) arms
  // nothing.
  Recheck idle;
  idle.AfterRead(0, true);
  EXPECT_FALSE(idle.armed());
}

TEST(Signals, RecheckAfterASpinGoesOnAtTheSlowSteps) {
  Recheck r;
  r.Spun(0);  // not armed: nothing to skip
  EXPECT_FALSE(r.armed());
  r.Arm(0);
  // The caller looked continuously for kSpinUs instead of the short steps.
  r.Spun(kSpinUs);
  EXPECT_EQ(r.deadline(), kSpinUs + Recheck::StepUs(Recheck::kSlowStep));
  r.AfterRead(kSpinUs, false);  // the read after the spin: not a re-check, changes nothing
  EXPECT_EQ(r.deadline(), kSpinUs + Recheck::StepUs(Recheck::kSlowStep));
  int64_t t = r.deadline();
  int fired = 0;
  while (r.deadline() != kNever) {
    t = r.deadline();
    ASSERT_TRUE(r.Due(t));
    r.AfterRead(t, false);
    fired++;
  }
  EXPECT_EQ(fired, Recheck::kSteps - Recheck::kSlowStep);
}

TEST(Signals, WatchFiresForTheDatabaseItsWalAndJournalOnly) {
  TempDir dir;
  std::string db = dir.File("app.db");
  WatchSignal w;
  ASSERT_EQ(w.Open(db), "");
  ASSERT_GE(w.fd(), 0);
  Combiner c(SystemClock());
  // Other files in the directory do not count.
  Append(dir.File("other.db"), "x");
  Append(dir.File("app.db-shm"), "x");
  EXPECT_EQ(w.Check(0, true), 0u);
  for (const char* name : {"app.db", "app.db-wal", "app.db-journal"}) {
    Append(dir.File(name), "x");
    EXPECT_EQ(w.Check(0, true), Bit(kSrcWatch)) << name;
    // Only a write to the -wal file comes from a writer in WAL mode.
    EXPECT_EQ(w.WalWrite(), std::string(name) == "app.db-wal") << name;
    EXPECT_EQ(w.Check(0, true), 0u) << name << ": events are consumed";
  }
  // The journal going away is a commit in rollback mode.
  ASSERT_EQ(unlink(dir.File("app.db-journal").c_str()), 0);
  EXPECT_EQ(w.Check(0, true), Bit(kSrcWatch));
}

TEST(Signals, WatchReChecksAfterAWakeThatFoundNothing) {
  TempDir dir;
  WatchSignal w;
  ASSERT_EQ(w.Open(dir.File("app.db")), "");
  EXPECT_EQ(w.deadline(), kNever);
  Append(dir.File("app.db-wal"), "x");
  int64_t t = 100;
  ASSERT_EQ(w.Check(t, true), Bit(kSrcWatch));
  // The read after the event found nothing (the commit was not visible yet).
  w.AfterRead(t, false);
  EXPECT_EQ(w.deadline(), t + Recheck::StepUs(0));
  EXPECT_EQ(w.Check(w.deadline() - 1, false), 0u);
  t = w.deadline();
  EXPECT_EQ(w.Check(t, false), Bit(kSrcRecheck));
  w.AfterRead(t, true);  // this time the change was there
  EXPECT_EQ(w.deadline(), t + Recheck::StepUs(Recheck::kSlowStep));
  // Nothing more: the schedule runs out.
  for (int i = Recheck::kSlowStep; i < Recheck::kSteps; i++) {
    t = w.deadline();
    ASSERT_NE(t, kNever);
    EXPECT_EQ(w.Check(t, false), Bit(kSrcRecheck));
    w.AfterRead(t, false);
  }
  EXPECT_EQ(w.deadline(), kNever);
}

TEST(Signals, CombinerSaysWhetherAWakeCameWithAWalWrite) {
  TempDir dir;
  auto w = std::make_unique<WatchSignal>();
  ASSERT_EQ(w->Open(dir.File("app.db")), "");
  Combiner c(SystemClock());
  c.Add(std::move(w));
  bool stopped = false;
  Append(dir.File("app.db-wal"), "x");
  EXPECT_EQ(c.Wait(kNever, -1, &stopped), Bit(kSrcWatch));
  EXPECT_TRUE(c.WalWrite());
  Append(dir.File("app.db-journal"), "x");
  EXPECT_EQ(c.Wait(kNever, -1, &stopped), Bit(kSrcWatch));
  EXPECT_FALSE(c.WalWrite());
  // The re-check that follows is no new write.
  c.AfterRead(false);
  EXPECT_EQ(c.Wait(kNever, -1, &stopped), Bit(kSrcRecheck));
  EXPECT_FALSE(c.WalWrite());
}

TEST(Signals, WatchOnAMissingDirectoryIsAnError) {
  WatchSignal w;
  std::string err = w.Open("/nonexistent-dir-for-cdc/x.db");
  EXPECT_NE(err.find("inotify_add_watch"), std::string::npos) << err;
}

TEST(Signals, CommitFiresOnNotifyAndReChecks) {
  CommitSignal s;
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.Check(0, false), 0u);
  s.Notify();
  s.Notify();  // coalesced
  Combiner c(SystemClock());
  EXPECT_EQ(s.Check(10, true), Bit(kSrcCommit));
  EXPECT_EQ(s.deadline(), 10 + Recheck::StepUs(0));
  s.AfterRead(10, false);  // the hook runs before the commit is visible
  EXPECT_EQ(s.Check(10 + Recheck::StepUs(0), false), Bit(kSrcRecheck));
}

TEST(Signals, CombinerReturnsWhatFiredAndHonoursStop) {
  FakeClock clock;
  Combiner c(&clock);
  auto commit = std::make_unique<CommitSignal>();
  CommitSignal* cs = commit.get();
  c.Add(std::make_unique<IntervalSignal>(clock.now, 1000));
  c.Add(std::move(commit));
  StopFlag stop;
  bool stopped = false;
  // A commit: returns at once with the commit bit.
  cs->Notify();
  EXPECT_EQ(c.Wait(kNever, stop.fd(), &stopped), Bit(kSrcCommit));
  EXPECT_FALSE(stopped);
  EXPECT_FALSE(c.WalWrite());  // a commit hook does not say which journal mode
  c.AfterRead(true);  // found changes: the re-check restarts, at +250 us
  EXPECT_EQ(c.NextDeadline(), clock.now + Recheck::StepUs(Recheck::kSlowStep));
  // Time passes beyond both deadlines: interval and re-check fire together.
  clock.now += 1000;
  EXPECT_EQ(c.Wait(kNever, stop.fd(), &stopped), Bit(kSrcInterval) | Bit(kSrcRecheck));
  // `until` in the past and nothing due: returns 0 without blocking.
  c.AfterRead(false);
  EXPECT_EQ(c.Wait(clock.now, stop.fd(), &stopped), 0u);
  EXPECT_FALSE(stopped);
  // Stop wins.
  stop.Set();
  EXPECT_TRUE(stop.IsSet());
  EXPECT_EQ(c.Wait(kNever, stop.fd(), &stopped), 0u);
  EXPECT_TRUE(stopped);
  EXPECT_FALSE(stop.SleepUs(1000000));  // returns at once when set
}

}  // namespace
}  // namespace cdc
