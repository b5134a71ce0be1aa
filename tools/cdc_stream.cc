// cdc_stream.cc — cdc-stream, a sidecar that ships a database's changes out:
// NDJSON on stdout (default), or into an HTTP(S) endpoint, a NATS JetStream
// stream or Redis Streams (tools/sinks/), in the native event format
// (DESIGN §3) or the Debezium envelope:
//
//   cdc-stream --consumer search-index app.db | jq -c 'select(.table == "orders")'
//   cdc-stream --sink nats://127.0.0.1:4222 --format debezium app.db
//
// How it works. It opens DATABASE, loads the sqlite-cdc extension, registers
// the named consumer (cdc_consumer_add is idempotent, so a restart resumes
// after the last ack), reads the database's source id (__cdc_meta, made with
// the internal tables) and starts a listener (include/cdc.h) with a C
// callback: the listener brings the wake-up signals, the batching, the
// retries with capped exponential backoff and the acker. The callback
// formats the batch and hands it to the sink; it returns 0 (the listener
// then acks the batch) only once the sink confirmed every event of it
// (tools/sinks/sink.h). A retryable failure returns non-zero after any wait
// the far side asked for (Retry-After): the listener calls again later with
// the same batch. A permanent failure (an HTTP 4xx other than 408/429)
// stops the main thread, which stops the listener without acking that batch
// and exits 1.
//
// Delivery is at least once, and exact where the sink deduplicates (NATS
// message ids, Redis entry ids): a crash (or SIGKILL) between the sink's
// confirmation and the ack sends that batch again after a restart, nothing
// else. SIGINT / SIGTERM stop it cleanly: a batch in flight is abandoned
// (not acked) or finished, everything confirmed is acked, exit status 0. A
// closed stdout (EPIPE, e.g. `| head -n 5`) stops it the same way. Errors
// (no such database, extension not loadable, a permanent sink error) exit 1
// with a message on stderr; bad usage exits 2.
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cdc.h"
#include "sinks/sink.h"

#ifndef CDC_INSTALLED_EXTENSION
#define CDC_INSTALLED_EXTENSION "/usr/local/lib/sqlite-cdc/cdc"
#endif
#ifndef CDC_RELATIVE_EXTENSION
#define CDC_RELATIVE_EXTENSION "../lib/sqlite-cdc/cdc"
#endif

namespace {

// Set by SIGINT/SIGTERM (a lock-free atomic: safe in a signal handler, and
// read by the listener's thread and the sinks' waits).
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "g_stop is set in a signal handler");

extern "C" void OnSignal(int) { g_stop.store(1); }

}  // namespace

bool sinks::Stopping() { return g_stop != 0; }

