// inject.cc — see inject.h.
#include "inject.h"

#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <vector>

namespace faults {
namespace {

// ---------------------------------------------------------------- allocations

enum AllocMode { kOff = 0, kNth = 1, kNthThread = 2, kRandom = 3 };
std::atomic<int> g_mode{kOff};
std::atomic<int64_t> g_count{0}, g_hits{0}, g_new_calls{0};
// Atomics: the Arm* functions change them while other threads allocate.
std::atomic<int64_t> g_fail_at{0};
std::atomic<bool> g_persistent{false};
std::atomic<pthread_t> g_thread{};
std::atomic<uint64_t> g_seed{0};
std::atomic<uint32_t> g_every{1};
std::atomic<bool> g_only_new{false};  // count and fail only operator new
thread_local int t_host = 0;

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// CDC_FAULTS_BACKTRACE=1: where each injected fault hits (debugging).
bool g_backtrace = false;
void PrintBacktrace(const char* what) {
  t_host++;
  void* frames[40];
  int n = backtrace(frames, 40);
  fprintf(stderr, "fault injected in %s at:\n", what);
  backtrace_symbols_fd(frames, n, 2);
  t_host--;
}

bool ShouldFail(bool is_new) {
  int mode = g_mode.load(std::memory_order_acquire);
  if (mode == kOff || t_host || (g_only_new && !is_new)) return false;
  if (mode == kNthThread && !pthread_equal(pthread_self(), g_thread.load())) return false;
  int64_t c = g_count.fetch_add(1, std::memory_order_relaxed) + 1;
  if (is_new) g_new_calls.fetch_add(1, std::memory_order_relaxed);
  bool fail = mode == kRandom ? Mix(g_seed.load() ^ static_cast<uint64_t>(c)) % g_every.load() == 0
                              : (c == g_fail_at.load() || (g_persistent.load() && c > g_fail_at.load()));
  if (fail) {
    g_hits.fetch_add(1, std::memory_order_relaxed);
    if (g_backtrace) PrintBacktrace(is_new ? "operator new" : "sqlite3_malloc");
  }
  return fail;
}

constexpr size_t kHdr = 16;  // keeps the 16-byte alignment of malloc

void* Malloc(int n) {
  if (ShouldFail(false)) return nullptr;
  auto* p = static_cast<char*>(malloc(static_cast<size_t>(n) + kHdr));
  if (!p) return nullptr;
  *reinterpret_cast<size_t*>(p) = static_cast<size_t>(n);
  return p + kHdr;
}
void Free(void* p) {
  if (p) free(static_cast<char*>(p) - kHdr);
}
void* Realloc(void* p, int n) {
  if (ShouldFail(false)) return nullptr;
  auto* q = static_cast<char*>(realloc(static_cast<char*>(p) - kHdr, static_cast<size_t>(n) + kHdr));
  if (!q) return nullptr;
  *reinterpret_cast<size_t*>(q) = static_cast<size_t>(n);
  return q + kHdr;
}
int Size(void* p) { return p ? static_cast<int>(*reinterpret_cast<size_t*>(static_cast<char*>(p) - kHdr)) : 0; }
int Roundup(int n) { return (n + 7) & ~7; }
int MemInit(void*) { return SQLITE_OK; }
void MemShutdown(void*) {}

const sqlite3_mem_methods kMem = {Malloc, Free, Realloc, Size, Roundup, MemInit, MemShutdown, nullptr};

// ---------------------------------------------------------------- the VFS

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

std::atomic<unsigned> g_io_methods{0};
std::atomic<int64_t> g_io_count{0}, g_io_hits{0};
std::atomic<int64_t> g_io_at{0};
std::atomic<int> g_io_code{SQLITE_IOERR};
std::atomic<bool> g_io_persistent{false};

// SQLITE_OK, or the error the armed fault makes this call return.
int IoFault(unsigned method) {
  if (!(g_io_methods.load(std::memory_order_acquire) & method) || t_host) return SQLITE_OK;
  int64_t c = g_io_count.fetch_add(1) + 1;
  if (c == g_io_at.load() || (g_io_persistent.load() && c > g_io_at.load())) {
    g_io_hits.fetch_add(1);
    if (g_backtrace) PrintBacktrace("I/O");
    return g_io_code.load();
  }
  return SQLITE_OK;
}

// Power loss state.
struct Rec {
  bool truncate = false;
  int64_t off = 0;       // write offset, or the truncation size
  std::string old_bytes;  // what the range held (only the part below the size then)
  std::string new_bytes;  // written bytes (empty for a truncate)
};
struct FileLog {
  int64_t synced_size = 0;
  std::vector<Rec> recs;
};
std::mutex g_crash_mu;
std::atomic<bool> g_crash_on{false};
uint64_t g_crash_seed = 0;
int64_t g_crash_at = 0;
std::atomic<int64_t> g_syncs{0};
std::map<std::string, FileLog>* g_logs = nullptr;  // guarded by g_crash_mu

struct FFile {
  sqlite3_file base;
  sqlite3_file* real;
  char path[512];  // "" when not tracked (temporary files)
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FFile*>(f)->real; }

int64_t RealSize(sqlite3_file* r) {
  sqlite3_int64 sz = 0;
  if (r->pMethods->xFileSize(r, &sz) != SQLITE_OK) return 0;
  return sz;
}

// Opens the record list of a file for a write or truncate (g_crash_mu held).
FileLog& LogFor(FFile* f) {
  FileLog& log = (*g_logs)[f->path];
  if (log.recs.empty()) log.synced_size = RealSize(f->real);
  return log;
}

std::string ReadOld(sqlite3_file* r, int64_t off, int64_t n) {
  int64_t size = RealSize(r);
  int64_t have = std::max<int64_t>(0, std::min<int64_t>(n, size - off));
  std::string s(static_cast<size_t>(have), '\0');
  if (have > 0) r->pMethods->xRead(r, &s[0], static_cast<int>(have), off);
  return s;
}

int xClose(sqlite3_file* f) {
  int rc = Real(f)->pMethods->xClose(Real(f));
  f->pMethods = nullptr;
  return rc;
}
int xRead(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  if (int rc = IoFault(kRead)) return rc;
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}
int xWrite(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (int rc = IoFault(kWrite)) return rc;
  auto* ff = reinterpret_cast<FFile*>(f);
  if (g_crash_on.load() && ff->path[0]) {
    std::lock_guard<std::mutex> g(g_crash_mu);
    FileLog& log = LogFor(ff);
    Rec r;
    r.off = off;
    r.old_bytes = ReadOld(ff->real, off, n);
    r.new_bytes.assign(static_cast<const char*>(buf), static_cast<size_t>(n));
    log.recs.push_back(std::move(r));
    return ff->real->pMethods->xWrite(ff->real, buf, n, off);
  }
  return Real(f)->pMethods->xWrite(Real(f), buf, n, off);
}
int xTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = IoFault(kTruncate)) return rc;
  auto* ff = reinterpret_cast<FFile*>(f);
  if (g_crash_on.load() && ff->path[0]) {
    std::lock_guard<std::mutex> g(g_crash_mu);
    FileLog& log = LogFor(ff);
    Rec r;
    r.truncate = true;
    r.off = size;
    int64_t cur = RealSize(ff->real);
    if (cur > size) r.old_bytes = ReadOld(ff->real, size, cur - size);
    log.recs.push_back(std::move(r));
    return ff->real->pMethods->xTruncate(ff->real, size);
  }
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int xSync(sqlite3_file* f, int flags) {
  if (int rc = IoFault(kSync)) return rc;
  auto* ff = reinterpret_cast<FFile*>(f);
  if (g_crash_on.load()) {
    int64_t n = g_syncs.fetch_add(1) + 1;
    if (n == g_crash_at) Crash();
    if (ff->path[0]) {
      std::lock_guard<std::mutex> g(g_crash_mu);
      g_logs->erase(ff->path);
    }
  }
  // No real fsync: no test needs the data on the platter (power loss is
  // simulated above), and a sync costs milliseconds.
  (void)flags;
  return SQLITE_OK;
}
int xFileSize(sqlite3_file* f, sqlite3_int64* out) { return Real(f)->pMethods->xFileSize(Real(f), out); }
int xLock(sqlite3_file* f, int level) {
  if (int rc = IoFault(kLock)) return rc;
  return Real(f)->pMethods->xLock(Real(f), level);
}
int xUnlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int xCheckReservedLock(sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); }
int xFileControl(sqlite3_file* f, int op, void* arg) {
  int rc = Real(f)->pMethods->xFileControl(Real(f), op, arg);
  if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK) {
    // Name this layer too, the way SQLite's shims do.
    char** name = static_cast<char**>(arg);
    char* both = sqlite3_mprintf("faultvfs/%z", *name);
    if (both) *name = both;
  }
  return rc;
}
int xSectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int xDeviceCharacteristics(sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); }
int xShmMap(sqlite3_file* f, int pg, int sz, int extend, void volatile** pp) {
  if (int rc = IoFault(kShmMap)) return rc;
  return Real(f)->pMethods->xShmMap(Real(f), pg, sz, extend, pp);
}
int xShmLock(sqlite3_file* f, int offset, int n, int flags) {
  // Unlocks never fail (SQLite ignores their result).
  if (!(flags & SQLITE_SHM_UNLOCK)) {
    if (int rc = IoFault(kShmLock)) return rc;
  }
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void xShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int xShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int xFetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
  return Real(f)->pMethods->xFetch(Real(f), off, n, pp);
}
int xUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return Real(f)->pMethods->xUnfetch(Real(f), off, p); }

