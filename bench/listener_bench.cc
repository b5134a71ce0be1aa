// listener_bench.cc — absolute figures of cdc_listen with a C callback
// (include/cdc.h), each on a file database in WAL, synchronous=NORMAL:
//
//   listener/latency   commit -> callback latency from another process: a
//                      separate executable (cdc_latency_writer, spawned with
//                      posix_spawn) makes N single-row autocommit INSERTs
//                      (1000; 500 in quick mode) 2 ms apart, binding
//                      CLOCK_MONOTONIC ns just before each commit; the callback
//                      (default options) subtracts it from its own clock.
//                      p50/p99/max in us; also from the writer's commit hook
//                      (the start of its commit) to the callback. When the
//                      machine has 2 or more CPUs, the writer and this process
//                      are pinned to different CPUs, as they would run on a
//                      server with spare cores: otherwise the scheduler may put
//                      both on one CPU, and the latency then measures which of
//                      them it runs first.
//   listener/latency_shared  the same, unpinned (placement left to the kernel).
//                      With CDC_LATENCY_DUMP=FILE, both write one line per
//                      change to FILE: T0 TCOMMIT TEND TCALLBACK (ns,
//                      CLOCK_MONOTONIC; see latency_writer.cc).
//   listener/idle_cpu  a listener with default signals on an idle database:
//                      process CPU time (getrusage RUSAGE_SELF) / wall over 5 s
//                      (2 s in quick mode), in % of one core.
//   listener/drain     a backlog of N changes (CDC_BENCH_BACKLOG; 1,000,000,
//                      100,000 in quick mode) on a 6-column table, drained by
//                      cdc_listen {"batch":1000}: changes/s until the callback
//                      has had the last id (delivered_s), and until the
//                      consumer's acked position reaches it (changes_s, which
//                      includes up to a second of the acker's cadence), and the growth
//                      of resident memory during the drain (peak of VmHWM after
//                      a clear_refs reset and of VmRSS sampled every 2 ms,
//                      minus VmRSS at the start) in MB.
//   listener/fanout/K  K consumers (1, 8) each with a cdc_listen C callback
//                      on one connection, while a writer on another inserts N
//                      rows (CDC_BENCH_FANOUT_ROWS; 100,000, 20,000 in quick
//                      mode) in transactions of 1000 on the 6-column table.
//                      Each repetition also times the same writer on a fresh
//                      database with no listener (before and after), in
//                      turn, so writer_ratio = with ÷ without comes from one
//                      run. delivered_s = K x N ÷ (writer start .. last
//                      delivery); listener_cpu_us_per_change = process CPU
//                      minus the writer thread's, ÷ K x N: flat in K when the
//                      cost grows with the number of consumers, not faster.
// Each runs once per `make bench` (setup untimed).
#include <benchmark/benchmark.h>

#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "capture_bench.h"
#include "cdc.h"
#include "workload.h"

extern char** environ;

