// cdc_stream.cc — cdc-stream, a sidecar that writes a database's changes to
// stdout as NDJSON (one event of DESIGN §3 per line), for piping into another
// tool:
//
//   cdc-stream --consumer search-index app.db | jq -c 'select(.table == "orders")'
//
// How it works. It opens DATABASE, loads the sqlite-cdc extension, registers
// the named consumer (cdc_consumer_add is idempotent, so a restart resumes
// after the last ack), then loops: cdc_poll a batch, write one line per event,
// flush stdout, and only when the flush succeeded cdc_ack the batch's last id.
// With nothing pending it blocks in cdc_wait, in slices short enough to
// notice a stop promptly.
//
// Delivery is at least once: a crash (or SIGKILL) between the flush and the
// ack re-sends that one batch after a restart, nothing else. SIGINT / SIGTERM
// stop it cleanly after the batch in hand is written and acked; a closed pipe
// (EPIPE, e.g. `| head -n 5`) stops it without acking the batch that could not
// be written. Both exit with status 0. Errors (no such database, extension not
// loadable ...) exit 1 with a message on stderr; bad usage exits 2.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifndef CDC_INSTALLED_EXTENSION
#define CDC_INSTALLED_EXTENSION "/usr/local/lib/sqlite-cdc/cdc"
#endif
#ifndef CDC_RELATIVE_EXTENSION
#define CDC_RELATIVE_EXTENSION "../lib/sqlite-cdc/cdc"
#endif

namespace {

volatile sig_atomic_t g_stop = 0;

extern "C" void OnSignal(int) { g_stop = 1; }

const char kUsage[] =
    "usage: cdc-stream [options] DATABASE\n"
    "\n"
    "Writes the changes captured by sqlite-cdc in DATABASE to stdout as NDJSON,\n"
    "one event per line:\n"
    "  {\"id\":1,\"ts\":1764000000123,\"table\":\"t\",\"op\":\"INSERT\",\"before\":null,\"after\":{...}}\n"
    "A batch is acked (cdc_ack) only after its lines are written and flushed, so a\n"
    "restart resumes after the last line delivered; after a crash at most the\n"
    "last unacked batch is written again. Tables are captured beforehand with\n"
    "SELECT cdc_setup('table') (see sql/migrations/).\n"
    "\n"
    "options:\n"
    "  -c, --consumer NAME   consumer to read as (default: cdc-stream); created if\n"
    "                        missing, starting as --from says\n"
    "      --from WHERE      earliest (default) or latest: where a new consumer starts\n"
    "  -b, --batch N         events per poll and per ack (default 256)\n"
    "      --once            write what is pending, then exit (don't wait)\n"
    "      --extension PATH  sqlite-cdc extension to load (default: $CDC_EXTENSION,\n"
    "                        else cdc.so beside this program, else\n"
    "                        " CDC_RELATIVE_EXTENSION ".so from it, else\n"
    "                        " CDC_INSTALLED_EXTENSION ".so)\n"
    "      --progress        print a progress line on stderr (position, pending, lag)\n"
    "                        at most once a second and at exit\n"
    "  -h, --help            this text\n"
    "\n"
    "Stops cleanly (exit 0) on SIGINT, SIGTERM, or when stdout is closed (EPIPE).\n";

struct Options {
  std::string db;
  std::string consumer = "cdc-stream";
  std::string from = "earliest";
  std::string extension;
  int64_t batch = 256;
  bool once = false;
  bool progress = false;
};

[[noreturn]] void UsageError(const std::string& msg) {
  fprintf(stderr, "cdc-stream: %s\n(try --help)\n", msg.c_str());
  exit(2);
}

int64_t ParsePositive(const char* opt, const char* v) {
  char* end = nullptr;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || !*v || *end || n <= 0) UsageError(std::string(opt) + " needs a positive integer, not '" + v + "'");
  return n;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) UsageError(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (a == "-c" || a == "--consumer") {
      o.consumer = value("--consumer");
    } else if (a == "--from") {
      o.from = value("--from");
      if (o.from != "earliest" && o.from != "latest") UsageError("--from is earliest or latest");
    } else if (a == "-b" || a == "--batch") {
      o.batch = ParsePositive("--batch", value("--batch"));
    } else if (a == "--extension") {
      o.extension = value("--extension");
    } else if (a == "--once") {
      o.once = true;
    } else if (a == "--progress") {
      o.progress = true;
    } else if (a.size() > 1 && a[0] == '-') {
      UsageError("unknown option " + a);
    } else if (o.db.empty()) {
      o.db = a;
    } else {
      UsageError("only one DATABASE");
    }
  }
  if (o.db.empty()) UsageError("no DATABASE given");
  if (o.consumer.empty()) UsageError("--consumer must not be empty");
  return o;
}

bool Exists(const std::string& p) { return access(p.c_str(), R_OK) == 0; }

