// crash_test.cc — power loss: a child process runs a deterministic workload
// (transactions on a captured table, acks, bootstraps) through the crash
// VFS (inject.h), which kills it at a chosen xSync, or at the end, leaving
// each write since the file's last sync written, dropped or torn. The parent
// then opens the database and checks:
//   - PRAGMA integrity_check is ok;
//   - the transactions present are exactly 1..m (each writes its number into
//     the captured table `ledger`): none missing in the middle;
//   - synchronous=FULL: every transaction whose COMMIT returned is there
//     (m >= the last reported commit); WAL + synchronous=NORMAL: the newest
//     may be gone, but only whole;
//   - the table `t` is exactly what the first m transactions make of it
//     (the workload is replayed from its seed), and the log replays exactly to
//     `t` and `ledger` (no event without its row, no row without its event);
//   - the consumer's position is at most the newest logged id, and with FULL
//     at least the last position an acknowledged cdc_ack returned;
//   - the database keeps working: a new write gets a larger id.
// The child is this program, re-executed (main.cc: --crash-child).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "inject.h"

namespace faulttest {
namespace {

// The workload: transaction k's SQL, the same in child and parent.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  // Transaction k (1, 2, ...), applied to the model.
  std::string Txn(int k) {
    std::ostringstream sql;
    sql << "BEGIN;\nINSERT INTO ledger VALUES(" << k << ");\n";
    int ops = 1 + static_cast<int>(rng_() % 4);
    for (int j = 0; j < ops; j++) {
      int r = static_cast<int>(rng_() % 4);
      // Sometimes a long value: rows spill to overflow pages.
      size_t pad = rng_() % 5 == 0 ? static_cast<size_t>(rng_() % 3000) : 0;
      std::string v = std::to_string(k) + "." + std::to_string(j);
      std::string v_sql = pad ? "printf('%s%.*c', '" + v + "', " + std::to_string(pad) + ", 'x')" : "'" + v + "'";
      v += std::string(pad, 'x');
      if (r <= 1 || rows_.empty()) {
        int64_t id = 1 + static_cast<int64_t>(rng_() % 40);
        if (rows_.count(id)) {
          sql << "UPDATE t SET v = " << v_sql << ", n = n + 1 WHERE id = " << id << ";\n";
          rows_[id].first = v;
          rows_[id].second++;
        } else {
          sql << "INSERT INTO t VALUES(" << id << ", " << v_sql << ", 0);\n";
          rows_[id] = {v, 0};
        }
      } else {
        auto it = rows_.begin();
        std::advance(it, static_cast<long>(rng_() % rows_.size()));
        if (r == 2) {
          sql << "UPDATE t SET v = " << v_sql << ", n = n + 1 WHERE id = " << it->first << ";\n";
          it->second.first = v;
          it->second.second++;
        } else {
          sql << "DELETE FROM t WHERE id = " << it->first << ";\n";
          rows_.erase(it);
        }
      }
    }
    sql << "COMMIT;";
    return sql.str();
  }

  // Rows of t as the model has them: "id|v|n".
  std::vector<std::string> Rows() const {
    std::vector<std::string> out;
    for (const auto& kv : rows_) {
      out.push_back(std::to_string(kv.first) + "|" + kv.second.first + "|" + std::to_string(kv.second.second));
    }
    return out;
  }

 private:
  std::mt19937_64 rng_;
  std::map<int64_t, std::pair<std::string, int64_t>> rows_;
};

struct Mode {
  const char* name;
  const char* journal;
  const char* synchronous;
  bool durable;  // every returned COMMIT must survive
};
const Mode kModes[] = {
    {"FullWal", "wal", "full", true},
    {"FullRollback", "delete", "full", true},
    {"NormalWal", "wal", "normal", false},
};

const Mode& FindMode(const std::string& name) {
  for (const Mode& m : kModes) {
    if (name == m.name) return m;
  }
  abort();
}

void Say(int fd, const std::string& s) {
  std::string line = s + "\n";
  if (write(fd, line.data(), line.size()) < 0) _exit(98);
}

struct ChildResult {
  int status = -1;       // exit status, or -1 if killed by a signal
  int64_t last_commit = 0;
  int64_t last_ack = 0;
  int64_t syncs = -1;    // reported at a clean end
  std::string error;     // reported by the child
};

// Runs the child; at_sync 0 = no crash (reports the sync count), -1 = crash
// after the last transaction.
ChildResult RunChild(const std::string& db, const Mode& mode, uint64_t seed, int64_t at_sync, int txns) {
  int p[2];
  if (pipe(p) != 0) abort();
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string fd = std::to_string(p[1]);
    std::string s = std::to_string(seed), a = std::to_string(at_sync), n = std::to_string(txns);
    execl("/proc/self/exe", "cdc_faults", "--crash-child", db.c_str(), mode.name, s.c_str(), a.c_str(), n.c_str(),
          fd.c_str(), static_cast<char*>(nullptr));
    _exit(97);
  }
  close(p[1]);
  std::string text;
  char buf[4096];
  ssize_t got;
  while ((got = read(p[0], buf, sizeof buf)) > 0 || (got < 0 && errno == EINTR)) {
    if (got > 0) text.append(buf, static_cast<size_t>(got));
  }
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  ChildResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 2) continue;
    if (line[0] == 'C') r.last_commit = atoll(line.c_str() + 2);
    if (line[0] == 'A') r.last_ack = atoll(line.c_str() + 2);
    if (line[0] == 'S') r.syncs = atoll(line.c_str() + 2);
    if (line[0] == 'E') r.error += line.substr(2) + "\n";
  }
  return r;
}