namespace cdcbench {
namespace {

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void Listen(Db& db, const char* consumer, cdc_callback_fn fn, void* user, const char* options) {
  char* err = nullptr;
  if (cdc_listen(db.get(), consumer, fn, user, nullptr, options, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    Die("cdc_listen: " + msg);
  }
}

void Unlisten(Db& db, const char* consumer) {
  char* err = nullptr;
  if (cdc_unlisten(db.get(), consumer, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    Die("cdc_unlisten: " + msg);
  }
}

// Waits (up to `timeout_s`) until pred() holds under `mu`; false on timeout.
template <typename Pred>
bool WaitFor(std::mutex& mu, std::condition_variable& cv, double timeout_s, Pred pred) {
  std::unique_lock<std::mutex> lock(mu);
  return cv.wait_for(lock, std::chrono::duration<double>(timeout_s), pred);
}

// ---- latency ---------------------------------------------------------------

struct Latency {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> ns;  // one per change, in delivery order
  std::vector<std::pair<int64_t, int64_t>> t0_at;  // (t0, callback time) per change
  int64_t bad = 0;          // changes without a readable t0
};

int OnLatency(void* user, const cdc_change* c, int n) {
  const int64_t now = MonoNs();
  auto* l = static_cast<Latency*>(user);
  std::lock_guard<std::mutex> lock(l->mu);
  for (int i = 0; i < n; i++) {
    const char* p = c[i].after ? std::strstr(c[i].after, "\"t0\":") : nullptr;
    if (!p) {
      l->bad++;
      continue;
    }
    const int64_t t0 = std::strtoll(p + 5, nullptr, 10);
    l->ns.push_back(now - t0);
    l->t0_at.emplace_back(t0, now);
  }
  l->cv.notify_all();
  return 0;
}

double Percentile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return static_cast<double>(v[std::min(k, v.size() - 1)]);
}

// CPU time of this whole process (all threads), in seconds.
double CpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// The CPUs this process may run on.
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// Pins this process's threads created from now on (and the calling thread)
// to `cpus`; returns the previous set.
cpu_set_t PinTo(const std::vector<int>& cpus) {
  cpu_set_t old, set;
  sched_getaffinity(0, sizeof old, &old);
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  sched_setaffinity(0, sizeof set, &set);
  return old;
}

void RunLatency(benchmark::State& state, bool pin) {
  const int count = QuickMode() ? 500 : 1000;
  // CDC_BENCH_LATENCY_SPACING_US: wider spacing, e.g. so that callgrind (about
  // 50 times slower) still handles each commit on its own.
  const int spacing_us = static_cast<int>(EnvInt("CDC_BENCH_LATENCY_SPACING_US", 2000));
  const std::vector<int> cpus = AllowedCpus();
  pin = pin && cpus.size() >= 2;
  state.counters["pinned"] = pin ? 1 : 0;
  for (auto _ : state) {
    cpu_set_t saved;
    if (pin) {
      // The writer gets the first CPU, the listener (and this thread) the rest.
      saved = PinTo(std::vector<int>(cpus.begin() + 1, cpus.end()));
      setenv("CDC_WRITER_CPU", std::to_string(cpus[0]).c_str(), 1);
    }
    TempDir dir;
    const std::string path = dir.File("lat.db");
    Db db(path);
    db.Exec("CREATE TABLE lat(id INTEGER PRIMARY KEY, t0 INTEGER NOT NULL); SELECT cdc_setup('lat');"
            "SELECT cdc_consumer_add('l')");
    Latency l;
    l.ns.reserve(count);
    Listen(db, "l", OnLatency, &l, nullptr);

    const std::string writer = CDC_LATENCY_WRITER;
    const std::string n = std::to_string(count), sp = std::to_string(spacing_us), out = dir.File("writer.txt");
    char* argv[] = {const_cast<char*>(writer.c_str()), const_cast<char*>(path.c_str()),
                    const_cast<char*>(n.c_str()), const_cast<char*>(sp.c_str()), const_cast<char*>(out.c_str()),
                    nullptr};
    pid_t pid;
    const double cpu0 = CpuSeconds();
    auto t0 = Clock::now();
    if (posix_spawn(&pid, writer.c_str(), nullptr, nullptr, argv, environ) != 0) Die("spawn " + writer);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      Die("latency writer failed");
    }
    if (!WaitFor(l.mu, l.cv, 30, [&] { return static_cast<int64_t>(l.ns.size()) + l.bad >= count; })) {
      Die("listener delivered " + std::to_string(l.ns.size()) + " of " + n + " changes in 30 s");
    }
    double secs = Seconds(t0, Clock::now());
    // This process's CPU meanwhile is the listener's (its reader and acker
    // threads; the main thread sleeps in waitpid), per commit.
    state.counters["listener_cpu_us_per_commit"] = (CpuSeconds() - cpu0) * 1e6 / count;
    // Which signal woke the listener (watch = inotify, recheck = the follow-up
    // checks after a wake, interval = the 250 ms backstop).
    for (const char* src : {"watch", "recheck", "interval", "commit"}) {
      state.counters[std::string("wakes_") + src] = static_cast<double>(
          db.Int(std::string("SELECT json_extract(cdc_status(), '$.listeners[0].wakes.") + src + "')"));
    }
    Unlisten(db, "l");
    if (pin) {
      sched_setaffinity(0, sizeof saved, &saved);
      unsetenv("CDC_WRITER_CPU");
    }
    double w50 = 0, w99 = 0, busy = 0;
    std::ifstream wf(out);
    wf >> w50 >> w99 >> busy;
    state.counters["writer_stmt_p50_us"] = w50;  // t0 .. end of the committing step, in the writer
    state.counters["writer_stmt_p99_us"] = w99;
    state.counters["writer_busy"] = busy;  // commits that waited for the write lock
    // From the writer's commit hook (the start of its commit) to the
    // callback; and from the end of the writer's step, which comes after the
    // commit is visible (a lower bound of the listener's own share).
    std::map<int64_t, std::pair<int64_t, int64_t>> writer_times;
    for (int64_t a, b, c; wf >> a >> b >> c;) writer_times[a] = {b, c};
    std::vector<int64_t> from_commit, after_step;
    for (const auto& [t0, at] : l.t0_at) {
      auto it = writer_times.find(t0);
      if (it == writer_times.end()) continue;
      from_commit.push_back(at - it->second.first);
      after_step.push_back(at - it->second.second);
    }
    if (from_commit.size() != l.t0_at.size()) Die("writer times missing for some changes");
    if (const char* dump = std::getenv("CDC_LATENCY_DUMP")) {
      // One line per change, in ns: T0 TCOMMIT TEND TCALLBACK (see latency_writer.cc).
      std::ofstream d(dump);
      for (const auto& [t0, at] : l.t0_at) {
        const auto& w = writer_times[t0];
        d << t0 << " " << w.first << " " << w.second << " " << at << "\n";
      }
    }
    state.counters["commit_p50_us"] = Percentile(from_commit, 0.50) / 1e3;
    state.counters["commit_p99_us"] = Percentile(from_commit, 0.99) / 1e3;
    state.counters["commit_max_us"] =
        static_cast<double>(*std::max_element(from_commit.begin(), from_commit.end())) / 1e3;
    state.counters["after_step_p50_us"] = Percentile(after_step, 0.50) / 1e3;
    state.counters["after_step_p99_us"] = Percentile(after_step, 0.99) / 1e3;
    if (l.bad) Die(std::to_string(l.bad) + " changes without t0");
    state.SetIterationTime(secs);
    state.counters["changes"] = static_cast<double>(l.ns.size());
    state.counters["p50_us"] = Percentile(l.ns, 0.50) / 1e3;
    state.counters["p99_us"] = Percentile(l.ns, 0.99) / 1e3;
    state.counters["max_us"] = static_cast<double>(*std::max_element(l.ns.begin(), l.ns.end())) / 1e3;
  }
}

void BM_Latency(benchmark::State& state) { RunLatency(state, true); }
void BM_LatencyShared(benchmark::State& state) { RunLatency(state, false); }

// ---- idle CPU --------------------------------------------------------------

int OnNothing(void*, const cdc_change*, int) { return 0; }

void BM_IdleCpu(benchmark::State& state) {
  const double idle_s = QuickMode() ? 2 : 5;
  for (auto _ : state) {
    TempDir dir;
    Db db(dir.File("idle.db"));
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
            "INSERT INTO t(v) VALUES('x')");
    Listen(db, "c", OnNothing, nullptr, nullptr);
    // Let it start, deliver the one change and finish its re-checks.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double cpu0 = CpuSeconds();
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
    const double cpu = CpuSeconds() - cpu0;
    const double wall = Seconds(t0, Clock::now());
    Unlisten(db, "c");
    state.SetIterationTime(wall);
    state.counters["cpu_pct"] = 100.0 * cpu / wall;
    state.counters["cpu_ms"] = cpu * 1e3;
  }
}

// ---- backlog drain ---------------------------------------------------------

int64_t BacklogRows() { return EnvInt("CDC_BENCH_BACKLOG", QuickMode() ? 100000 : 1000000); }

// A line "KEY:   N kB" of /proc/self/status, in bytes (0 if missing).
int64_t ProcStatusBytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':') {
      return std::atoll(line.c_str() + klen + 1) * 1024;
    }
  }
  return 0;
}