const sqlite3_io_methods kIo = {3, xClose, xRead, xWrite, xTruncate, xSync, xFileSize, xLock, xUnlock,
                                xCheckReservedLock, xFileControl, xSectorSize, xDeviceCharacteristics,
                                xShmMap, xShmLock, xShmBarrier, xShmUnmap, xFetch, xUnfetch};

int vOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FFile*>(f);
  ff->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(FFile));
  ff->path[0] = 0;
  if (name && strlen(name) < sizeof ff->path) strcpy(ff->path, name);
  int rc = g_real->xOpen(g_real, name, ff->real, flags, out_flags);
  f->pMethods = ff->real->pMethods ? &kIo : nullptr;
  return rc;
}
int vDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  if (g_crash_on.load()) {
    std::lock_guard<std::mutex> g(g_crash_mu);
    g_logs->erase(name);
  }
  return g_real->xDelete(g_real, name, sync_dir);
}
int vAccess(sqlite3_vfs*, const char* name, int flags, int* out) { return g_real->xAccess(g_real, name, flags, out); }
int vFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* vDlOpen(sqlite3_vfs*, const char* name) { return g_real->xDlOpen(g_real, name); }
void vDlError(sqlite3_vfs*, int n, char* msg) { g_real->xDlError(g_real, n, msg); }
void (*vDlSym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_real->xDlSym(g_real, h, sym); }
void vDlClose(sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); }
int vRandomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int vSleep(sqlite3_vfs*, int us) {
  // While I/O faults are armed SQLite's retries (a WAL lock that stays busy
  // is retried for about 10 s) need not really wait.
  // (A HostScope thread, which meets no faults, waits for real: its busy
  // timeout would otherwise run out at once.)
  if (g_io_methods.load(std::memory_order_acquire) && !t_host) return us;
  return g_real->xSleep(g_real, us);
}
constexpr sqlite3_int64 kUnixEpochJdMs = 210866760000000LL;
int vCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  *out = kUnixEpochJdMs + kFixedNowMs;
  return SQLITE_OK;
}
int vCurrentTime(sqlite3_vfs* v, double* out) {
  sqlite3_int64 ms = 0;
  vCurrentTimeInt64(v, &ms);
  *out = static_cast<double>(ms) / 86400000.0;
  return SQLITE_OK;
}
int vGetLastError(sqlite3_vfs*, int n, char* out) { return g_real->xGetLastError(g_real, n, out); }

}  // namespace

