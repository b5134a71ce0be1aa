// sinks_bench.cc — the raw clients and latency probes of `make bench-sinks`
// (bench/sinks_bench.py runs them beside cdc-stream).
//
//   sinks_bench raw-nats  SERVERS STREAM SUBJECT WINDOW EVENTS  async publish with msg ids
//   sinks_bench raw-redis PORT KEY BATCH EVENTS                 pipelined XADD <id>-0
//   sinks_bench lat-nats  SERVERS STREAM COUNT                  commit → stored, per message
//   sinks_bench lat-redis PORT KEY COUNT                        commit → XREAD, per entry
//
// EVENTS is an NDJSON file of native events (cdc-stream's stdout), sent as
// they are: the same payloads as the sinks send. raw-* print
// "<events> <seconds>". lat-* read messages whose row image carries the
// writer's commit time in µs as `"v":"<µs>"` and print "p50_us p99_us n".
#include <hiredis/hiredis.h>
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

namespace {

struct Event {
  long long id;
  std::string json;
};

std::vector<Event> Load(const char* path) {
  std::vector<Event> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    out.push_back({atoll(line.c_str() + 6), line});  // {"id":N,...
  }
  return out;
}

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

long long NowUs() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return static_cast<long long>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

// The writer's commit time from "v":"<µs>" in the payload; -1 if absent.
long long CommitUs(const char* p, size_t n) {
  std::string s(p, n);
  size_t at = s.find("\"v\":\"");
  return at == std::string::npos ? -1 : atoll(s.c_str() + at + 5);
}

void Percentiles(std::vector<long long>* lat) {
  std::sort(lat->begin(), lat->end());
  if (lat->empty()) {
    printf("0 0 0\n");
    return;
  }
  auto at = [&](double q) { return (*lat)[std::min(lat->size() - 1, static_cast<size_t>(q * lat->size()))]; };
  printf("%lld %lld %zu\n", at(0.50), at(0.99), lat->size());
}

natsConnection* Connect(const std::string& servers) {
  std::vector<std::string> urls;
  for (size_t start = 0;;) {
    size_t c = servers.find(',', start);
    urls.push_back("nats://" + servers.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  std::vector<const char*> list;
  for (auto& u : urls) list.push_back(u.c_str());
  natsOptions* o = nullptr;
  natsConnection* nc = nullptr;
  natsOptions_Create(&o);
  natsOptions_SetServers(o, list.data(), static_cast<int>(list.size()));
  if (natsConnection_Connect(&nc, o) != NATS_OK) {
    fprintf(stderr, "sinks_bench: cannot connect to %s\n", servers.c_str());
    exit(1);
  }
  natsOptions_Destroy(o);
  return nc;
}

std::atomic<long long> g_acked{0}, g_failed{0};

void OnAck(jsCtx*, natsMsg* m, jsPubAck* pa, jsPubAckErr* pae, void*) {
  if (pa && !pae) g_acked++;
  else g_failed++;
  natsMsg_Destroy(m);
}

int RawNats(const std::string& servers, const std::string& stream, const std::string& subject, int window,
            const char* file) {
  std::vector<Event> ev = Load(file);
  natsConnection* nc = Connect(servers);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = window;
  jo.PublishAsync.AckHandler = OnAck;
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, &jo);
  const char* subjects[1] = {subject.c_str()};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = stream.c_str();
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Duplicates = 20LL * 60 * 1000 * 1000 * 1000;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr;
  if (js_AddStream(&si, js, &sc, nullptr, &jerr) != NATS_OK) {
    fprintf(stderr, "sinks_bench: add stream: %s\n", nats_GetLastError(nullptr));
    return 1;
  }
  jsStreamInfo_Destroy(si);
  auto t0 = std::chrono::steady_clock::now();
  for (const Event& e : ev) {
    natsMsg* m = nullptr;
    std::string id = "raw:" + std::to_string(e.id);
    natsMsg_Create(&m, subject.c_str(), nullptr, e.json.data(), static_cast<int>(e.json.size()));
    natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
    if (js_PublishMsgAsync(js, &m, nullptr) != NATS_OK) {
      fprintf(stderr, "sinks_bench: publish: %s\n", nats_GetLastError(nullptr));
      return 1;
    }
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  js_PublishAsyncComplete(js, &po);
  double s = Seconds(t0);
  if (g_failed || g_acked != static_cast<long long>(ev.size())) {
    fprintf(stderr, "sinks_bench: %lld acked, %lld failed\n", g_acked.load(), g_failed.load());
    return 1;
  }
  printf("%zu %.6f\n", ev.size(), s);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return 0;
}

int RawRedis(int port, const std::string& key, int batch, const char* file) {
  std::vector<Event> ev = Load(file);
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) {
    fprintf(stderr, "sinks_bench: cannot connect to redis\n");
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < ev.size(); i += static_cast<size_t>(batch)) {
    size_t end = std::min(ev.size(), i + static_cast<size_t>(batch));
    for (size_t j = i; j < end; j++) {
      std::string id = std::to_string(ev[j].id) + "-0";
      const char* argv[5] = {"XADD", key.c_str(), id.c_str(), "value", ev[j].json.c_str()};
      size_t len[5] = {4, key.size(), id.size(), 5, ev[j].json.size()};
      redisAppendCommandArgv(c, 5, argv, len);
    }
    for (size_t j = i; j < end; j++) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK) return 1;
      auto* rep = static_cast<redisReply*>(r);
      if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "sinks_bench: %s\n", rep->str);
        return 1;
      }
      freeReplyObject(rep);
    }
  }
  printf("%zu %.6f\n", ev.size(), Seconds(t0));
  redisFree(c);
  return 0;
}