struct Drain {
  std::mutex mu;
  std::condition_variable cv;
  int64_t last_id = 0;
  int64_t changes = 0;
  int64_t bytes = 0;  // of after images, so the callback reads what it gets
};

int OnDrain(void* user, const cdc_change* c, int n) {
  int64_t bytes = 0;
  for (int i = 0; i < n; i++) bytes += c[i].after ? static_cast<int64_t>(std::strlen(c[i].after)) : 0;
  auto* d = static_cast<Drain*>(user);
  std::lock_guard<std::mutex> lock(d->mu);
  d->changes += n;
  d->bytes += bytes;
  d->last_id = c[n - 1].id;
  d->cv.notify_all();
  return 0;
}

void BM_Drain(benchmark::State& state) {
  const int64_t n = BacklogRows();
  for (auto _ : state) {
    TempDir dir;
    Side side(dir.File("drain.db"), kOurs, 6);  // prefilled rows are not captured
    side.db.Exec("SELECT cdc_consumer_add('c')");
    side.InsertRows(n);
    side.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const int64_t last = side.db.Int("SELECT max(id) FROM __cdc_log");
    Stmt position(side.db.get(), "SELECT json_extract(cdc_status(), '$.consumers[0].position')");

    {  // reset VmHWM to the current RSS (Linux >= 4.0); the sampler covers its absence
      std::ofstream clear("/proc/self/clear_refs");
      clear << "5";
    }
    const int64_t rss0 = ProcStatusBytes("VmRSS");
    std::atomic<bool> stop{false};
    int64_t rss_peak = rss0;
    std::thread sampler([&] {
      while (!stop.load()) {
        rss_peak = std::max(rss_peak, ProcStatusBytes("VmRSS"));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });

    Drain d;
    auto t0 = Clock::now();
    Listen(side.db, "c", OnDrain, &d, "{\"batch\":1000}");
    if (!WaitFor(d.mu, d.cv, 300, [&] { return d.last_id >= last; })) Die("drain did not finish in 300 s");
    const double delivered_secs = Seconds(t0, Clock::now());
    for (;;) {  // the ack of the last batch (the acker commits at most once a second)
      if (sqlite3_step(position.get()) != SQLITE_ROW) Die(sqlite3_errmsg(side.db.get()));
      const int64_t pos = sqlite3_column_int64(position.get(), 0);
      sqlite3_reset(position.get());
      if (pos >= last) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const double secs = Seconds(t0, Clock::now());
    stop = true;
    sampler.join();
    const int64_t hwm = ProcStatusBytes("VmHWM");
    Unlisten(side.db, "c");
    if (d.changes < n) Die("drain delivered " + std::to_string(d.changes) + " of " + std::to_string(n));
    state.SetIterationTime(secs);
    state.counters["changes_s"] = static_cast<double>(d.changes) / secs;
    state.counters["delivered_s"] = static_cast<double>(d.changes) / delivered_secs;
    state.counters["rss_growth_mb"] = static_cast<double>(std::max(rss_peak, hwm) - rss0) / (1024.0 * 1024.0);
    state.counters["rss_start_mb"] = static_cast<double>(rss0) / (1024.0 * 1024.0);
  }
}


// ---- fan-out: K consumers listening at once ------------------------------

struct Counted {
  std::mutex mu;
  std::condition_variable cv;
  int64_t changes = 0;
};

int OnCount(void* user, const cdc_change*, int n) {
  auto* c = static_cast<Counted*>(user);
  std::lock_guard<std::mutex> lock(c->mu);
  c->changes += n;
  c->cv.notify_all();
  return 0;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

int64_t FanoutRows() { return EnvInt("CDC_BENCH_FANOUT_ROWS", QuickMode() ? 20000 : 100000); }

struct WriterRun {
  double secs = 0, cpu = 0, until_delivered = 0, other_cpu = 0;
};

// Writes `rows` rows in transactions of kTxRows on a fresh database while
// `k` listeners (on a connection of their own) deliver them.
WriterRun RunWriter(int k, int64_t rows) {
  TempDir dir;
  const std::string path = dir.File("fan.db");
  Side side(path, kOurs, 6);
  side.db.Exec("PRAGMA busy_timeout=10000");  // the acks take the write lock now and then
  std::string add;
  for (int i = 0; i < k; i++) add += "SELECT cdc_consumer_add('c" + std::to_string(i) + "');";
  if (k) side.db.Exec(add);
  Db lis(path);
  std::vector<std::unique_ptr<Counted>> counts;
  for (int i = 0; i < k; i++) {
    counts.push_back(std::make_unique<Counted>());
    Listen(lis, ("c" + std::to_string(i)).c_str(), OnCount, counts.back().get(), nullptr);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // started, drained nothing
  WriterRun r;
  const double cpu0 = CpuSeconds(), tcpu0 = ThreadCpuSeconds();
  auto t0 = Clock::now();
  for (int64_t done = 0; done < rows; done += kTxRows) side.InsertRows(std::min<int64_t>(kTxRows, rows - done));
  r.secs = Seconds(t0, Clock::now());
  r.cpu = ThreadCpuSeconds() - tcpu0;
  for (auto& c : counts) {
    if (!WaitFor(c->mu, c->cv, 120, [&] { return c->changes >= rows; })) Die("fan-out: a listener fell behind");
  }
  r.until_delivered = Seconds(t0, Clock::now());
  r.other_cpu = CpuSeconds() - cpu0 - (ThreadCpuSeconds() - tcpu0);
  for (int i = 0; i < k; i++) Unlisten(lis, ("c" + std::to_string(i)).c_str());
  return r;
}

void BM_Fanout(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const int64_t rows = FanoutRows();
  for (auto _ : state) {
    // Alone, with k, alone again: the ratio is to the mean of the two.
    WriterRun a = RunWriter(0, rows);
    WriterRun w = RunWriter(k, rows);
    WriterRun b = RunWriter(0, rows);
    const double alone_s = (a.secs + b.secs) / 2;
    state.SetIterationTime(w.secs);
    state.counters["consumers"] = k;
    state.counters["writer_rows_s"] = static_cast<double>(rows) / w.secs;
    state.counters["writer_alone_rows_s"] = static_cast<double>(rows) / alone_s;
    state.counters["writer_ratio"] = alone_s / w.secs;
    state.counters["writer_cpu_us_per_row"] = w.cpu * 1e6 / static_cast<double>(rows);
    if (k > 0) {
      state.counters["delivered_s"] = static_cast<double>(k * rows) / w.until_delivered;
      state.counters["listener_cpu_us_per_change"] = w.other_cpu * 1e6 / static_cast<double>(k * rows);
    }
  }
}

}  // namespace

void RegisterListenerBenchmarks() {
  for (auto [name, fn] : {std::pair{"listener/latency", BM_Latency}, std::pair{"listener/latency_shared", BM_LatencyShared},
                          std::pair{"listener/idle_cpu", BM_IdleCpu},
                          std::pair{"listener/drain", BM_Drain}}) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(1)->Repetitions(1)->UseManualTime()->Unit(
        benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("listener/fanout", BM_Fanout)
      ->Arg(1)->Arg(8)->Iterations(1)->Repetitions(1)->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace cdcbench