std::string Prepare(const std::string& file, const Mode& mode) {
  std::string err;
  sqlite3* db = Open(file, &err);
  if (!db) return err;
  err = Exec(db, std::string("PRAGMA journal_mode=") + mode.journal +
                     ";\n"
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);\n"
                     "CREATE TABLE ledger(id INTEGER PRIMARY KEY);\n"
                     "SELECT cdc_setup('t'); SELECT cdc_setup('ledger');\n"
                     "SELECT cdc_consumer_add('audit'); SELECT cdc_consumer_add('c1');");
  sqlite3_close(db);
  return err;
}

// Everything the parent checks after a crash; "" when all holds.
std::string Check(const std::string& file, const Mode& mode, uint64_t seed, const ChildResult& r) {
  std::ostringstream bad;
  std::string err;
  sqlite3* db = Open(file, &err);
  if (!db) return "reopen: " + err;
  std::string integ = Integrity(db);
  if (integ != "ok") bad << "integrity_check: " << integ << "\n";
  std::vector<cdcjson::Row> rows;
  cdcjson::QueryRows(db, "SELECT id FROM ledger ORDER BY id", &rows, &err);
  int64_t m = 0;
  for (const auto& row : rows) {
    if (row[0].i != m + 1) {
      bad << "ledger has transaction " << row[0].i << " after " << m << " (one in the middle is missing)\n";
      break;
    }
    m = row[0].i;
  }
  if (mode.durable && m < r.last_commit) {
    bad << "transaction " << r.last_commit << " returned from COMMIT but only 1.." << m << " survived\n";
  }
  if (m > r.last_commit + 1) bad << "transaction " << m << " present but never attempted\n";
  Workload w(seed);
  for (int k = 1; k <= m; k++) w.Txn(k);
  std::vector<std::string> want = w.Rows(), have;
  cdcjson::QueryRows(db, "SELECT id, v, n FROM t ORDER BY id", &rows, &err);
  for (const auto& row : rows) {
    have.push_back(std::to_string(row[0].i) + "|" + row[1].bytes + "|" + std::to_string(row[2].i));
  }
  if (have != want) bad << "t is not what transactions 1.." << m << " make of it (" << have.size() << " rows, want "
                        << want.size() << ")\n";
  std::string replay = ReplayCheck(db, {"t", "ledger"});
  if (!replay.empty()) bad << "replay: " << replay << "\n";
  int64_t newest = atoll(One(db, "SELECT coalesce(max(id), 0) FROM __cdc_log").c_str());
  int64_t pos = atoll(One(db, "SELECT pos FROM __cdc_consumers WHERE name = 'c1'").c_str());
  if (pos > newest) bad << "c1 is at " << pos << ", past the newest logged id " << newest << "\n";
  if (mode.durable && pos < r.last_ack) bad << "c1 went back from acked " << r.last_ack << " to " << pos << "\n";
  if (One(db, "SELECT pos FROM __cdc_consumers WHERE name = 'audit'") != "0") bad << "audit moved\n";
  std::string e = Exec(db, "INSERT INTO ledger VALUES(" + std::to_string(m + 1) + ")");
  if (!e.empty()) bad << "write after the crash: " << e << "\n";
  int64_t next = atoll(One(db, "SELECT max(id) FROM __cdc_log").c_str());
  if (next <= newest) bad << "the next id " << next << " is not past " << newest << "\n";
  if (One(db, "SELECT json_array_length(cdc_poll('c1', 1000000)) > 0") != "1") bad << "cdc_poll finds nothing\n";
  sqlite3_close(db);
  return bad.str();
}

struct Figures {
  int runs = 0, crashed = 0;
  int64_t lost_commits = 0;  // NormalWal: transactions that returned but vanished (allowed)
};

