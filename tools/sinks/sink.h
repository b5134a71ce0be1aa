// sink.h — where cdc-stream sends batches (DESIGN §7), and in which format.
//
// cdc-stream (tools/cdc_stream.cc) runs a listener (include/cdc.h); its
// callback formats each batch (Formatter) and hands it to one Sink. The
// consumer is acked only when Send() returned kDelivered, that is when the
// far side confirmed every event of the batch:
//
//   stdout  every line written and flushed
//   http    a 2xx answer to the POST of the batch
//   nats    a JetStream PubAck for every message (duplicates included)
//   redis   an XADD reply for every entry ("equal or smaller than the target
//           stream top item" included: that entry is already there)
//
// kRetry makes the listener call again later with the same batch (same ids,
// same idempotency key); kFatal stops cdc-stream without acking.
#ifndef CDC_TOOLS_SINKS_SINK_H
#define CDC_TOOLS_SINKS_SINK_H

#include <sqlite3.h>
#include <stdint.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cdc.h"

namespace sinks {

// True once cdc-stream was asked to stop (SIGINT/SIGTERM): long waits in a
// sink give up and return kRetry (the batch is then not acked).
bool Stopping();

// One event, formatted.
struct Message {
  int64_t id = 0;
  std::string table;  // the table's name, as in the database
  std::string value;  // native event JSON (DESIGN §3) or the Debezium envelope
  std::string key;    // Debezium format: the key (primary-key columns) JSON; else empty
};

struct Batch {
  std::vector<Message> messages;
  std::string source_id;
  // The same for the same batch however often it is sent: the source id and
  // the batch's first and last event ids.
  std::string IdempotencyKey() const;
};

enum class Outcome { kDelivered, kRetry, kFatal };

struct Result {
  Outcome outcome = Outcome::kDelivered;
  std::string message;        // what went wrong (kRetry, kFatal)
  int64_t retry_after_ms = 0; // the far side asked to wait this long (HTTP Retry-After)
  int64_t duplicates = 0;     // kDelivered: events the far side already held (NATS, Redis)
  static Result Retry(std::string m, int64_t after_ms = 0) { return {Outcome::kRetry, std::move(m), after_ms, 0}; }
  static Result Fatal(std::string m) { return {Outcome::kFatal, std::move(m), 0, 0}; }
};

struct Config {
  std::string url;                  // --sink
  bool debezium = false;            // --format debezium
  std::string source_id;            // the database's source id (__cdc_meta)
  std::string stream = "CDC";       // --stream (nats)
  std::string subject = "cdc.{table}";  // --subject (nats)
  std::string key = "cdc:{table}";  // --key (redis)
  int replicas = 1;                 // --replicas (nats, when creating the stream)
  int64_t maxlen = 0;               // --maxlen (redis), 0 = no trimming
  int64_t timeout_ms = 10000;       // --timeout: one request / the acks of one batch
  int64_t window = 1024;            // --window: JetStream publishes in flight
  std::vector<std::string> headers; // --header "Name: value" (http)
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual Result Send(const Batch& b) = 0;
  // A one-line description for --progress and errors (no credentials).
  virtual std::string Describe() const = 0;
};

// Makes the sink for cfg.url. nullptr with *err set when the URL is not
// understood or cdc-stream was built without that sink's library.
std::unique_ptr<Sink> MakeSink(const Config& cfg, std::string* err);
std::unique_ptr<Sink> MakeStdoutSink(const Config& cfg, std::string* err);
std::unique_ptr<Sink> MakeHttpSink(const Config& cfg, std::string* err);
std::unique_ptr<Sink> MakeNatsSink(const Config& cfg, std::string* err);
std::unique_ptr<Sink> MakeRedisSink(const Config& cfg, std::string* err);
// Which sinks this build has, for --help: "stdout, http(s), nats, redis".
std::string BuiltSinks();

// Expands {table} and {source} in a subject or key template. For NATS
// subjects (subject_token), characters a subject token cannot hold (space,
// '.', '*', '>', control characters) become '_' in the table name.
std::string Expand(const std::string& tmpl, const std::string& table, const std::string& source,
                   bool subject_token);

// Turns the listener's changes into Messages, in the native or the Debezium
// format. Debezium keys need the tables' primary keys: read with a
// connection of the formatter's own (opened read-only on the database file).
class Formatter {
 public:
  ~Formatter();
  bool Open(const std::string& db_path, bool debezium, const std::string& source_name,
            const std::string& version, std::string* err);
  void Format(const cdc_change* c, int n, Batch* out);

 private:
  const std::vector<std::string>& KeyColumns(const std::string& table);
  void Debezium(const cdc_change& c, Message* m);

  bool debezium_ = false;
  std::string source_name_, version_, db_name_;
  sqlite3* db_ = nullptr;
  std::map<std::string, std::vector<std::string>> keys_;
  std::string snapshot_table_;  // a BOOTSTRAP marker of this table began a run of op "r" rows
  bool in_snapshot_ = false;
};

// JSON string literal of s (RFC 8259).
void AppendJsonString(std::string* out, const std::string& s);

}  // namespace sinks

#endif  // CDC_TOOLS_SINKS_SINK_H