int LatNats(const std::string& servers, const std::string& stream, int count) {
  natsConnection* nc = Connect(servers);
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, nullptr);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverNew;
  natsSubscription* sub = nullptr;
  jsErrCode jerr;
  if (js_SubscribeSync(&sub, js, "lat.>", nullptr, &so, &jerr) != NATS_OK) {
    fprintf(stderr, "sinks_bench: subscribe: %s\n", nats_GetLastError(nullptr));
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  std::vector<long long> lat;
  while (static_cast<int>(lat.size()) < count) {
    natsMsg* m = nullptr;
    if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK) break;
    long long now = NowUs();
    long long at = CommitUs(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    if (at > 0) lat.push_back(now - at);
    natsMsg_Destroy(m);
  }
  Percentiles(&lat);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return 0;
}

int LatRedis(int port, const std::string& key, int count) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) return 1;
  printf("ready\n");
  fflush(stdout);
  std::vector<long long> lat;
  std::string last = "$";
  while (static_cast<int>(lat.size()) < count) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "XREAD BLOCK 10000 STREAMS %b %b", key.data(), key.size(), last.data(), last.size()));
    long long now = NowUs();
    if (!r || r->type != REDIS_REPLY_ARRAY) break;
    redisReply* entries = r->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
      redisReply* e = entries->element[i];
      last.assign(e->element[0]->str, e->element[0]->len);
      redisReply* f = e->element[1];
      for (size_t j = 0; j + 1 < f->elements; j += 2) {
        long long at = CommitUs(f->element[j + 1]->str, f->element[j + 1]->len);
        if (at > 0) lat.push_back(now - at);
      }
    }
    freeReplyObject(r);
  }
  Percentiles(&lat);
  redisFree(c);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "raw-nats" && argc == 7) return RawNats(argv[2], argv[3], argv[4], atoi(argv[5]), argv[6]);
  if (mode == "raw-redis" && argc == 6) return RawRedis(atoi(argv[2]), argv[3], atoi(argv[4]), argv[5]);
  if (mode == "lat-nats" && argc == 5) return LatNats(argv[2], argv[3], atoi(argv[4]));
  if (mode == "lat-redis" && argc == 5) return LatRedis(atoi(argv[2]), argv[3], atoi(argv[4]));
  fprintf(stderr, "usage: see bench/sinks_bench.cc\n");
  return 2;
}