// One seed: counts the syncs, then crashes at each chosen sync.
std::string RunSeed(const Mode& mode, uint64_t seed, int txns, int points, Figures* fig) {
  TempDir dir;
  std::string file = dir.File("c.db");
  std::string e = Prepare(file, mode);
  if (!e.empty()) return "prepare: " + e;
  std::string base = dir.File("base.db");
  CopyDb(file, base);
  ChildResult clean = RunChild(file, mode, seed, 0, txns);
  if (clean.status != 0 || clean.syncs < 0) {
    return "the fault-free child failed (status " + std::to_string(clean.status) + "): " + clean.error;
  }
  std::string c = Check(file, mode, seed, clean);
  if (!c.empty()) return "without a crash: " + c;
  std::mt19937_64 rng(seed * 7919);
  std::vector<int64_t> at;
  for (int i = 0; i < points; i++) at.push_back(clean.syncs > 0 ? 1 + static_cast<int64_t>(rng() % clean.syncs) : -1);
  at.push_back(-1);  // and once after the last transaction, with its writes unsynced
  std::string out;
  for (int64_t k : at) {
    CopyDb(base, file);
    ChildResult r = RunChild(file, mode, seed, k, txns);
    fig->runs++;
    if (r.status == faults::kCrashExit) fig->crashed++;
    if (r.status != faults::kCrashExit && r.status != 0) {
      out += "crash at sync " + std::to_string(k) + ": child status " + std::to_string(r.status) + ": " + r.error;
      break;
    }
    std::string problems = Check(file, mode, seed, r);
    if (!problems.empty()) {
      out += "seed " + std::to_string(seed) + ", crash at sync " + std::to_string(k) + ":\n" + problems;
      break;
    }
    sqlite3* db = nullptr;
    std::string err;
    if ((db = Open(file, &err, false))) {
      int64_t m = atoll(One(db, "SELECT max(id) FROM ledger").c_str()) - 1;  // Check wrote m+1
      if (m < r.last_commit) fig->lost_commits += r.last_commit - m;
      sqlite3_close(db);
    }
  }
  return out;
}

class PowerLoss : public ::testing::TestWithParam<std::string> {};

TEST_P(PowerLoss, Crashes) {
  const Mode& mode = FindMode(GetParam());
  Figures fig;
  const int txns = 40;
  if (Long()) {
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::max(10.0, CampaignSeconds()));
    std::mt19937_64 rng(Seed());
    while (std::chrono::steady_clock::now() < until) {
      uint64_t seed = rng();
      std::string e = RunSeed(mode, seed, txns, 12, &fig);
      ASSERT_EQ(e, "");
    }
  } else {
    for (uint64_t seed : {Seed(), Seed() + 1}) {
      std::string e = RunSeed(mode, seed, txns, 6, &fig);
      ASSERT_EQ(e, "");
    }
  }
  char line[200];
  snprintf(line, sizeof line, "crash %s runs=%d crashed=%d lost_returned_commits=%lld\n", mode.name, fig.runs,
           fig.crashed, static_cast<long long>(fig.lost_commits));
  fputs(line, stdout);
  if (const char* file = getenv("CDC_FAULTS_REPORT")) {
    if (FILE* f = fopen(file, "a")) {
      fputs(line, f);
      fclose(f);
    }
  }
  EXPECT_GT(fig.crashed, 0);
  if (mode.durable) {
    EXPECT_EQ(fig.lost_commits, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, PowerLoss, ::testing::Values("FullWal", "FullRollback", "NormalWal"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace

// The child: --crash-child DB MODE SEED AT_SYNC TXNS FD
int CrashChild(int argc, char** argv) {
  if (argc != 8) return 2;
  const Mode& mode = FindMode(argv[3]);
  uint64_t seed = strtoull(argv[4], nullptr, 10);
  int64_t at_sync = atoll(argv[5]);
  int txns = atoi(argv[6]);
  int fd = atoi(argv[7]);
  // The fates of the pending writes: seeded by the workload and the crash point.
  faults::SetCrash(seed * 1000003 + static_cast<uint64_t>(at_sync), at_sync > 0 ? at_sync : 0);
  std::string err;
  sqlite3* db = Open(argv[2], &err);
  if (!db) {
    Say(fd, "E open: " + err);
    return 3;
  }
  sqlite3_busy_timeout(db, 5000);
  std::string e = Exec(db, std::string("PRAGMA synchronous=") + mode.synchronous);
  Workload w(seed);
  for (int k = 1; k <= txns && e.empty(); k++) {
    e = Exec(db, w.Txn(k));
    if (!e.empty()) break;
    Say(fd, "C " + std::to_string(k));
    if (k % 4 == 0) {
      std::string pos = One(db, "SELECT cdc_ack('c1', (SELECT coalesce(max(id), 0) FROM cdc_changes('c1')))", &e);
      if (!e.empty()) break;
      Say(fd, "A " + pos);
    }
    if (k % 7 == 0) e = Exec(db, "SELECT cdc_bootstrap('t')");
  }
  if (!e.empty()) {
    Say(fd, "E " + e);
    return 4;
  }
  if (at_sync < 0) faults::Crash();
  Say(fd, "S " + std::to_string(faults::SyncCount()));
  sqlite3_close(db);
  return 0;
}

}  // namespace faulttest