// ---------------------------------------------------------------- public

void Install() {
  g_backtrace = getenv("CDC_FAULTS_BACKTRACE") != nullptr;
  sqlite3_config(SQLITE_CONFIG_MALLOC, &kMem);
  sqlite3_initialize();
  g_real = sqlite3_vfs_find(nullptr);
  memset(&g_vfs, 0, sizeof g_vfs);
  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(sizeof(FFile)) + g_real->szOsFile;
  g_vfs.mxPathname = g_real->mxPathname;
  g_vfs.zName = "faultvfs";
  g_vfs.xOpen = vOpen;
  g_vfs.xDelete = vDelete;
  g_vfs.xAccess = vAccess;
  g_vfs.xFullPathname = vFullPathname;
  g_vfs.xDlOpen = vDlOpen;
  g_vfs.xDlError = vDlError;
  g_vfs.xDlSym = vDlSym;
  g_vfs.xDlClose = vDlClose;
  g_vfs.xRandomness = vRandomness;
  g_vfs.xSleep = vSleep;
  g_vfs.xCurrentTime = vCurrentTime;
  g_vfs.xGetLastError = vGetLastError;
  g_vfs.xCurrentTimeInt64 = vCurrentTimeInt64;
  sqlite3_vfs_register(&g_vfs, 1);
  g_logs = new std::map<std::string, FileLog>;
}

