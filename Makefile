# Thin wrapper over CMake. `make` builds build/cdc.so.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test demo bench clean sanitize tsan

all: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

test: all
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

# Sanitizer runs of the whole suite (separate build dirs; the test binaries,
# helper programs and cdc.so are all instrumented; the soak, label soak, has
# its own target). Tests that load cdc.so into uninstrumented programs (the
# sqlite3 shell, python, bash: sql., docs., demo.) need the sanitizer runtime
# first in the process: under ASan it is LD_PRELOADed, without leak checks
# (python's and bash's leaks are not ours); TSan cannot run in those programs
# (a preloaded libtsan crashes bash), so make tsan leaves them out.
ASAN_PRELOAD = $(shell $(CXX) -print-file-name=libasan.so)
SAN_HOSTED = '^(sql|docs|demo)\.'

sanitize:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SANITIZE=address,undefined >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && LD_PRELOAD=$(ASAN_PRELOAD) ASAN_OPTIONS=detect_leaks=1 \
	  ctest --output-on-failure -j $(JOBS) -LE soak -E $(SAN_HOSTED)
	cd build-asan && LD_PRELOAD=$(ASAN_PRELOAD) ASAN_OPTIONS=detect_leaks=0 \
	  ctest --output-on-failure -j $(JOBS) -R $(SAN_HOSTED)

tsan:
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -LE soak -E $(SAN_HOSTED)

# Multi-process soak with SIGKILLs and a full audit (tests/soak/soak.cc).
DURATION ?= 600
soak: all
	$(BUILD)/tests/cdc_soak --ext $(BUILD)/cdc --seconds $(DURATION)
