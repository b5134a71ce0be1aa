// nats.cc — the NATS JetStream sink (libnats).
//
//   --sink nats://host:port[,host:port…] --stream CDC --subject 'cdc.{table}'
//
// Connects to any of the listed servers (and those the cluster announces),
// reconnecting forever. Before the first batch it makes sure --stream exists:
// when missing it is created with file storage, --replicas, the subjects the
// template covers (each token with a {placeholder} becomes '*': cdc.{table}
// → cdc.*) and a 20-minute duplicate window. An existing stream is used as
// it is.
//
// A batch is published asynchronously, at most --window messages in flight,
// each with `Nats-Msg-Id: <source id>:<event id>` (and, in the Debezium
// format, the key in a `Cdc-Key` header). It is delivered when every message
// has its PubAck; JetStream answers a message id it already holds (within
// the duplicate window) with a PubAck marked duplicate and stores nothing,
// so a batch sent again after a failure or a crash leaves each event once.
// An error or a missing PubAck within --timeout retries the whole batch.
// After an error no further message of the batch is published, which keeps
// the stored order that of the ids except when a stream leader change makes
// one message fail while the next, published before the error came back,
// succeeds (docs/streaming.md).
#include "sink.h"

#ifdef CDC_HAVE_NATS

#include <nats/nats.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace sinks {

namespace {

constexpr int64_t kDuplicateWindowNs = 20LL * 60 * 1000 * 1000 * 1000;

class NatsSink : public Sink {
 public:
  explicit NatsSink(const Config& c) : cfg_(c) {}
  ~NatsSink() override {
    if (js_) jsCtx_Destroy(js_);
    if (nc_) natsConnection_Destroy(nc_);
    if (opts_) natsOptions_Destroy(opts_);
  }