void ArmAlloc(int64_t n, bool persistent) {
  g_mode.store(kOff);
  g_only_new = false;
  g_count = 0;
  g_hits = 0;
  g_new_calls = 0;
  g_fail_at = n;
  g_persistent = persistent;
  g_mode.store(kNth, std::memory_order_release);
}

void ArmAllocThisThread(int64_t n, bool persistent, bool only_new) {
  g_mode.store(kOff);
  g_only_new = only_new;
  g_count = 0;
  g_hits = 0;
  g_new_calls = 0;
  g_fail_at = n;
  g_persistent = persistent;
  g_thread = pthread_self();
  g_mode.store(kNthThread, std::memory_order_release);
}

void ArmAllocRandom(uint64_t seed, uint32_t every) {
  g_mode.store(kOff);
  g_only_new = false;
  g_count = 0;
  g_hits = 0;
  g_new_calls = 0;
  g_seed = seed;
  g_every = every ? every : 1;
  g_mode.store(kRandom, std::memory_order_release);
}

void Disarm() {
  g_mode.store(kOff, std::memory_order_release);
  g_io_methods.store(0, std::memory_order_release);
}

int64_t AllocCount() { return g_count.load(); }
int64_t AllocHits() { return g_hits.load(); }
int64_t NewCalls() { return g_new_calls.load(); }

HostScope::HostScope() { t_host++; }
HostScope::~HostScope() { t_host--; }

void ArmIo(unsigned methods, int64_t n, int code, bool persistent) {
  g_io_methods.store(0);
  g_io_count = 0;
  g_io_hits = 0;
  g_io_at = n;
  g_io_code = code;
  g_io_persistent = persistent;
  g_io_methods.store(methods, std::memory_order_release);
}
int64_t IoCount() { return g_io_count.load(); }
int64_t IoHits() { return g_io_hits.load(); }

void SetCrash(uint64_t seed, int64_t at_sync) {
  g_crash_seed = seed;
  g_crash_at = at_sync;
  g_syncs = 0;
  g_crash_on.store(true);
}

int64_t SyncCount() { return g_syncs.load(); }

void Crash() {
  g_crash_mu.lock();  // never released: the process ends here
  std::mt19937_64 rng(g_crash_seed);
  for (auto& kv : *g_logs) {
    FileLog& log = kv.second;
    if (log.recs.empty()) continue;
    int fd = open(kv.first.c_str(), O_RDWR);
    if (fd < 0) continue;  // deleted meanwhile
    auto put = [fd](const std::string& s, int64_t off) {
      if (!s.empty() && pwrite(fd, s.data(), s.size(), off) < 0) _exit(99);
    };
    // Back to the synced state: undo in reverse order...
    for (auto it = log.recs.rbegin(); it != log.recs.rend(); ++it) put(it->old_bytes, it->off);
    if (ftruncate(fd, log.synced_size) != 0) _exit(99);
    // ...then what reached the disk, in order.
    for (const Rec& r : log.recs) {
      int fate = static_cast<int>(rng() % 3);  // 0 written, 1 dropped, 2 torn
      if (fate == 1) continue;
      if (r.truncate) {
        if (ftruncate(fd, r.off) != 0) _exit(99);
        continue;
      }
      if (fate == 0) {
        put(r.new_bytes, r.off);
        continue;
      }
      for (size_t at = 0; at < r.new_bytes.size(); at += 512) {
        if (rng() & 1) put(r.new_bytes.substr(at, 512), r.off + static_cast<int64_t>(at));
      }
    }
    close(fd);
  }
  _exit(kCrashExit);
}

}  // namespace faults

// ---------------------------------------------------------------- C++ new

// (GCC cannot see that these replacements pair malloc with free.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// Replaces the global allocation functions of the whole process, cdc.so's
// `new` included (it resolves to these through libstdc++'s dynamic symbols).
// Under ASan they still end in malloc/free, which ASan intercepts.
void* operator new(size_t n) {
  if (faults::ShouldFail(true)) throw std::bad_alloc();
  void* p = malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  if (faults::ShouldFail(true)) return nullptr;
  return malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { free(p); }
