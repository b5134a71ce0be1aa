// sink_nats_read.cc — reads a JetStream stream back for the sink tests
// (Debian has no NATS command-line client nor a Python client).
//
//   sink_nats_read dump   SERVERS STREAM   one JSON line per stored message, in
//                                          stream order (an ordered consumer):
//       {"seq":N,"subject":"…","msg_id":"…","key":"…"|null,"data":<the payload>}
//   sink_nats_read leader SERVERS STREAM   the stream leader's server name
//   sink_nats_read count  SERVERS STREAM   the number of stored messages
//
// SERVERS is host:port[,host:port…]. Exit 1 (with a message on stderr) when
// the stream cannot be read.
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

static void JsonString(const char* s, std::string* out) {
  out->push_back('"');
  for (; *s; s++) {
    unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      out->append(b);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: sink_nats_read dump|leader|count SERVERS STREAM\n");
    return 2;
  }
  std::string mode = argv[1], stream = argv[3];
  std::vector<std::string> servers;
  std::string all = argv[2];
  for (size_t start = 0;;) {
    size_t comma = all.find(',', start);
    servers.push_back("nats://" + all.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::vector<const char*> list;
  for (const auto& s : servers) list.push_back(s.c_str());
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetServers(opts, list.data(), static_cast<int>(list.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 3000;
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &jo);
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK) s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    fprintf(stderr, "sink_nats_read: %s %s\n", natsStatus_GetText(s), nats_GetLastError(nullptr));
    return 1;
  }
  int rc = 0;
  if (mode == "leader") {
    if (si->Cluster && si->Cluster->Leader && *si->Cluster->Leader) {
      printf("%s\n", si->Cluster->Leader);
    } else {
      fprintf(stderr, "sink_nats_read: no leader\n");
      rc = 1;
    }
  } else if (mode == "count") {
    printf("%llu\n", static_cast<unsigned long long>(si->State.Msgs));
  } else if (mode == "dump") {
    // An ordered push consumer from the first message: one flow instead of
    // a request per message.
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription* sub = nullptr;
    s = js_SubscribeSync(&sub, js, ">", nullptr, &so, &jerr);
    std::string out;
    for (uint64_t got = 0; s == NATS_OK && got < si->State.Msgs; got++) {
      natsMsg* m = nullptr;
      s = natsSubscription_NextMsg(&m, sub, 5000);
      if (s != NATS_OK) break;
      jsMsgMetaData* meta = nullptr;
      uint64_t seq = natsMsg_GetMetaData(&meta, m) == NATS_OK ? meta->Sequence.Stream : 0;
      if (meta) jsMsgMetaData_Destroy(meta);
      const char* id = nullptr;
      const char* key = nullptr;
      natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
      natsMsgHeader_Get(m, "Cdc-Key", &key);
      out.clear();
      out.append("{\"seq\":").append(std::to_string(seq)).append(",\"subject\":");
      JsonString(natsMsg_GetSubject(m), &out);
      out.append(",\"msg_id\":");
      if (id) JsonString(id, &out);
      else out.append("null");
      out.append(",\"key\":");
      if (key) JsonString(key, &out);
      else out.append("null");
      out.append(",\"data\":");
      out.append(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
      out.append("}\n");
      fwrite(out.data(), 1, out.size(), stdout);
      natsMsg_Destroy(m);
    }
    if (s != NATS_OK) {
      fprintf(stderr, "sink_nats_read: reading %s: %s %s\n", stream.c_str(), natsStatus_GetText(s),
              nats_GetLastError(nullptr));
      rc = 1;
    }
    if (sub) natsSubscription_Destroy(sub);
  } else {
    fprintf(stderr, "sink_nats_read: unknown mode %s\n", mode.c_str());
    rc = 2;
  }
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
  nats_Close();
  return rc;
}
