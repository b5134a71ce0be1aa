// redis.cc — the Redis Streams sink (hiredis).
//
//   --sink redis://[:password@]host:port[/db]
//
// Per event: XADD <key> [MAXLEN ~ N] <event id>-0 value <json> [key <json>],
// where <key> is --key with {table}/{source} expanded (default cdc:{table}).
// A batch is one pipeline on one connection; it is delivered when every XADD
// has its reply. The explicit entry id makes a replay exact: Redis refuses
// an id that is not above the stream's top item ("equal or smaller than the
// target stream top item"), which here means the entry is already there
// (events of one key are sent in increasing id order and never skipped), so
// that error counts as delivered. Any other error, or a lost connection,
// retries the batch on a new connection. A key shared by two databases would
// refuse the second one's older ids: keep {source} in --key for that.
#include "sink.h"

#ifdef CDC_HAVE_HIREDIS

#include <hiredis/hiredis.h>
#include <string.h>
#include <sys/time.h>

namespace sinks {

namespace {

class RedisSink : public Sink {
 public:
  explicit RedisSink(const Config& c) : cfg_(c) {}
  ~RedisSink() override {
    if (c_) redisFree(c_);
  }

  bool Parse(std::string* err) {
    std::string rest = cfg_.url.substr(strlen("redis://"));
    size_t at = rest.rfind('@');
    if (at != std::string::npos) {
      std::string cred = rest.substr(0, at);
      rest = rest.substr(at + 1);
      size_t colon = cred.find(':');
      password_ = colon == std::string::npos ? cred : cred.substr(colon + 1);
    }
    size_t slash = rest.find('/');
    if (slash != std::string::npos) {
      std::string db = rest.substr(slash + 1);
      rest.resize(slash);
      if (!db.empty()) {
        char* end = nullptr;
        long n = strtol(db.c_str(), &end, 10);
        if (*end || n < 0) {
          *err = "--sink " + cfg_.url + ": the database after / must be a number";
          return false;
        }
        db_ = static_cast<int>(n);
      }
    }
    size_t colon = rest.rfind(':');
    host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
    if (colon != std::string::npos) port_ = atoi(rest.c_str() + colon + 1);
    if (host_.empty()) host_ = "127.0.0.1";
    if (port_ <= 0 || port_ > 65535) {
      *err = "--sink " + cfg_.url + ": bad port";
      return false;
    }
    return true;
  }

  Result Send(const Batch& b) override {
    if (!c_) {
      std::string err;
      if (!Connect(&err)) return Result::Retry(err);
    }
    // Append the whole batch, then read every reply.
    std::string maxlen = std::to_string(cfg_.maxlen);
    for (const Message& m : b.messages) {
      std::string key = Expand(cfg_.key, m.table, b.source_id, false);
      std::string id = std::to_string(m.id) + "-0";
      const char* argv[10];
      size_t len[10];
      int n = 0;
      auto add = [&](const std::string& s) {
        argv[n] = s.data();
        len[n++] = s.size();
      };
      static const std::string kXadd = "XADD", kMaxlen = "MAXLEN", kTilde = "~", kValue = "value", kKey = "key";
      add(kXadd);
      add(key);
      if (cfg_.maxlen > 0) {
        add(kMaxlen);
        add(kTilde);
        add(maxlen);
      }
      add(id);
      add(kValue);
      add(m.value);
      if (cfg_.debezium) {
        add(kKey);
        add(m.key);
      }
      if (redisAppendCommandArgv(c_, n, argv, len) != REDIS_OK) return Lost("XADD");
    }
    std::string error;
    int64_t duplicates = 0;
    for (size_t i = 0; i < b.messages.size(); i++) {
      void* r = nullptr;
      if (redisGetReply(c_, &r) != REDIS_OK || !r) return Lost("XADD reply");
      auto* reply = static_cast<redisReply*>(r);
      if (reply->type == REDIS_REPLY_ERROR) {
        if (strstr(reply->str, "equal or smaller than the target stream top item")) {
          duplicates++;
        } else if (error.empty()) {
          error = std::string(reply->str, reply->len) + " (event " + std::to_string(b.messages[i].id) + ")";
        }
      }
      freeReplyObject(reply);
    }
    if (!error.empty()) return Result::Retry("redis " + Describe() + ": " + error);
    Result ok;
    ok.duplicates = duplicates;
    return ok;
  }

  std::string Describe() const override {
    return "redis://" + host_ + ":" + std::to_string(port_) + "/" + std::to_string(db_);
  }

 private:
  bool Connect(std::string* err) {
    struct timeval tv;
    tv.tv_sec = static_cast<time_t>(cfg_.timeout_ms / 1000);
    tv.tv_usec = static_cast<suseconds_t>((cfg_.timeout_ms % 1000) * 1000);
    c_ = redisConnectWithTimeout(host_.c_str(), port_, tv);
    if (!c_ || c_->err) {
      *err = "redis " + Describe() + ": cannot connect: " + (c_ ? c_->errstr : "out of memory");
      if (c_) redisFree(c_);
      c_ = nullptr;
      return false;
    }
    redisSetTimeout(c_, tv);
    if (!password_.empty() && !Simple({"AUTH", password_}, err)) return false;
    if (db_ != 0 && !Simple({"SELECT", std::to_string(db_)}, err)) return false;
    return true;
  }

  bool Simple(const std::vector<std::string>& args, std::string* err) {
    std::vector<const char*> argv;
    std::vector<size_t> len;
    for (const auto& a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), len.data()));
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok) *err = "redis " + Describe() + ": " + args[0] + ": " + (r ? std::string(r->str, r->len) : c_->errstr);
    if (r) freeReplyObject(r);
    if (!ok) {
      redisFree(c_);
      c_ = nullptr;
    }
    return ok;
  }

  Result Lost(const char* what) {
    std::string m = "redis " + Describe() + ": " + what + ": " + (c_->errstr[0] ? c_->errstr : "connection lost");
    redisFree(c_);
    c_ = nullptr;
    return Result::Retry(m);
  }

  Config cfg_;
  std::string host_, password_;
  int port_ = 6379, db_ = 0;
  redisContext* c_ = nullptr;
};

}  // namespace

std::unique_ptr<Sink> MakeRedisSink(const Config& cfg, std::string* err) {
  std::unique_ptr<RedisSink> s(new RedisSink(cfg));
  if (!s->Parse(err)) return nullptr;
  return s;
}

}  // namespace sinks

#else

namespace sinks {
std::unique_ptr<Sink> MakeRedisSink(const Config& cfg, std::string* err) {
  *err = "--sink " + cfg.url + ": this cdc-stream was built without hiredis (install libhiredis-dev and rebuild)";
  return nullptr;
}
}  // namespace sinks

#endif
