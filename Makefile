# Thin wrapper over CMake. `make` builds build/cdc.so.
BUILD ?= build
comma := ,
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test check demo bench clean sanitize tsan test-sqlite-latest install uninstall test-node soak

all: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

# Everything CI runs: the suite, then the suite under ASan+UBSan and TSan,
# against the newest SQLite from the npm registry, and the Node.js client.
test:
	$(MAKE) check
	$(MAKE) sanitize
	$(MAKE) tsan
	$(MAKE) test-sqlite-latest
	$(MAKE) test-node

# The main suite only (about a minute).
check: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: all
	@sql/demo.sh $(BUILD)/cdc

# Benchmarks: a separate Release build (build-bench), then one markdown table
# of capture-overhead ratios. CDC_BENCH_QUICK=1 for a smoke run.
BENCH_BUILD ?= build-bench
bench:
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DCDC_BUILD_BENCH=ON -DCDC_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) >&2
	@python3 bench/report.py $(BENCH_BUILD)/bench/cdc_bench

clean:
	rm -rf $(BUILD) build-*

# The whole suite against a recent SQLite amalgamation from the npm registry
# (better-sqlite3's deps/sqlite3; tarball cached in $(LATEST)); see
# cmake/sqlite_amalgamation.cmake.
LATEST ?= build-sqlite-latest
SQLITE_LATEST_PKG ?= better-sqlite3@12
test-sqlite-latest:
	@tools/fetch_sqlite_amalgamation.sh $(LATEST)/npm $(SQLITE_LATEST_PKG) | sed 's/^/SQLite amalgamation: /'
	@cmake -S . -B $(LATEST) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SQLITE_AMALGAMATION=$(CURDIR)/$(LATEST)/npm/sqlite3 $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(LATEST) -j $(JOBS)
	cd $(LATEST) && ctest --output-on-failure -j $(JOBS) -E '^(fuzz|soak)\.'

# Installs into $(PREFIX) (DESTDIR honoured): see README "Install".
PREFIX ?= /usr/local
install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

# Removes what the last `make install` from $(BUILD) installed (its manifest
# has the paths, DESTDIR included) and the package's now empty directories.
uninstall:
	tools/uninstall.sh $(BUILD)/install_manifest.txt

# Node.js client test: builds better-sqlite3@12 from source (npm registry,
# local Node headers; cached in $(BUILD)/node), then runs tests/node_client_test.js.
test-node: all
	@tools/fetch_better_sqlite3.sh $(BUILD)/node || [ $$? -eq 77 ]  # 77: no Node.js >= 20 here: skipped
	cd $(BUILD) && ctest --output-on-failure -R '^client[.]node$$'

# Multi-process soak with SIGKILLs and a full audit (tests/soak/soak.cc).
.PHONY: soak fuzz fuzz-smoke
DURATION ?= 600
soak: all
	$(BUILD)/tests/cdc_soak --ext $(BUILD)/cdc --seconds $(DURATION)
	CDC_HOST_SECONDS=$(DURATION) /usr/bin/python3 tests/host_test.py $(BUILD)/cdc HostSafety.test_push_while_the_app_uses_its_connection

# libFuzzer targets (tests/fuzz/, clang + libclang-rt-14-dev): long runs,
# and the short run CI uses (also ctest: fuzz.smoke).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SEED=$${FUZZ_SEED:-0} tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS)
fuzz-smoke:
	tests/fuzz/run.sh $(BUILD)/fuzz 25

# Sanitizer runs of the whole suite (separate build dirs; the test binaries,
# helper programs and cdc.so are all instrumented).
# - The GoogleTest suite (every thread of the extension runs there) runs with
#   leak detection; the sqlite3 shells it starts get the runtime through
#   CDC_CHILD_PRELOAD.
# - Tests whose host is an uninstrumented program (the sqlite3 shell, python,
#   node: sql., docs., demo., client., install., stream.) get the runtime by
#   LD_PRELOAD, without leak detection (their hosts' leaks are not ours).
#   Under TSan they are skipped: bash and dash crash with libtsan preloaded,
#   and those hosts call the extension from one thread only.
SAN_PRELOAD_address,undefined = $(shell $(CXX) -print-file-name=libasan.so)
SAN_PRELOAD_thread = $(shell $(CXX) -print-file-name=libtsan.so)
# fuzz.smoke is left out of the sanitizer runs: the fuzzers carry their own ASan and run in check.
HOST_TESTS = '^(sql|docs|demo|client|install|stream|fuzz)\.'
ASAN_NOLEAK_TESTS = '^(sql|docs|demo|client|install|stream|fuzz)\.'
ASAN_SKIP = '^fuzz\.'
# LeakSanitizer on (SAN_LEAKS=0 turns it off). It once crashed at exit
# ("Tracer caught signal 11") scanning a thread_local block of a dlclosed
# cdc.so; the extension has no TLS since (readelf -l build/cdc.so).
SAN_LEAKS ?= 1
define san_build
	@cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SANITIZE=$(2) >/dev/null
	@cmake --build $(1) -j $(JOBS)
	cd $(1) && CDC_CHILD_PRELOAD=$(SAN_PRELOAD_$(2)) ASAN_OPTIONS=detect_leaks=$(SAN_LEAKS) TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -E $(3)
endef

sanitize:
	$(call san_build,build-asan,address$(comma)undefined,$(ASAN_NOLEAK_TESTS))
	cd build-asan && LD_PRELOAD=$(SAN_PRELOAD_address$(comma)undefined) ASAN_OPTIONS=detect_leaks=0 \
	  ctest --output-on-failure -j $(JOBS) -R $(ASAN_NOLEAK_TESTS) -E $(ASAN_SKIP)

tsan:
	$(call san_build,build-tsan,thread,$(HOST_TESTS))
