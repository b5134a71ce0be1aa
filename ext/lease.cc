// lease.cc — a consumer's lease across processes; see lease.h.
#include "lease.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cdc {

namespace {

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

}  // namespace

std::string LeasePath(const std::string& db_file, const std::string& consumer) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(Fnv1a(consumer)));
  return db_file + "-cdc-" + hex + ".lease";
}

std::string DescribeHolder(const LeaseHolder& h) {
  return "pid " + std::to_string(h.pid) + " on " + (h.host.empty() ? std::string("?") : h.host);
}

LeaseHolder ReadLeaseHolder(const std::string& db_file, const std::string& consumer) {
  LeaseHolder h;
  int fd = open(LeasePath(db_file, consumer).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return h;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {  // nobody holds it
    flock(fd, LOCK_UN);
    close(fd);
    return h;
  }
  if (errno == EWOULDBLOCK) {
    h.live = true;
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      buf[n] = 0;
      char host[256] = {0};
      long long pid = 0;
      if (sscanf(buf, "%lld %255s", &pid, host) >= 1) {
        h.pid = pid;
        h.host = host;
      }
    }
  }
  close(fd);
  return h;
}

Status RefuseIfLeased(sqlite3* db, const char* fn, const std::string& consumer) {
  const char* f = sqlite3_db_filename(db, "main");
  if (!f || !*f) return Status();
  LeaseHolder h = ReadLeaseHolder(f, consumer);
  if (!h.live) return Status();
  return Status::Error(std::string(fn) + ": consumer " + NameInMessage(consumer) +
                       " is being delivered by a listener (" + DescribeHolder(h) +
                       "); a second reader would get the same changes: use a consumer of its own, or "
                       "cdc_changes(" + NameInMessage(consumer) + ") to look without reading");
}

Status Lease::Open(const std::string& db_file, const std::string& consumer) {
  Release();
  consumer_ = consumer;
  const std::string path = LeasePath(db_file, consumer);
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::Error("cannot open the lease file " + path + ": " + strerror(errno));
  return Status();
}

bool Lease::TryTake() {
  if (held_.load()) return true;
  if (fd_ < 0 || flock(fd_, LOCK_EX | LOCK_NB) != 0) return false;
  held_.store(true);
  // Who holds it, for cdc_status and cdc_poll's message in any process.
  std::string who = std::to_string(static_cast<long long>(getpid())) + " " + HostName() + " " + consumer_ + "\n";
  if (ftruncate(fd_, 0) == 0) {
    ssize_t w = pwrite(fd_, who.data(), who.size(), 0);
    (void)w;
  }
  return true;
}

void Lease::Release() {
  if (fd_ >= 0) close(fd_);  // drops the lock
  fd_ = -1;
  held_.store(false);
}

}  // namespace cdc