// The extension to load, per --help.
std::string FindExtension(const Options& o) {
  if (!o.extension.empty()) return o.extension;
  if (const char* e = getenv("CDC_EXTENSION"); e && *e) return e;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.rfind('/'));
    if (Exists(dir + "/cdc.so")) return dir + "/cdc";
    const std::string installed = dir + "/" CDC_RELATIVE_EXTENSION;
    if (Exists(installed + ".so")) return installed;
  }
  return CDC_INSTALLED_EXTENSION;
}

// A connection and the few statements the loop runs, prepared once.
class Stream {
 public:
  ~Stream() {
    for (auto* s : {poll_, ack_, wait_, status_}) sqlite3_finalize(s);
    sqlite3_close(db_);
  }

  bool Open(const Options& o) {
    o_ = o;
    if (sqlite3_open_v2(o.db.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      return Fail("cannot open " + o.db);
    }
    sqlite3_busy_timeout(db_, 10000);
    // This connection only commits acks: in WAL mode an ack lost to a power
    // cut means a batch delivered again, which at-least-once allows, so it
    // need not wait for fsync (in rollback-journal mode NORMAL is not as
    // safe, so it stays as it is).
    sqlite3_stmt* jm = nullptr;
    if (!Prepare("PRAGMA journal_mode", &jm)) return false;
    bool wal = sqlite3_step(jm) == SQLITE_ROW &&
               sqlite3_stricmp(reinterpret_cast<const char*>(sqlite3_column_text(jm, 0)), "wal") == 0;
    sqlite3_finalize(jm);
    if (wal) sqlite3_exec(db_, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
    sqlite3_enable_load_extension(db_, 1);
    std::string ext = FindExtension(o);
    char* err = nullptr;
    if (sqlite3_load_extension(db_, ext.c_str(), "sqlite3_cdc_init", &err) != SQLITE_OK) {
      fprintf(stderr, "cdc-stream: cannot load the sqlite-cdc extension %s: %s\n", ext.c_str(),
              err ? err : "?");
      sqlite3_free(err);
      return false;
    }
    sqlite3_enable_load_extension(db_, 0);
    sqlite3_stmt* add = nullptr;
    if (!Prepare("SELECT cdc_consumer_add(?1, ?2)", &add)) return false;
    sqlite3_bind_text(add, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(add, 2, o.from.c_str(), -1, SQLITE_TRANSIENT);
    bool ok = StepRetry(add) == SQLITE_ROW;
    sqlite3_finalize(add);
    if (!ok) return Fail("cannot add consumer " + o.consumer);
    if (!Prepare("SELECT cdc_poll(?1, ?2)", &poll_) || !Prepare("SELECT cdc_ack(?1, ?2)", &ack_)) return false;
    sqlite3_bind_text(poll_, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(poll_, 2, o.batch);
    sqlite3_bind_text(ack_, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    if (!Prepare("SELECT cdc_wait(?1, ?2)", &wait_)) return false;
    sqlite3_bind_text(wait_, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    if (o.progress &&
        !Prepare("SELECT json_extract(value, '$.position'), json_extract(value, '$.pending'), "
                 "json_extract(value, '$.lag_ms') FROM json_each(cdc_status(), '$.consumers') "
                 "WHERE json_extract(value, '$.name') = ?1",
                 &status_)) {
      return false;
    }
    if (status_) sqlite3_bind_text(status_, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    return true;
  }

  // One poll: the events of the next batch, each as its own JSON text.
  bool Poll(std::vector<std::string>* events, int64_t* last_id) {
    events->clear();
    int rc = sqlite3_step(poll_);
    if (rc != SQLITE_ROW) {
      sqlite3_reset(poll_);
      return Fail("cdc_poll");
    }
    const char* p = reinterpret_cast<const char*>(sqlite3_column_text(poll_, 0));
    size_t n = static_cast<size_t>(sqlite3_column_bytes(poll_, 0));
    bool ok = SplitArray(p ? p : "", n, events, last_id);
    sqlite3_reset(poll_);
    if (!ok) fprintf(stderr, "cdc-stream: cdc_poll returned an unexpected text\n");
    return ok;
  }

  bool Ack(int64_t id) {
    sqlite3_bind_int64(ack_, 2, id);
    int rc = StepRetry(ack_);
    sqlite3_reset(ack_);
    return rc == SQLITE_ROW || Fail("cdc_ack");
  }

  // Waits at most `ms` for a change to commit (cdc_wait).
  bool Wait(int64_t ms) {
    sqlite3_bind_int64(wait_, 2, ms);
    int rc = sqlite3_step(wait_);
    sqlite3_reset(wait_);
    return rc == SQLITE_ROW || Fail("cdc_wait");
  }

  void Progress(int64_t delivered, double seconds) {
    if (!status_) return;
    if (sqlite3_step(status_) == SQLITE_ROW) {
      fprintf(stderr, "cdc-stream: consumer=%s position=%lld pending=%lld lag_ms=%lld delivered=%lld rate=%.0f/s\n",
              o_.consumer.c_str(), static_cast<long long>(sqlite3_column_int64(status_, 0)),
              static_cast<long long>(sqlite3_column_int64(status_, 1)),
              static_cast<long long>(sqlite3_column_int64(status_, 2)), static_cast<long long>(delivered),
              seconds > 0 ? static_cast<double>(delivered) / seconds : 0.0);
    }
    sqlite3_reset(status_);
  }

 private:
  // Steps a statement that writes, retrying while another connection holds
  // the database ("database is locked" can come back at once instead of
  // after the busy timeout when a read snapshot must be upgraded). Gives up
  // after about 30 s, or on a stop signal.
  int StepRetry(sqlite3_stmt* st) {
    for (int attempt = 0;; attempt++) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
      const char* msg = sqlite3_errmsg(db_);
      bool busy = (sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY || strstr(msg, "database is locked");
      if (!busy || attempt >= 600 || g_stop) return rc;
      sqlite3_reset(st);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50, 1 + attempt)));
    }
  }

  bool Prepare(const char* sql, sqlite3_stmt** st) {
    if (sqlite3_prepare_v2(db_, sql, -1, st, nullptr) == SQLITE_OK) return true;
    return Fail("prepare");
  }

  bool Fail(const std::string& what) {
    fprintf(stderr, "cdc-stream: %s: %s\n", what.c_str(), db_ ? sqlite3_errmsg(db_) : "out of memory");
    return false;
  }

  // Splits the JSON array text cdc_poll returns into its elements (objects
  // that start with "id"), tracking strings and nesting only: the text comes
  // from the extension and is strict JSON.
  static bool SplitArray(const char* p, size_t n, std::vector<std::string>* out, int64_t* last_id) {
    size_t i = 0;
    while (i < n && p[i] != '[') i++;
    if (i == n) return false;
    i++;
    int depth = 0;
    bool in_str = false;
    size_t start = 0;
    for (; i < n; i++) {
      char c = p[i];
      if (in_str) {
        if (c == '\\') i++;
        else if (c == '"') in_str = false;
        continue;
      }
      if (c == '"') {
        in_str = true;
      } else if (c == '{' || c == '[') {
        if (depth++ == 0) start = i;
      } else if (c == '}' || c == ']') {
        if (depth == 0) return true;  // the array's own ']'
        if (--depth == 0) {
          out->emplace_back(p + start, i + 1 - start);
          const char kId[] = "{\"id\":";
          if (out->back().compare(0, sizeof kId - 1, kId) != 0) return false;
          *last_id = strtoll(out->back().c_str() + sizeof kId - 1, nullptr, 10);
        }
      }
    }
    return false;
  }

  Options o_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* poll_ = nullptr;
  sqlite3_stmt* ack_ = nullptr;
  sqlite3_stmt* wait_ = nullptr;
  sqlite3_stmt* status_ = nullptr;
};

// True when stdout is a pipe whose reader has gone (checked while idle, so
// `cdc-stream db | head -n 3` ends even when no further change comes).
bool StdoutClosed() {
  struct pollfd p = {1, 0, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

// Writes the lines and flushes; false when stdout is gone (EPIPE) or failed.
bool WriteLines(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    if (fwrite(l.data(), 1, l.size(), stdout) != l.size() || fputc('\n', stdout) == EOF) return false;
  }
  return fflush(stdout) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);

  // No SA_RESTART: a signal interrupts a blocked write; SIGPIPE is ignored so
  // a closed stdout shows up as EPIPE from the write.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Stream s;
  if (!s.Open(o)) return 1;
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto last_progress = started - std::chrono::seconds(1);
  int64_t delivered = 0;
  int status = 0;
  const int64_t slice = 250;  // ms in cdc_wait at a time: how soon a stop is noticed
  std::vector<std::string> events;
  while (!g_stop) {
    int64_t last_id = 0;
    if (!s.Poll(&events, &last_id)) { status = 1; break; }
    if (events.empty()) {
      if (o.once || StdoutClosed()) break;
      if (o.progress && Clock::now() - last_progress >= std::chrono::seconds(1)) {
        s.Progress(delivered, std::chrono::duration<double>(Clock::now() - started).count());
        last_progress = Clock::now();
      }
      if (!s.Wait(slice)) { status = 1; break; }
      continue;
    }
    if (!WriteLines(events)) {
      if (errno != EPIPE && errno != EINTR) {
        fprintf(stderr, "cdc-stream: writing stdout: %s\n", strerror(errno));
        status = 1;
      }
      break;  // not acked: the batch is delivered again after a restart
    }
    if (!s.Ack(last_id)) { status = 1; break; }
    delivered += static_cast<int64_t>(events.size());
    if (o.progress && Clock::now() - last_progress >= std::chrono::seconds(1)) {
      s.Progress(delivered, std::chrono::duration<double>(Clock::now() - started).count());
      last_progress = Clock::now();
    }
  }
  if (o.progress) s.Progress(delivered, std::chrono::duration<double>(Clock::now() - started).count());
  return status;
}
