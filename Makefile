# Thin wrapper over CMake. `make` builds build/cdc.so.
BUILD ?= build
.DEFAULT_GOAL := all
comma := ,
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test check demo bench bench-sinks clean sanitize tsan test-sqlite-latest install uninstall test-node soak \
	deps-demo deps-test deps-python deps-npm deps-deb python npm deb

# Set-up: tools/deps.sh installs the Debian packages that are missing (the
# demo's few, or all the suite's); silent when they are all there.
deps-demo:
	@tools/deps.sh demo
deps-test:
	@tools/deps.sh test

# $(BUILD) with the test suite on: configured once, and again when `make demo`
# configured it without the suite (CMake itself re-runs when CMakeLists.txt changes).
configure = cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_BUILD_TESTS=$(1) $(CMAKE_FLAGS) >/dev/null
all: deps-test
	@grep -qs '^CDC_BUILD_TESTS:BOOL=ON' $(BUILD)/CMakeCache.txt || $(call configure,ON)
	@cmake --build $(BUILD) -j $(JOBS)

# Everything CI runs: the suite, then the suite under ASan+UBSan and TSan,
# against the newest SQLite from the npm registry, and the Node.js client.
test: deps-test
	$(MAKE) check
	$(MAKE) sanitize
	$(MAKE) tsan
	$(MAKE) test-sqlite-latest
	$(MAKE) test-node

# The main suite only (about a minute).
check: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Only what the demo needs: the demo's packages, and cdc.so alone (a fresh
# $(BUILD) is configured without the test suite; `make check` adds it).
ext-only = @[ -f $(BUILD)/CMakeCache.txt ] || $(call configure,OFF)
demo: deps-demo
	$(ext-only)
	@cmake --build $(BUILD) -j $(JOBS) --target cdc
	@sql/demo.sh $(BUILD)/cdc

# Packages, into $(DIST) (see docs/install.md, "Packages"): a wheel built offline with
# Debian's Python tooling, an npm tarball (npm pack), a Debian package (CPack).
# Each needs cdc.so (and cdc-stream) only, not the test suite.
DIST ?= $(BUILD)/dist
python: deps-python
	$(ext-only)
	@cmake --build $(BUILD) -j $(JOBS) --target cdc
	@packaging/python/build.sh $(BUILD) $(DIST)
npm: deps-npm
	$(ext-only)
	@cmake --build $(BUILD) -j $(JOBS) --target cdc
	@packaging/node/pack.sh $(BUILD) $(DIST)
deb: deps-deb
	$(ext-only)
	@cmake --build $(BUILD) -j $(JOBS) --target cdc cdc-stream
	@packaging/deb.sh $(BUILD) $(DIST)
deps-python deps-npm deps-deb:
	@tools/deps.sh demo $(@:deps-%=%)

# Benchmarks: a separate Release build (build-bench), then one markdown table
# of capture-overhead ratios. CDC_BENCH_QUICK=1 for a smoke run.
BENCH_BUILD ?= build-bench
bench: deps-test
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DCDC_BUILD_BENCH=ON -DCDC_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) >&2
	@python3 bench/report.py $(BENCH_BUILD)/bench/cdc_bench

# cdc-stream's sinks beside raw clients of the same brokers (nats-server and
# redis-server on free local ports): events/s and commit → broker latency.
bench-sinks:
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DCDC_BUILD_BENCH=ON -DCDC_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) --target cdc cdc-stream sinks_bench >&2
	@/usr/bin/python3 bench/sinks_bench.py $(BENCH_BUILD)

clean:
	rm -rf $(BUILD) build-*

