// http.cc — the HTTP(S) webhook sink (libcurl).
//
// One POST per batch to the --sink URL: a JSON array of the batch's events
// (native) or of {"key":…,"value":…} objects (Debezium), with
//   Content-Type: application/json
//   Idempotency-Key: <source id>:<first event id>-<last event id>
// (the same every time the same batch is sent again), on one kept-alive
// connection. Any 2xx is delivered. 408, 429, 5xx, a timeout (--timeout, for
// the whole request; connecting has min(5 s, --timeout)) or a connection
// error is retried, never skipped, after Retry-After when the answer has one
// (seconds or an HTTP date). Any other status (4xx, or 1xx/3xx left after
// curl's handling) is permanent: cdc-stream stops without acking.
#include "sink.h"

#ifdef CDC_HAVE_CURL

#include <curl/curl.h>
#include <string.h>
#include <time.h>

#include <algorithm>

namespace sinks {

namespace {

class HttpSink : public Sink {
 public:
  explicit HttpSink(const Config& c) : cfg_(c) {}
  ~HttpSink() override {
    if (headers_) curl_slist_free_all(headers_);
    if (curl_) curl_easy_cleanup(curl_);
  }

  bool Init(std::string* err) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl_ = curl_easy_init();
    if (!curl_) {
      *err = "cannot initialise libcurl";
      return false;
    }
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");  // no 100-continue round trip
    for (const std::string& h : cfg_.headers) headers_ = curl_slist_append(headers_, h.c_str());
    return true;
  }

  Result Send(const Batch& b) override {
    body_.clear();
    body_.push_back('[');
    for (size_t i = 0; i < b.messages.size(); i++) {
      const Message& m = b.messages[i];
      if (i) body_.push_back(',');
      if (cfg_.debezium) body_.append("{\"key\":").append(m.key).append(",\"value\":").append(m.value).append("}");
      else body_.append(m.value);
    }
    body_.push_back(']');
    std::string idem = "Idempotency-Key: " + b.IdempotencyKey();
    curl_slist* hs = curl_slist_append(nullptr, idem.c_str());
    for (curl_slist* h = headers_; h; h = h->next) hs = curl_slist_append(hs, h->data);

    retry_after_ms_ = 0;
    reply_.clear();
    curl_easy_reset(curl_);  // keeps the connection cache: still kept alive
    curl_easy_setopt(curl_, CURLOPT_URL, cfg_.url.c_str());
    curl_easy_setopt(curl_, CURLOPT_POST, 1L);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(cfg_.timeout_ms));
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<int64_t>(5000, cfg_.timeout_ms)));
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "cdc-stream");
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &HttpSink::OnHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &HttpSink::OnBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, &HttpSink::OnProgress);
    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(hs);
    if (rc != CURLE_OK) {
      if (rc == CURLE_ABORTED_BY_CALLBACK) return Result::Retry("stopped");
      return Result::Retry(std::string("POST ") + Describe() + ": " + curl_easy_strerror(rc));
    }
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return Result();
    std::string what = "POST " + Describe() + ": HTTP " + std::to_string(status);
    if (!reply_.empty()) what += ": " + reply_.substr(0, 200);
    if (status == 408 || status == 429 || status >= 500) return Result::Retry(what, retry_after_ms_);
    return Result::Fatal(what + " (a permanent error: the batch " + b.IdempotencyKey() +
                         " is not acked; fix the receiver or the data, then restart cdc-stream)");
  }

  std::string Describe() const override {
    // Without user:password@ or the query.
    std::string u = cfg_.url;
    size_t scheme = u.find("://");
    size_t at = u.find('@', scheme);
    size_t path = u.find('/', scheme + 3);
    if (at != std::string::npos && (path == std::string::npos || at < path)) u.erase(scheme + 3, at + 1 - scheme - 3);
    size_t q = u.find('?');
    if (q != std::string::npos) u.resize(q);
    return u;
  }

 private:
  static size_t OnHeader(char* p, size_t size, size_t n, void* self) {
    auto* s = static_cast<HttpSink*>(self);
    std::string h(p, size * n);
    if (h.size() > 12 && strncasecmp(h.c_str(), "Retry-After:", 12) == 0) {
      std::string v = h.substr(12);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      char* end = nullptr;
      long long secs = strtoll(v.c_str(), &end, 10);
      if (!v.empty() && end && *end == '\0' && secs >= 0) {
        s->retry_after_ms_ = std::min<long long>(secs, 3600) * 1000;
      } else {
        time_t when = curl_getdate(v.c_str(), nullptr);
        if (when > 0) {
          long long d = static_cast<long long>(when - time(nullptr));
          s->retry_after_ms_ = std::max<long long>(0, std::min<long long>(d, 3600)) * 1000;
        }
      }
    }
    return size * n;
  }

  static size_t OnBody(char* p, size_t size, size_t n, void* self) {
    auto* s = static_cast<HttpSink*>(self);
    if (s->reply_.size() < 1024) s->reply_.append(p, std::min<size_t>(size * n, 1024 - s->reply_.size()));
    return size * n;
  }

  static int OnProgress(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) { return Stopping() ? 1 : 0; }

  Config cfg_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string body_, reply_;
  int64_t retry_after_ms_ = 0;
};

}  // namespace

std::unique_ptr<Sink> MakeHttpSink(const Config& cfg, std::string* err) {
  std::unique_ptr<HttpSink> s(new HttpSink(cfg));
  if (!s->Init(err)) return nullptr;
  return s;
}

}  // namespace sinks

#else

namespace sinks {
std::unique_ptr<Sink> MakeHttpSink(const Config& cfg, std::string* err) {
  *err = "--sink " + cfg.url + ": this cdc-stream was built without libcurl (install libcurl4-openssl-dev and rebuild)";
  return nullptr;
}
}  // namespace sinks

#endif