namespace {

const char kUsage[] =
    "usage: cdc-stream [options] DATABASE\n"
    "\n"
    "Ships the changes captured by sqlite-cdc in DATABASE to a sink, in change-id\n"
    "order. The default sink writes NDJSON to stdout, one event per line:\n"
    "  {\"id\":1,\"ts\":1764000000123,\"table\":\"t\",\"op\":\"INSERT\",\"before\":null,\"after\":{...}}\n"
    "A batch is acked (cdc_ack) only after the sink confirmed all of it, so a\n"
    "restart resumes after the last batch delivered; after a crash at most the\n"
    "unacked batch is sent again (and the NATS and Redis sinks store it once).\n"
    "Tables are captured beforehand with SELECT cdc_setup('table').\n"
    "\n"
    "options:\n"
    "  -c, --consumer NAME   consumer to read as (default: cdc-stream); created if\n"
    "                        missing, starting as --from says\n"
    "      --from WHERE      earliest (default) or latest: where a new consumer starts\n"
    "  -b, --batch N         events per batch and per ack (default 256; 1024 for\n"
    "                        nats://)\n"
    "      --once            send what is pending, then exit (don't wait)\n"
    "      --extension PATH  sqlite-cdc extension to load (default: $CDC_EXTENSION,\n"
    "                        else cdc.so beside this program, else\n"
    "                        " CDC_RELATIVE_EXTENSION ".so from it, else\n"
    "                        " CDC_INSTALLED_EXTENSION ".so)\n"
    "      --progress        print a progress line on stderr (sink, position, pending,\n"
    "                        lag, delivered, rate, retries, duplicates: events the\n"
    "                        sink already held, last error) at most once a second\n"
    "                        and at exit\n"
    "  -h, --help            this text\n"
    "\n"
    "sinks (--sink URL; this build has: %s):\n"
    "      --sink -          NDJSON on stdout (default)\n"
    "      --sink http://HOST[:PORT]/PATH  (or https://)\n"
    "                        one POST per batch: a JSON array of events, with\n"
    "                        Idempotency-Key: <source id>:<first id>-<last id>.\n"
    "                        2xx = delivered; 408, 429, 5xx, timeouts, connection\n"
    "                        errors are retried (Retry-After honoured); any other\n"
    "                        status stops cdc-stream (exit 1) without acking\n"
    "      --header 'NAME: VALUE'  an extra HTTP header (repeatable)\n"
    "      --sink nats://HOST:PORT[,HOST:PORT...]\n"
    "                        NATS JetStream; every event has\n"
    "                        Nats-Msg-Id: <source id>:<event id>, so a batch sent\n"
    "                        again is stored once (within the duplicate window)\n"
    "      --stream NAME     JetStream stream (default CDC); created if missing with\n"
    "                        file storage, --replicas N (default 1), a 20-minute\n"
    "                        duplicate window\n"
    "      --subject TMPL    subject per event (default cdc.{table})\n"
    "      --window N        JetStream publishes in flight (default 1024)\n"
    "      --sink redis://[:PASSWORD@]HOST:PORT[/DB]\n"
    "                        Redis Streams: XADD KEY <event id>-0 value <json>, so a\n"
    "                        replayed event is refused and the stream holds it once\n"
    "      --key TMPL        stream key per event (default cdc:{table})\n"
    "      --maxlen N        trim each stream to about N entries (XADD MAXLEN ~ N)\n"
    "      --timeout MS      per HTTP request, per batch of PubAcks, per Redis reply\n"
    "                        (default 10000)\n"
    "  Templates expand {table} (in subjects: with ' ', '.', '*', '>' made '_') and\n"
    "  {source} (the database's source id).\n"
    "\n"
    "format (--format):\n"
    "      native            the events above (default)\n"
    "      debezium          the Debezium change-event envelope: {before, after,\n"
    "                        source{version, connector:\"sqlite\", name, ts_ms,\n"
    "                        snapshot, db, table, change_id}, op, ts_ms}; op c, u, d,\n"
    "                        r (rows right after a BOOTSTRAP marker), t (the marker).\n"
    "                        The key (primary-key columns) goes in the line or POST\n"
    "                        body as {\"key\":...,\"value\":...}, in the NATS header\n"
    "                        Cdc-Key, in the Redis field key\n"
    "      --source-name NAME  source.name (default: the database's source id)\n"
    "\n"
    "Stops cleanly (exit 0) on SIGINT, SIGTERM, or when stdout is closed (EPIPE).\n"
    "Exits 1 on an error (a permanent sink error too: the batch stays unacked),\n"
    "2 on bad usage or a sink this build lacks.\n";

struct Options {
  std::string db;
  std::string consumer = "cdc-stream";
  std::string from = "earliest";
  std::string extension;
  std::string format = "native";
  std::string source_name;
  int64_t batch = 0;  // 0: the sink's default (1024 for nats://, else 256)
  bool once = false;
  bool progress = false;
  sinks::Config sink;
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
  o.sink.url = "-";
  bool nats_opt = false, redis_opt = false, http_opt = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) UsageError(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      printf(kUsage, sinks::BuiltSinks().c_str());
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
    } else if (a == "--sink") {
      o.sink.url = value("--sink");
    } else if (a == "--format") {
      o.format = value("--format");
      if (o.format != "native" && o.format != "debezium") UsageError("--format is native or debezium");
    } else if (a == "--source-name") {
      o.source_name = value("--source-name");
    } else if (a == "--stream") {
      o.sink.stream = value("--stream");
      nats_opt = true;
    } else if (a == "--subject") {
      o.sink.subject = value("--subject");
      nats_opt = true;
    } else if (a == "--replicas") {
      o.sink.replicas = static_cast<int>(ParsePositive("--replicas", value("--replicas")));
      nats_opt = true;
    } else if (a == "--window") {
      o.sink.window = ParsePositive("--window", value("--window"));
      nats_opt = true;
    } else if (a == "--key") {
      o.sink.key = value("--key");
      redis_opt = true;
    } else if (a == "--maxlen") {
      o.sink.maxlen = ParsePositive("--maxlen", value("--maxlen"));
      redis_opt = true;
    } else if (a == "--header") {
      std::string h = value("--header");
      if (h.find(':') == std::string::npos || h.find_first_of("\r\n") != std::string::npos) {
        UsageError("--header is 'Name: value' on one line");
      }
      o.sink.headers.push_back(h);
      http_opt = true;
    } else if (a == "--timeout") {
      o.sink.timeout_ms = ParsePositive("--timeout", value("--timeout"));
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
  const std::string& u = o.sink.url;
  if (nats_opt && u.compare(0, 7, "nats://") != 0) UsageError("--stream, --subject, --replicas, --window are for a nats:// sink");
  if (redis_opt && u.compare(0, 8, "redis://") != 0) UsageError("--key and --maxlen are for a redis:// sink");
  if (http_opt && u.compare(0, 4, "http") != 0) UsageError("--header is for an http(s):// sink");
  if (o.sink.subject.find('{') == std::string::npos && o.sink.subject.find_first_of(" *>") != std::string::npos) {
    UsageError("--subject must be a subject without wildcards");
  }
  o.sink.debezium = o.format == "debezium";
  // JetStream: a batch waits for its last PubAck before the next one is
  // read, so larger batches keep the publish window fuller (figures in docs/streaming.md).
  if (o.batch == 0) o.batch = u.compare(0, 7, "nats://") == 0 ? 1024 : 256;
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

// What the listener's callback shares with the main thread.
struct Shared {
  sinks::Formatter formatter;          // callback thread only
  std::unique_ptr<sinks::Sink> sink;   // callback thread only
  sinks::Batch batch;                  // callback thread only
  std::chrono::steady_clock::time_point last_report{};  // callback thread only
  std::atomic<int64_t> delivered{0};   // events the sink confirmed
  std::atomic<int64_t> last_id{0};     // newest event id the sink confirmed
  std::atomic<int64_t> retries{0};
  std::atomic<int64_t> duplicates{0};  // events the sink already held (a batch sent again)
  std::atomic<bool> fatal{false};      // a permanent error: stop, exit 1
  std::atomic<bool> closed{false};     // stdout closed: stop, exit 0
  std::mutex mu;
  std::string error;                   // last error text; guarded by mu
};

// Sleeps up to ms, returning early on a stop.
void SleepUnlessStopped(int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!g_stop && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The listener's callback (include/cdc.h): 0 = the sink confirmed the whole
// batch, so the listener acks it.
extern "C" int OnBatch(void* user, const cdc_change* c, int n) {
  auto* sh = static_cast<Shared*>(user);
  if (g_stop || sh->fatal || sh->closed) return 1;  // stopping: leave it unacked
  sh->formatter.Format(c, n, &sh->batch);
  sinks::Result r = sh->sink->Send(sh->batch);
  if (r.outcome == sinks::Outcome::kDelivered) {
    sh->delivered += n;
    sh->duplicates += r.duplicates;
    sh->last_id = c[n - 1].id;
    return 0;
  }
  if (r.outcome == sinks::Outcome::kFatal) {
    if (r.message == "EPIPE") {
      sh->closed = true;
    } else {
      std::lock_guard<std::mutex> g(sh->mu);
      sh->error = r.message;
      sh->fatal = true;
    }
    return 1;
  }
  if (g_stop) return 1;
  sh->retries++;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> g(sh->mu);
    sh->error = r.message;
  }
  // One line per failure, at most one every 2 s (the listener backs off up
  // to 5 s between attempts, so a long outage is visible but quiet).
  if (now - sh->last_report >= std::chrono::seconds(2)) {
    fprintf(stderr, "cdc-stream: %s; batch %s not delivered, retrying%s\n", r.message.c_str(),
            sh->batch.IdempotencyKey().c_str(),
            r.retry_after_ms ? (" after " + std::to_string(r.retry_after_ms) + " ms (Retry-After)").c_str() : "");
    sh->last_report = now;
  }
  if (r.retry_after_ms > 0) SleepUnlessStopped(r.retry_after_ms);
  return 1;
}

extern "C" void DestroyNothing(void*) {}

// The sidecar's own connection: setup, the source id, progress, the last ack.
class Stream {
 public:
  ~Stream() {
    sqlite3_finalize(status_);
    sqlite3_close(db_);
  }

  bool Open(const Options& o) {
    o_ = o;
    if (sqlite3_open_v2(o.db.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      return Fail("cannot open " + o.db);
    }
    sqlite3_busy_timeout(db_, 10000);
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
    // cdc_consumer_add made the internal tables, and with them the source id.
    if (!Text("SELECT value FROM main.__cdc_meta WHERE key = 'source_id'", &source_id_) || source_id_.empty()) {
      return Fail("no source id in __cdc_meta");
    }
    if (!Text("SELECT cdc_version()", &version_)) return false;
    if (!Prepare("SELECT json_extract(value, '$.position'), json_extract(value, '$.pending'), "
                 "json_extract(value, '$.lag_ms') FROM json_each(cdc_status(), '$.consumers') "
                 "WHERE json_extract(value, '$.name') = ?1",
                 &status_)) {
      return false;
    }
    sqlite3_bind_text(status_, 1, o.consumer.c_str(), -1, SQLITE_TRANSIENT);
    return true;
  }

  const std::string& source_id() const { return source_id_; }
  const std::string& version() const { return version_; }

  // The newest event pending for the consumer now (0: none): --once stops
  // once the position reaches it.
  // (The log's newest event row, read backwards from the end: the same
  // query as the extension's EventFloor, ext/log.cc; a cdc_changes scan
  // would parse the whole backlog first.)
  bool Target(int64_t* id) {
    int64_t pos = 0, pending = 0, lag = 0;
    if (!Status(&pos, &pending, &lag)) return Fail("cdc_status");
    *id = 0;
    if (pending == 0) return true;
    sqlite3_stmt* st = nullptr;
    if (!Prepare("SELECT id FROM main.__cdc_log WHERE op <> 0 ORDER BY id DESC LIMIT 1", &st)) return false;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE || Fail("the newest event");
  }

  // The consumer's position, pending count and lag (cdc_status).
  bool Status(int64_t* pos, int64_t* pending, int64_t* lag) {
    bool ok = sqlite3_step(status_) == SQLITE_ROW;
    if (ok) {
      *pos = sqlite3_column_int64(status_, 0);
      *pending = sqlite3_column_int64(status_, 1);
      *lag = sqlite3_column_int64(status_, 2);
    }
    sqlite3_reset(status_);
    return ok;
  }

  // Acks up to id on this connection, waiting for the write lock (the
  // listener's acker makes only one attempt once stopped).
  bool Ack(int64_t id) {
    sqlite3_stmt* st = nullptr;
    if (!Prepare("SELECT cdc_ack(?1, ?2)", &st)) return false;
    sqlite3_bind_text(st, 1, o_.consumer.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, id);
    bool ok = StepRetry(st, true) == SQLITE_ROW;
    sqlite3_finalize(st);
    return ok || Fail("cdc_ack");
  }

  sqlite3* db() { return db_; }

  bool Fail(const std::string& what) {
    fprintf(stderr, "cdc-stream: %s: %s\n", what.c_str(), db_ ? sqlite3_errmsg(db_) : "out of memory");
    return false;
  }

 private:
  // Steps a statement that writes, retrying while another connection holds
  // the database ("database is locked" can come back at once instead of
  // after the busy timeout when a read snapshot must be upgraded). Gives up
  // after about 30 s, or on a stop signal unless `even_stopping`.
  int StepRetry(sqlite3_stmt* st, bool even_stopping = false) {
    for (int attempt = 0;; attempt++) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
      const char* msg = sqlite3_errmsg(db_);
      bool busy = (sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY || strstr(msg, "database is locked");
      if (!busy || attempt >= 600 || (g_stop && !even_stopping)) return rc;
      sqlite3_reset(st);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50, 1 + attempt)));
    }
  }