# The whole suite against a recent SQLite amalgamation from the npm registry
# (better-sqlite3's deps/sqlite3; tarball cached in $(LATEST)); see
# cmake/sqlite_amalgamation.cmake.
LATEST ?= build-sqlite-latest
SQLITE_LATEST_PKG ?= better-sqlite3@12
test-sqlite-latest: deps-test
	@tools/fetch_sqlite_amalgamation.sh $(LATEST)/npm $(SQLITE_LATEST_PKG) | sed 's/^/SQLite amalgamation: /'
	@cmake -S . -B $(LATEST) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SQLITE_AMALGAMATION=$(CURDIR)/$(LATEST)/npm/sqlite3 $(CLIENTS_CACHE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(LATEST) -j $(JOBS)
	cd $(LATEST) && ctest --output-on-failure -j $(JOBS) -E '^(fuzz|soak)\.'

# Installs into $(PREFIX) (DESTDIR honoured): see docs/install.md, "Install".
# Builds what is installed only (the extension and cdc-stream).
PREFIX ?= /usr/local
install: deps-demo
	$(ext-only)
	@cmake --build $(BUILD) -j $(JOBS) --target cdc cdc-stream
	cmake --install $(BUILD) --prefix $(PREFIX)

# Removes what the last `make install` from $(BUILD) installed (its manifest
# has the paths, DESTDIR included) and the package's now empty directories.
uninstall:
	tools/uninstall.sh $(BUILD)/install_manifest.txt

# Node.js client test: builds better-sqlite3@12 from source (npm registry,
# local Node headers; cached in $(BUILD)/node), then runs tests/node_client_test.js
# and the npm package's test (tests/packaging/npm_package_test.sh, same build).
test-node: all
	@tools/fetch_better_sqlite3.sh $(BUILD)/node || [ $$? -eq 77 ]  # 77: no Node.js >= 20 here: skipped
	cd $(BUILD) && ctest --output-on-failure -R '^(client[.](node|orm_knex)|package[.]npm)$$'

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

# Fault-injection campaigns (tests/faults/): out-of-memory and I/O-error
# loops over every operation trying up to FAULT_MAX_N fault points each (all
# of them when there are fewer, else that many at random), the listener under
# faults, and FAULT_SECONDS of random power-loss crashes per journal mode.
# The suite runs short deterministic loops of the same (ctest faults.*).
.PHONY: faults
FAULT_SEED ?= $(shell date +%s)
FAULT_SECONDS ?= 60
FAULT_MAX_N ?= 1000
faults: all
	@rm -f $(BUILD)/faults-report.txt
	CDC_FAULTS_LONG=1 CDC_FAULTS_SEED=$(FAULT_SEED) CDC_FAULTS_SECONDS=$(FAULT_SECONDS) \
	  CDC_FAULTS_MAX_N=$(FAULT_MAX_N) CDC_FAULTS_REPORT=$(CURDIR)/$(BUILD)/faults-report.txt \
	  CDC_EXTENSION=$(CURDIR)/$(BUILD)/cdc $(BUILD)/tests/faults/cdc_faults --gtest_brief=1
	@tests/faults/summary.sh $(BUILD)/faults-report.txt $(FAULT_SEED)

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
# client.go and client.rust compile their drivers once: every build dir uses $(BUILD)'s caches.
CLIENTS_CACHE = -DCDC_CLIENTS_CACHE=$(CURDIR)/$(BUILD)/clients
define san_build
	@cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SANITIZE=$(2) $(CLIENTS_CACHE) >/dev/null
	@cmake --build $(1) -j $(JOBS)
	cd $(1) && CDC_CHILD_PRELOAD=$(SAN_PRELOAD_$(2)) ASAN_OPTIONS=detect_leaks=$(SAN_LEAKS) TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -E $(3)
endef

sanitize: deps-test
	$(call san_build,build-asan,address$(comma)undefined,$(ASAN_NOLEAK_TESTS))
	cd build-asan && LD_PRELOAD=$(SAN_PRELOAD_address$(comma)undefined) ASAN_OPTIONS=detect_leaks=0 \
	  ctest --output-on-failure -j $(JOBS) -R $(ASAN_NOLEAK_TESTS) -E $(ASAN_SKIP)

# Under TSan the fault loops (faults.Ops/*) try the fewest fault points each
# (tests/faults/harness.h, Light()): they exercise error paths on one thread,
# which the main and ASan runs cover with the full sample; at TSan's slowdown
# the full sample was two thirds of this run's time.
tsan: export CDC_FAULTS_LIGHT = 1
tsan: deps-test
	$(call san_build,build-tsan,thread,$(HOST_TESTS))