  bool Init(std::string* err) {
    std::string rest = cfg_.url.substr(strlen("nats://"));
    size_t start = 0;
    while (start <= rest.size()) {
      size_t comma = rest.find(',', start);
      std::string s = rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!s.empty()) servers_.push_back(s.find("://") == std::string::npos ? "nats://" + s : s);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (servers_.empty()) {
      *err = "--sink " + cfg_.url + ": no server";
      return false;
    }
    std::vector<const char*> list;
    for (const auto& s : servers_) list.push_back(s.c_str());
    natsStatus s = natsOptions_Create(&opts_);
    if (s == NATS_OK) s = natsOptions_SetServers(opts_, list.data(), static_cast<int>(list.size()));
    if (s == NATS_OK) s = natsOptions_SetName(opts_, "cdc-stream");
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts_, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts_, 100);
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts_, std::min<int64_t>(cfg_.timeout_ms, 5000));
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts_, 64 * 1024 * 1024);
    if (s != NATS_OK) {
      *err = std::string("nats options: ") + natsStatus_GetText(s);
      return false;
    }
    return true;
  }

  Result Send(const Batch& b) override {
    if (!nc_) {
      natsStatus s = natsConnection_Connect(&nc_, opts_);
      if (s != NATS_OK) {
        nc_ = nullptr;
        return Result::Retry("nats " + Describe() + ": cannot connect: " + natsStatus_GetText(s));
      }
      jsOptions jo;
      jsOptions_Init(&jo);
      jo.Wait = cfg_.timeout_ms;
      jo.PublishAsync.MaxPending = cfg_.window;
      jo.PublishAsync.StallWait = cfg_.timeout_ms;
      jo.PublishAsync.AckHandler = &NatsSink::OnAck;
      jo.PublishAsync.AckHandlerClosure = this;
      s = natsConnection_JetStream(&js_, nc_, &jo);
      if (s != NATS_OK) {
        natsConnection_Destroy(nc_);
        nc_ = nullptr;
        return Result::Retry(std::string("nats: JetStream context: ") + natsStatus_GetText(s));
      }
    }
    if (!stream_ready_) {
      Result r = EnsureStream();
      if (r.outcome != Outcome::kDelivered) return r;
      stream_ready_ = true;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      acked_ = 0;
      duplicates_ = 0;
      error_.clear();
    }
    failed_.store(false);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = cfg_.timeout_ms;
    std::string publish_error;
    size_t sent = 0;
    for (const Message& m : b.messages) {
      if (failed_.load() || Stopping()) break;
      std::string subject = Expand(cfg_.subject, m.table, b.source_id, true);
      std::string msg_id = b.source_id + ":" + std::to_string(m.id);
      natsMsg* msg = nullptr;
      natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, m.value.data(), static_cast<int>(m.value.size()));
      if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
      if (s == NATS_OK && cfg_.debezium) s = natsMsgHeader_Set(msg, "Cdc-Key", m.key.c_str());
      if (s == NATS_OK) s = js_PublishMsgAsync(js_, &msg, &po);
      if (msg) natsMsg_Destroy(msg);  // still ours when the publish failed
      if (s == NATS_MAX_PAYLOAD) {
        // Sending it again cannot help: the server's max_payload must grow.
        Abandon();
        return Result::Fatal("nats " + Describe() + ": event " + std::to_string(m.id) + " is " +
                             std::to_string(m.value.size()) +
                             " bytes, more than the server's max_payload (raise max_payload in the "
                             "nats-server configuration; the batch is not acked)");
      }
      if (s != NATS_OK) {
        publish_error = std::string("publish: ") + natsStatus_GetText(s) + " " + nats_GetLastError(nullptr);
        break;
      }
      sent++;
    }
    // Wait for the PubAcks (in slices, to notice a stop).
    const auto deadline = Now() + cfg_.timeout_ms;
    natsStatus s = NATS_TIMEOUT;
    while (!Stopping()) {
      jsPubOptions wo;
      jsPubOptions_Init(&wo);
      wo.MaxWait = std::max<int64_t>(1, std::min<int64_t>(200, deadline - Now()));
      s = js_PublishAsyncComplete(js_, &wo);
      if (s != NATS_TIMEOUT || Now() >= deadline) break;
    }
    if (s != NATS_OK) Abandon();
    std::lock_guard<std::mutex> g(mu_);
    if (s == NATS_OK && publish_error.empty() && error_.empty() && sent == b.messages.size() &&
        acked_ == b.messages.size()) {
      Result r;
      r.duplicates = static_cast<int64_t>(duplicates_);
      return r;
    }
    std::string why = !error_.empty() ? error_
                      : !publish_error.empty() ? publish_error
                      : Stopping() ? std::string("stopped")
                      : s != NATS_OK ? std::string("waiting for PubAcks: ") + natsStatus_GetText(s)
                                     : "only " + std::to_string(acked_) + " of " + std::to_string(b.messages.size()) + " acknowledged";
    return Result::Retry("nats " + Describe() + " stream " + cfg_.stream + ": " + why);
  }

  std::string Describe() const override {
    std::string s = "nats://";
    for (size_t i = 0; i < servers_.size(); i++) {
      std::string h = servers_[i].substr(servers_[i].find("://") + 3);
      size_t at = h.rfind('@');
      if (at != std::string::npos) h.erase(0, at + 1);
      s += (i ? "," : "") + h;
    }
    return s;
  }

 private:
  static int64_t Now() { return nats_Now(); }

  // Forgets the publishes still waiting for a PubAck (their handler is not
  // called after this): the batch is sent again as a whole.
  void Abandon() {
    natsMsgList pending;
    memset(&pending, 0, sizeof pending);
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
  }

  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<NatsSink*>(closure);
    {
      std::lock_guard<std::mutex> g(self->mu_);
      if (pa && !pae) {
        self->acked_++;
        if (pa->Duplicate) self->duplicates_++;
      } else {
        self->failed_.store(true);
        if (self->error_.empty()) {
          self->error_ = std::string("PubAck: ") + (pae && pae->ErrText ? pae->ErrText : "") + " (" +
                         natsStatus_GetText(pae ? pae->Err : NATS_ERR) + ")";
        }
      }
    }
    natsMsg_Destroy(msg);
  }

  Result EnsureStream() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_GetStreamInfo(&si, js_, cfg_.stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return Result();
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
      return Result::Retry("nats " + Describe() + ": stream " + cfg_.stream + " info: " + natsStatus_GetText(s) +
                           " " + nats_GetLastError(nullptr));
    }
    // Subjects the template covers: a token with a placeholder becomes '*'.
    std::string subj;
    size_t start = 0;
    for (;;) {
      size_t dot = cfg_.subject.find('.', start);
      std::string tok = cfg_.subject.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!subj.empty() || start) subj += ".";
      subj += tok.find('{') != std::string::npos ? "*" : tok;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    const char* subjects[1] = {subj.c_str()};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = cfg_.stream.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = cfg_.replicas;
    sc.Duplicates = kDuplicateWindowNs;
    s = js_AddStream(&si, js_, &sc, nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      fprintf(stderr, "cdc-stream: created JetStream stream %s (subjects %s, %d replica%s)\n", cfg_.stream.c_str(),
              subj.c_str(), cfg_.replicas, cfg_.replicas == 1 ? "" : "s");
      return Result();
    }
    std::string m = "nats " + Describe() + ": cannot create stream " + cfg_.stream + " (subjects " + subj +
                    "): " + natsStatus_GetText(s) + " " + nats_GetLastError(nullptr);
    // A stream that cannot be made (a subject overlap, more replicas than
    // servers …) will not heal by retrying.
    if (jerr == JSStreamSubjectOverlapErr || jerr == JSStreamNameExistErr || jerr == JSStreamReplicasNotSupportedErr) {
      return Result::Fatal(m);
    }
    return Result::Retry(m);
  }

  Config cfg_;
  std::vector<std::string> servers_;
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  bool stream_ready_ = false;
  std::mutex mu_;
  size_t acked_ = 0;        // guarded by mu_
  size_t duplicates_ = 0;   // guarded by mu_
  std::string error_;       // guarded by mu_
  std::atomic<bool> failed_{false};
};

}  // namespace

std::unique_ptr<Sink> MakeNatsSink(const Config& cfg, std::string* err) {
  std::unique_ptr<NatsSink> s(new NatsSink(cfg));
  if (!s->Init(err)) return nullptr;
  return s;
}

}  // namespace sinks

#else

namespace sinks {
std::unique_ptr<Sink> MakeNatsSink(const Config& cfg, std::string* err) {
  *err = "--sink " + cfg.url + ": this cdc-stream was built without NATS (install libnats-dev and rebuild)";
  return nullptr;
}
}  // namespace sinks

#endif