  bool Text(const char* sql, std::string* out) {
    sqlite3_stmt* st = nullptr;
    if (!Prepare(sql, &st)) return false;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) *out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE || Fail(sql);
  }

  bool Prepare(const char* sql, sqlite3_stmt** st) {
    if (sqlite3_prepare_v2(db_, sql, -1, st, nullptr) == SQLITE_OK) return true;
    return Fail("prepare");
  }

  Options o_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* status_ = nullptr;
  std::string source_id_, version_;
};

// True when stdout is a pipe whose reader has gone (checked while idle, so
// `cdc-stream db | head -n 3` ends even when no further change comes).
bool StdoutClosed() {
  struct pollfd p = {1, 0, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

void Progress(Stream* s, const Options& o, Shared* sh, double seconds) {
  int64_t pos = 0, pending = 0, lag = 0;
  if (!s->Status(&pos, &pending, &lag)) return;
  std::string err;
  {
    std::lock_guard<std::mutex> g(sh->mu);
    err = sh->error;
  }
  const int64_t delivered = sh->delivered;
  fprintf(stderr,
          "cdc-stream: consumer=%s sink=%s position=%lld pending=%lld lag_ms=%lld delivered=%lld rate=%.0f/s "
          "retries=%lld duplicates=%lld%s%s\n",
          o.consumer.c_str(), sh->sink->Describe().c_str(), static_cast<long long>(pos),
          static_cast<long long>(pending), static_cast<long long>(lag), static_cast<long long>(delivered),
          seconds > 0 ? static_cast<double>(delivered) / seconds : 0.0, static_cast<long long>(sh->retries.load()),
          static_cast<long long>(sh->duplicates.load()), err.empty() ? "" : " last_error=", err.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
#ifdef __GLIBC__
  // The callback thread allocates and frees a batch's buffers (formatted
  // events, the sink library's request and reply buffers) over and over in
  // its own malloc arena; glibc trims such an arena back with madvise after
  // each free, a TLB shootdown each time. Measured with `cdc-stream --once
  // --sink redis://… --progress` on a 100,000-event backlog: 89k–160k
  // events/s with the default threshold, 200k–240k with this one.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif

  // SIGPIPE is ignored so a closed stdout shows up as EPIPE from the write.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string err;
  Shared sh;
  sh.sink = sinks::MakeSink(o.sink, &err);
  if (!sh.sink) {
    fprintf(stderr, "cdc-stream: %s\n", err.c_str());
    return 2;
  }
  Stream s;
  if (!s.Open(o)) return 1;
  o.sink.source_id = s.source_id();
  sh.batch.source_id = s.source_id();
  if (!sh.formatter.Open(o.db, o.sink.debezium, o.source_name.empty() ? s.source_id() : o.source_name,
                         s.version(), &err)) {
    fprintf(stderr, "cdc-stream: %s\n", err.c_str());
    return 1;
  }
  int64_t target = 0;
  if (o.once && !s.Target(&target)) return 1;

  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - started).count(); };
  const bool to_stdout = o.sink.url == "-";
  int status = 0;
  bool listening = false;
  // Only the main thread takes SIGINT/SIGTERM: the threads started from here
  // on (the listener, its acker, the sink libraries' own) inherit a mask
  // that blocks them, so no library call there fails with EINTR. A signal
  // that comes meanwhile waits for the unblock below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (!o.once || target > 0) {
    // Wake-up signals: inotify and the interval timer (commits come from other
    // connections: the commit hook would see none).
    std::string opts = "{\"signals\":[\"watch\",\"interval\"],\"batch\":" + std::to_string(o.batch) + "}";
    char* lerr = nullptr;
    if (cdc_listen(s.db(), o.consumer.c_str(), OnBatch, &sh, DestroyNothing, opts.c_str(), &lerr) != SQLITE_OK) {
      fprintf(stderr, "cdc-stream: cdc_listen: %s\n", lerr ? lerr : "?");
      sqlite3_free(lerr);
      return 1;
    }
    listening = true;
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  auto last_progress = started;
  if (o.progress) Progress(&s, o, &sh, 0);
  while (listening && !g_stop && !sh.fatal && !sh.closed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (o.once && sh.last_id >= target) break;
    if (to_stdout && StdoutClosed()) break;
    if (o.progress && Clock::now() - last_progress >= std::chrono::seconds(1)) {
      Progress(&s, o, &sh, seconds());
      last_progress = Clock::now();
    }
  }
  g_stop = 1;  // a sink still waiting in the callback gives up now
  if (listening) {
    char* uerr = nullptr;
    if (cdc_unlisten(s.db(), o.consumer.c_str(), &uerr) != SQLITE_OK) {
      fprintf(stderr, "cdc-stream: cdc_unlisten: %s\n", uerr ? uerr : "?");
      sqlite3_free(uerr);
      status = 1;
    }
  }
  // Everything the sink confirmed is acked before exiting (the listener's
  // acker may have given up on a busy database while stopping).
  if (sh.last_id > 0 && !s.Ack(sh.last_id)) status = 1;
  if (sh.fatal) {
    std::lock_guard<std::mutex> g(sh.mu);
    fprintf(stderr, "cdc-stream: stopped: %s\n", sh.error.c_str());
    status = 1;
  }
  if (o.progress) Progress(&s, o, &sh, seconds());
  return status;
}
